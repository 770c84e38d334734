"""Entry point: ESPnet's ST training with Chunk SSL's classes registered (its inputs checked
first: ``chunkssl_espnet.bin.input_check``)."""

from typing import List, Optional

from chunkssl_espnet.bin.input_check import run_training


def main(cmd: Optional[List[str]] = None) -> None:
    run_training("ChunkSTTask", cmd)


if __name__ == "__main__":
    main()

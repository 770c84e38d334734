"""Entry point: ESPnet's ASR training with Chunk SSL's classes registered."""

from typing import List, Optional

from chunkssl_espnet.bin import load_plugin


def main(cmd: Optional[List[str]] = None) -> None:
    load_plugin().ChunkASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

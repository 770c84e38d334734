"""Entry point: ESPnet's LM training (the token-level language model of the ASR recipes), its
inputs checked first: ``chunkssl_espnet.bin.input_check``."""

from typing import List, Optional

from chunkssl_espnet.bin.input_check import run_training


def main(cmd: Optional[List[str]] = None) -> None:
    run_training("ChunkLMTask", cmd)


if __name__ == "__main__":
    main()

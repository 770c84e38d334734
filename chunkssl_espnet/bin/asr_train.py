"""Entry point: ESPnet's ASR training with Chunk SSL's classes registered."""

from typing import List, Optional

from chunkssl_espnet.espnet_plugin import ChunkASRTask


def main(cmd: Optional[List[str]] = None) -> None:
    ChunkASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

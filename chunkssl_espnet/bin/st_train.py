"""Entry point: ESPnet's ST training with Chunk SSL's classes registered."""

from typing import List, Optional

from chunkssl_espnet.espnet_plugin import ChunkSTTask


def main(cmd: Optional[List[str]] = None) -> None:
    ChunkSTTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

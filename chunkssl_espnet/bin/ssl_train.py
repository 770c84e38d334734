"""Entry point: ESPnet's SSL training with Chunk SSL's classes registered."""

from typing import List, Optional

from chunkssl_espnet.espnet_plugin import ChunkSSLTask


def main(cmd: Optional[List[str]] = None) -> None:
    ChunkSSLTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

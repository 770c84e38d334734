"""Entry points: python -m chunkssl_espnet.bin.<name>."""

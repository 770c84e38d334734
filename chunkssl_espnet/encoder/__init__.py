"""Chunked Conformer encoder (docs/method.md section 8)."""

from chunkssl_espnet.encoder.conformer import ENCODER_PRESETS, ChunkConformerEncoder

__all__ = ["ChunkConformerEncoder", "ENCODER_PRESETS"]

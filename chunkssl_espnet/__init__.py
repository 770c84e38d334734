"""chunkssl_espnet: Chunk SSL (arXiv 2509.15579) on top of ESPnet.

The method and the decisions taken where the paper is silent are in docs/method.md.

Public names:
    ChunkConformerEncoder   the chunked Conformer (ESPnet AbsEncoder) with streaming
    copy_append_forward     the one-pass copy-and-append chunk pre-training forward
    naive_chunk_forward     the naive N-1 pass reference it equals
"""

__version__ = "0.1.0"

from chunkssl_espnet.copy_append import (  # noqa: E402
    ChunkPassOutput,
    copy_append_forward,
    naive_chunk_forward,
)
from chunkssl_espnet.encoder import ChunkConformerEncoder  # noqa: E402

__all__ = ["ChunkConformerEncoder", "ChunkPassOutput", "copy_append_forward",
           "naive_chunk_forward"]

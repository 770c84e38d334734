"""chunkssl_espnet: Chunk SSL (arXiv 2509.15579) on top of ESPnet.

The method and the decisions taken where the paper is silent are in docs/method.md.

Public names (imported lazily, so that light tools such as ``python -m chunkssl_espnet.data`` do
not pay for torch):
    ChunkConformerEncoder   the chunked Conformer (ESPnet AbsEncoder) with streaming
    copy_append_forward     the one-pass copy-and-append chunk pre-training forward
    naive_chunk_forward     the naive N-1 pass reference it equals
    ChunkPassOutput         their output
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ChunkConformerEncoder": "chunkssl_espnet.encoder",
    "ChunkPassOutput": "chunkssl_espnet.copy_append",
    "copy_append_forward": "chunkssl_espnet.copy_append",
    "naive_chunk_forward": "chunkssl_espnet.copy_append",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'chunkssl_espnet' has no attribute {name!r}")

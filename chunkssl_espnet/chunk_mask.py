"""Chunk attention masks (docs/method.md sections 6 and 7).

One pure, vectorised visibility rule serves training, the copy-and-append pass and streaming
inference. Every frame carries three integers:

* ``chunk``: the chunk index of the frame's *original* position (``pos // chunk_size``; all 0 for
  full context),
* ``copy_id``: 0 for the base stream, ``k >= 1`` for the k-th appended copy (copy-and-append),
* validity: whether the frame is real or padding (keys only).

A query sees a key iff the key is valid, and either the key is a base frame of an earlier chunk or
both sit in the same block (same ``copy_id`` and same chunk); with ``num_left_chunks >= 0`` the
key's chunk must also be at most ``num_left_chunks`` chunks back. Without copies this is the usual
chunk-causal mask ``key_chunk <= query_chunk``. Masks are additive (0 or a large negative number),
never multiplicative.
"""

from typing import List, Optional, Sequence, Tuple

import torch


# Additive "-inf": the dtype's most negative finite value gives exactly zero weight after softmax.
def neg_inf(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def chunk_index(pos: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Chunk index of each position; ``chunk_size <= 0`` means full context (one chunk).

    Args:
        pos: (L,) int64 original encoder-frame positions.
    Returns:
        (L,) int64 chunk indices.
    """
    if chunk_size <= 0:
        return torch.zeros_like(pos)
    return torch.div(pos, chunk_size, rounding_mode="floor")


def chunk_visibility(
    q_chunk: torch.Tensor,
    q_copy_id: torch.Tensor,
    k_chunk: torch.Tensor,
    k_copy_id: torch.Tensor,
    num_left_chunks: int = -1,
) -> torch.Tensor:
    """Boolean visibility of keys from queries.

    Args:
        q_chunk, q_copy_id: (Lq,) int64 chunk index and copy id (0: base) of each query.
        k_chunk, k_copy_id: (Lk,) int64, the same of each key.
        num_left_chunks: how many earlier chunks a query may see; < 0 for all.
    Returns:
        (Lq, Lk) bool, True where the query may attend to the key.
    """
    qc, kc = q_chunk[:, None], k_chunk[None, :]
    same_block = (q_copy_id[:, None] == k_copy_id[None, :]) & (qc == kc)
    earlier_base = (k_copy_id[None, :] == 0) & (kc < qc)
    vis = same_block | earlier_base
    if num_left_chunks >= 0:
        vis = vis & (kc >= qc - num_left_chunks)
    return vis


def additive_mask(
    visible: torch.Tensor, key_valid: Optional[torch.Tensor], dtype: torch.dtype
) -> torch.Tensor:
    """Turn visibility (and key padding) into an additive attention mask.

    Args:
        visible: (Lq, Lk) bool.
        key_valid: (B, Lk) bool, True for real frames; None when nothing is padded.
    Returns:
        (B or 1, 1, Lq, Lk) float mask with 0 where visible and a large negative number elsewhere.
    """
    vis = visible[None, None]
    if key_valid is not None:
        vis = vis & key_valid[:, None, None, :]
    # A query with no visible key (padding) may see every key: its output is never used, and this
    # keeps the softmax free of NaN, which would leak through zero weights into valid frames.
    vis = vis | ~vis.any(dim=-1, keepdim=True)
    mask = torch.zeros(vis.shape, dtype=dtype, device=visible.device)
    return mask.masked_fill(~vis, neg_inf(dtype))


def plain_chunk_mask(
    num_frames: int,
    chunk_size: int,
    num_left_chunks: int = -1,
    key_valid: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Chunk-causal additive mask for a single stream of ``num_frames`` frames.

    Returns:
        (B or 1, 1, T, T) additive mask.
    """
    pos = torch.arange(num_frames, device=device)
    chunk = chunk_index(pos, chunk_size)
    copy_id = torch.zeros_like(pos)
    vis = chunk_visibility(chunk, copy_id, chunk, copy_id, num_left_chunks)
    return additive_mask(vis, key_valid, dtype)


def sample_chunk_config(
    chunk_sizes: Sequence[int],
    full_context_prob: float,
    left_chunks_choices: Optional[Sequence[int]] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[int, int]:
    """Draw the chunk size and left chunks of one batch (dynamic chunk training).

    Returns:
        (chunk_size, num_left_chunks): chunk_size -1 means full context; num_left_chunks -1
        means all.
    """
    u = torch.rand((), generator=generator).item()
    if u < full_context_prob or not chunk_sizes:
        return -1, -1
    idx = int(torch.randint(len(chunk_sizes), (), generator=generator))
    chunk = int(chunk_sizes[idx])
    left = -1
    if left_chunks_choices:
        j = int(torch.randint(len(left_chunks_choices), (), generator=generator))
        left = int(left_chunks_choices[j])
    return chunk, left


def validate_chunk_sizes(chunk_sizes: List[int]) -> List[int]:
    """Check a list of chunk sizes (encoder frames) from a config."""
    for c in chunk_sizes:
        if int(c) < 1:
            raise ValueError(f"chunk sizes must be >= 1 encoder frame, got {list(chunk_sizes)}")
    return [int(c) for c in chunk_sizes]

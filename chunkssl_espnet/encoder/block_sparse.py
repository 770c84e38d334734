"""Block-sparse chunk attention: compute only the query/key pairs a chunk mask can let through.

Under a chunk mask most pairs of a long pass are masked: in a copy-and-append pass over
``[B1..BN, E1..E(N-1)]`` (2T frames) a base chunk sees base chunks up to itself and a copy sees
the base chunks before the chunk it copies and itself, about T^2 of the (2T)^2 pairs. The plan
groups ``G`` consecutive chunks: their base queries and the queries of the copies of the next
``G`` chunks attend to the base keys of the group's left context and of the group, plus the keys
of those copies. Every key a query may see is in its block, and the chunk mask inside the block
removes the rest, so the result equals dense masked attention (up to summation order), in
forward and backward. Each block is one dense product of ordinary ops: this works on CPU, where
FlexAttention has no backward and SDPA does not skip masked blocks.

Visited pairs of the throughput benchmark's chunk step (375 frames, chunk 16, groups of 4 chunks):
38% of the dense (2T)^2 with all left chunks, 20% with 2 left chunks.
"""

from typing import Optional

import torch

from chunkssl_espnet.chunk_mask import additive_mask, chunk_index, chunk_visibility
from chunkssl_espnet.encoder.attention import AttentionBlock, AttentionPlan, RelativePositions

# Base query frames per block: fewer frames visit fewer masked pairs but make smaller products.
BLOCK_QUERY_FRAMES = 64


def chunk_attention_plan(
    pos: torch.Tensor,
    copy_id: torch.Tensor,
    chunk_size: int,
    num_left_chunks: int,
    key_valid: Optional[torch.Tensor],
    dim: int,
    block_frames: int = BLOCK_QUERY_FRAMES,
) -> AttentionPlan:
    """The attention plan of one pass under the chunk mask of ``chunk_mask.chunk_visibility``.

    Args:
        pos: (L,) int64 original positions of the pass's frames.
        copy_id: (L,) int64, 0 for base frames, k >= 1 for frames that copy chunk k.
        chunk_size: encoder frames per chunk; <= 0 is full context (one dense block).
        num_left_chunks: left chunks a query may see (< 0: all).
        key_valid: (B, L) bool, or None when nothing is padded.
        dim: model dimension (of the relative-position sinusoids).
        block_frames: base query frames per block (rounded to whole chunks); <= 0 for a dense
            plan.
    Returns:
        an :class:`AttentionPlan`; a single dense block when blocks would not save anything.
    """
    chunk = chunk_index(pos, chunk_size)
    num_chunks = int(chunk.max()) + 1 if pos.numel() else 1
    group = max(1, block_frames // chunk_size) if chunk_size > 0 else 0
    if group == 0 or block_frames <= 0 or group >= num_chunks:
        vis = chunk_visibility(chunk, copy_id, chunk, copy_id, num_left_chunks)
        return AttentionPlan.dense(RelativePositions(pos, pos, dim),
                                   additive_mask(vis, key_valid, torch.float32))
    is_base = copy_id == 0
    blocks, order = [], []
    for first in range(0, num_chunks, group):
        last = first + group  # base chunks [first, last); copies of chunks [first + 1, last]
        lo = 0 if num_left_chunks < 0 else max(0, first - num_left_chunks)
        base_q = is_base & (chunk >= first) & (chunk < last)
        copy_q = ~is_base & (chunk > first) & (chunk <= last)
        q_idx = torch.nonzero(base_q | copy_q).squeeze(1)
        k_idx = torch.nonzero((is_base & (chunk >= lo) & (chunk < last)) | copy_q).squeeze(1)
        vis = chunk_visibility(chunk[q_idx], copy_id[q_idx], chunk[k_idx], copy_id[k_idx],
                               num_left_chunks)
        kv = None if key_valid is None else key_valid[:, k_idx]
        rel = RelativePositions(pos[q_idx], pos[k_idx], dim)
        blocks.append(AttentionBlock(q_idx, k_idx, rel, additive_mask(vis, kv, torch.float32)))
        order.append(q_idx)
    order = torch.cat(order)
    if order.numel() != pos.numel():  # a layout this grouping does not cover: stay dense
        return chunk_attention_plan(pos, copy_id, chunk_size, num_left_chunks, key_valid, dim, 0)
    restore = torch.empty_like(order)
    restore[order] = torch.arange(order.numel(), device=order.device)
    return AttentionPlan(blocks, restore)

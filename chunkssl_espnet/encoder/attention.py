"""Relative positional multi-head self-attention over arbitrary positions.

Transformer-XL style scores ``(q + u) k^T + (q + v) p(pos_q - pos_k)^T`` where ``p`` is a projected
sinusoid of the relative distance. Positions are given per frame instead of assumed contiguous, so
the appended copies of copy-and-append keep the positions of the frames they copy, and a streaming
chunk sees its cached keys at their true distance. Distances are looked up by gather, not by the
"rel_shift" trick that needs contiguous positions.

On contiguous positions, with the same weights (same parameter names and shapes), this equals
ESPnet's ``RelPositionMultiHeadedAttention`` fed by its ``RelPositionalEncoding`` (the Conformer's
``rel_pos_type: latest``): the same signed distance ``pos_q - pos_k`` (positive for keys to the
left), the same sinusoid layout (sin on even, cos on odd channels, ``10000^(-2i/d)``), both terms
divided by ``sqrt(d_k)``. The one difference is bookkeeping: ESPnet's table lists the distances
from ``T-1`` down to ``-(T-1)``, ours from the smallest up (tests/test_attention.py).
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


def sinusoid(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of signed distances.

    Args:
        distances: (R,) int64.
    Returns:
        (R, dim) float32.
    """
    half = torch.arange(0, dim, 2, device=distances.device, dtype=torch.float32)
    inv_freq = torch.exp(-math.log(10000.0) * half / dim)
    ang = distances.float()[:, None] * inv_freq[None, :]
    emb = torch.zeros(distances.shape[0], dim, device=distances.device)
    emb[:, 0::2] = torch.sin(ang)
    emb[:, 1::2] = torch.cos(ang[:, : dim // 2])
    return emb


class RelativePositions:
    """Relative distances of a query/key set, shared by all layers of one forward.

    Attributes:
        table: (R, D) sinusoids of the distances ``rmin .. rmax``.
        index: (Lq, Lk) int64 row of ``table`` for each query/key pair.
    """

    def __init__(self, q_pos: torch.Tensor, k_pos: torch.Tensor, dim: int):
        rel = q_pos[:, None] - k_pos[None, :]
        rmin, rmax = int(rel.min()), int(rel.max())
        dist = torch.arange(rmin, rmax + 1, device=q_pos.device)
        self.table = sinusoid(dist, dim)
        self.index = rel - rmin


@dataclass
class AttentionBlock:
    """One dense piece of a block-sparse attention: queries ``q_idx`` against keys ``k_idx``.

    Attributes:
        q_idx: (Lq,) int64 indices of the queries among the pass's L frames; None for all.
        k_idx: (Lk,) int64 indices of the keys; None for all.
        rel: relative positions of these queries against these keys.
        mask: (B or 1, 1, Lq, Lk) additive mask.
    """

    q_idx: Optional[torch.Tensor]
    k_idx: Optional[torch.Tensor]
    rel: RelativePositions
    mask: torch.Tensor


@dataclass
class AttentionPlan:
    """Which query/key pairs one encoder pass computes, shared by all its layers.

    The blocks' queries partition the L frames; each block holds every key its queries may see,
    so the attention equals the dense masked one: a key outside a block has zero weight there.

    Attributes:
        blocks: the dense pieces.
        restore: (L,) int64 position of frame ``l``'s output in the blocks' outputs laid end to
            end; None with a single block over all frames.
    """

    blocks: List[AttentionBlock]
    restore: Optional[torch.Tensor] = None

    @classmethod
    def dense(cls, rel: RelativePositions, mask: torch.Tensor) -> "AttentionPlan":
        return cls([AttentionBlock(None, None, rel, mask)])


class RelPositionMultiHeadAttention(torch.nn.Module):
    """Multi-head self-attention with relative positions and an additive mask."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float = 0.0):
        super().__init__()
        if n_feat % n_head:
            raise ValueError(f"attention dim {n_feat} is not divisible by {n_head} heads")
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = torch.nn.Linear(n_feat, n_feat)
        self.linear_k = torch.nn.Linear(n_feat, n_feat)
        self.linear_v = torch.nn.Linear(n_feat, n_feat)
        self.linear_out = torch.nn.Linear(n_feat, n_feat)
        self.linear_pos = torch.nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = torch.nn.Parameter(torch.zeros(n_head, self.d_k))
        self.pos_bias_v = torch.nn.Parameter(torch.zeros(n_head, self.d_k))
        torch.nn.init.xavier_uniform_(self.pos_bias_u)
        torch.nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout_rate = dropout_rate

    def forward(
        self,
        x: torch.Tensor,
        plan: AttentionPlan,
        cache: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Self-attention of ``x`` over ``[cache, x]``, the pairs of ``plan`` only.

        Args:
            x: (B, L, D) queries (and new keys/values).
            plan: the blocks to compute. With a cache, a single block of all L queries against
                the ``Tc + L`` keys (relative positions and (B or 1, 1, L, Tc + L) mask).
            cache: (B, H, Tc, 2 * d_k) keys and values of earlier frames, or None.
        Returns:
            out (B, L, D) and the keys/values of ``[cache, x]``: (B, H, Tc + L, 2 * d_k).
        """
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k).transpose(1, 2)  # (B, H, L, d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        if cache is not None and cache.shape[2] > 0:
            ck, cv = cache.split(self.d_k, dim=-1)
            k = torch.cat([ck, k], dim=2)
            v = torch.cat([cv, v], dim=2)
        new_cache = torch.cat([k, v], dim=-1)
        if plan.restore is None:
            (block,) = plan.blocks
            out = self.attend(q, k, v, block.rel, block.mask)
        else:
            outs = [
                self.attend(q.index_select(2, blk.q_idx), k.index_select(2, blk.k_idx),
                            v.index_select(2, blk.k_idx), blk.rel, blk.mask)
                for blk in plan.blocks
            ]
            out = torch.cat(outs, dim=2).index_select(2, plan.restore)
        out = out.transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out), new_cache

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel: RelativePositions,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Scaled dot-product attention with the relative-position term.

        Args:
            q: (B, H, Lq, d_k); k, v: (B, H, Lk, d_k); mask: (B or 1, 1, Lq, Lk) additive.
        Returns:
            (B, H, Lq, d_k).
        """
        b = q.shape[0]
        p = self.linear_pos(rel.table.to(q.dtype)).view(-1, self.h, self.d_k)  # (R, H, d_k)
        q_v = q + self.pos_bias_v[None, :, None, :]
        bd = torch.einsum("bhqd,rhd->bhqr", q_v, p)  # (B, H, Lq, R)
        idx = rel.index[None, None].expand(b, self.h, -1, -1)
        bd = torch.gather(bd, -1, idx)  # (B, H, Lq, Lk)
        bias = (bd.float() / math.sqrt(self.d_k) + mask).to(q.dtype)
        q_u = q + self.pos_bias_u[None, :, None, :]
        return F.scaled_dot_product_attention(
            q_u, k, v, attn_mask=bias, dropout_p=self.dropout_rate if self.training else 0.0
        )

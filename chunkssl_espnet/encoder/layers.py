"""Conformer block with chunk-masked relative attention and a stream-aware causal convolution."""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from chunkssl_espnet.encoder.attention import AttentionPlan, RelPositionMultiHeadAttention


@dataclass
class StreamLayout:
    """Where the L frames of one encoder pass come from.

    Frames ``[0, num_base)`` are the base stream in time order. Frames after them are ``num_copies``
    appended copies of ``copy_len`` frames each (copy-and-append); copy ``k`` holds the frames of
    original positions ``copy_start[k] .. copy_start[k] + copy_len - 1``.

    Attributes:
        pos: (L,) int64 original positions.
        copy_id: (L,) int64, 0 for base frames, k + 1 for frames of copy k.
    """

    pos: torch.Tensor
    copy_id: torch.Tensor
    num_base: int
    copy_len: int = 0
    copy_start: Optional[torch.Tensor] = None  # (num_copies,) int64

    @classmethod
    def plain(cls, num_frames: int, offset: int = 0, device=None) -> "StreamLayout":
        pos = torch.arange(offset, offset + num_frames, device=device)
        return cls(pos=pos, copy_id=torch.zeros_like(pos), num_base=num_frames)

    @property
    def num_copies(self) -> int:
        return 0 if self.copy_start is None else int(self.copy_start.shape[0])


class FeedForward(torch.nn.Module):
    def __init__(self, d: int, units: int, dropout_rate: float):
        super().__init__()
        self.w1 = torch.nn.Linear(d, units)
        self.w2 = torch.nn.Linear(units, d)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.dropout(F.silu(self.w1(x))))


class CausalConvModule(torch.nn.Module):
    """Pointwise-GLU, causal depthwise convolution, LayerNorm, Swish, pointwise.

    The depthwise convolution looks ``kernel - 1`` frames back and never ahead. It never mixes the
    streams: the base stream takes its left context from the streaming cache (or zeros), and each
    appended copy takes its left context from the base-stream frames just before the copied chunk
    (split and concat), exactly what the copied chunk would see in a naive pass.
    """

    def __init__(self, d: int, kernel_size: int, dropout_rate: float):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"cnn_module_kernel must be >= 1, got {kernel_size}")
        self.lorder = kernel_size - 1
        self.pointwise1 = torch.nn.Conv1d(d, 2 * d, 1)
        self.depthwise = torch.nn.Conv1d(d, d, kernel_size, groups=d)
        self.norm = torch.nn.LayerNorm(d)
        self.pointwise2 = torch.nn.Conv1d(d, d, 1)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(
        self, x: torch.Tensor, layout: StreamLayout, cache: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, L, D).
            cache: (B, D, kernel - 1) GLU outputs of the frames before the base stream, or None.
        Returns:
            (B, L, D) and the new cache (B, D, kernel - 1).
        """
        b, _, d = x.shape
        h = F.glu(self.pointwise1(x.transpose(1, 2)), dim=1)  # (B, D, L)
        nb = layout.num_base
        if cache is None or cache.shape[-1] == 0:
            cache = h.new_zeros(b, d, self.lorder)
        base_in = torch.cat([cache, h[:, :, :nb]], dim=2)  # (B, D, K-1 + nb)
        if layout.num_copies:
            # One convolution over [base, ctx_1, copy_1, ctx_2, copy_2, ...]: each copy after the
            # K-1 base-stream frames before the chunk it copies. Output o sees inputs o .. o+K-1,
            # so the c outputs that end on a copy's frames see its own segment only.
            m, c, k1 = layout.num_copies, layout.copy_len, self.lorder
            copies = h[:, :, nb:].reshape(b, d, m, c)
            # base_in index of original position p is p + K - 1 (zeros before the start)
            idx = layout.copy_start[:, None] + torch.arange(k1, device=h.device)
            seg = torch.cat([base_in[:, :, idx], copies], dim=3)  # (B, D, M, K-1 + c)
            y = self.depthwise(torch.cat([base_in, seg.reshape(b, d, m * (k1 + c))], dim=2))
            copies_y = F.pad(y[:, :, nb + k1 :], (0, k1)).reshape(b, d, m, k1 + c)[..., :c]
            y = torch.cat([y[:, :, :nb], copies_y.reshape(b, d, m * c)], dim=2)
        else:
            y = self.depthwise(base_in)
        y = y.transpose(1, 2)  # (B, L, D)
        y = F.silu(self.norm(y))
        y = self.pointwise2(y.transpose(1, 2)).transpose(1, 2)
        new_cache = base_in[:, :, base_in.shape[2] - self.lorder :]
        return self.dropout(y), new_cache


class ConformerLayer(torch.nn.Module):
    """Macaron Conformer block: FFN/2, MHSA, convolution, FFN/2, LayerNorm."""

    def __init__(
        self, d: int, heads: int, units: int, kernel: int, dropout: float, att_dropout: float
    ):
        super().__init__()
        self.ff1 = FeedForward(d, units, dropout)
        self.ff2 = FeedForward(d, units, dropout)
        self.attn = RelPositionMultiHeadAttention(heads, d, att_dropout)
        self.conv = CausalConvModule(d, kernel, dropout)
        self.norm_ff1, self.norm_att, self.norm_conv, self.norm_ff2, self.norm_out = (
            torch.nn.LayerNorm(d) for _ in range(5)
        )
        self.dropout = torch.nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        layout: StreamLayout,
        plan: AttentionPlan,
        att_cache: Optional[torch.Tensor] = None,
        cnn_cache: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, L, D); plan: the attention's query/key blocks (relative positions, masks).
            att_cache: (B, H, Tc, 2 * d_k) or None; cnn_cache: (B, D, K - 1) or None.
        Returns:
            (B, L, D), new att_cache (B, H, Tc + L, 2 * d_k), new cnn_cache (B, D, K - 1).
        """
        x = x + 0.5 * self.dropout(self.ff1(self.norm_ff1(x)))
        a, new_att = self.attn(self.norm_att(x), plan, att_cache)
        x = x + self.dropout(a)
        c, new_cnn = self.conv(self.norm_conv(x), layout, cnn_cache)
        x = x + c
        x = x + 0.5 * self.dropout(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x), new_att, new_cnn



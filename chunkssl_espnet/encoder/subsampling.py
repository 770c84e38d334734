"""Causal 4x convolutional sub-sampling.

Two 3x3 convolutions of stride 2, each padded by one frame on the left in time only, so that encoder
frame ``j`` depends on fbank frames ``4j-3 .. 4j+3`` and never on a later 4-frame block: chunk
boundaries in encoder frames are chunk boundaries in fbank frames, which makes copy-and-append and
streaming exact. ``T' = T // 4``.

A segment that starts at encoder frame ``j0 > 0`` is sub-sampled exactly by prepending the
``LEFT_CONTEXT = 4`` preceding fbank frames and dropping the first output (see
:func:`Conv2dSubsampling4.forward_segment`).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from chunkssl_espnet.frames import SUBSAMPLING

# Fbank frames a segment needs from the left to be sub-sampled exactly: one encoder frame's worth
# (3 would cover the receptive field; 4 keeps the stride grid aligned, and its output is dropped).
LEFT_CONTEXT = SUBSAMPLING


class Conv2dSubsampling4(torch.nn.Module):
    """(B, T, F) fbank -> (B, T // 4, D).

    Args:
        input_size: F; output_size: D.
        channels: channels of the two convolutions (default D, as ESPnet's Conv2dSubsampling).
            The second convolution costs ``9 * channels**2`` multiply-adds per output pixel,
            which dominates small encoders (35% of a d 96 training step); fewer channels make it
            cheap.
        window_frames: fbank frames per image of a long input (see :meth:`forward`); 0 gives
            one image per utterance.
    """

    def __init__(self, input_size: int, output_size: int, dropout_rate: float = 0.0,
                 channels: Optional[int] = None, window_frames: int = 256):
        super().__init__()
        if window_frames % SUBSAMPLING:
            raise ValueError(f"window_frames must be a multiple of {SUBSAMPLING}, got "
                             f"{window_frames}")
        self.window_frames = window_frames
        channels = channels or output_size
        self.conv1 = torch.nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, stride=2)
        freq = ((input_size - 1) // 2 - 1) // 2
        if freq < 1:
            raise ValueError(f"input_size {input_size} is too small for 4x sub-sampling")
        self.out = torch.nn.Linear(channels * freq, output_size)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Args: xs (B, T, F). Returns (B, T // 4, D).

        An input longer than two windows of ``window_frames`` fbank frames is cut into windows,
        each after its ``LEFT_CONTEXT`` frames (whose output is dropped, as in
        :meth:`forward_segment`), and the windows are sub-sampled as one batch of images: the
        result is the same, and many short images run faster than a few long ones.
        """
        p, t = self.window_frames, xs.shape[1]
        if not p or t < 2 * p:
            return self.dropout(self._images(xs))
        b, _, f = xs.shape
        n = t // p  # whole windows; the first needs no context
        parts = [self._images(xs[:, :p])]
        windows = xs[:, p - LEFT_CONTEXT:n * p].unfold(1, p + LEFT_CONTEXT, p)  # (B, n-1, F, W)
        windows = windows.transpose(2, 3).reshape(b * (n - 1), p + LEFT_CONTEXT, f)
        parts.append(self._images(windows)[:, 1:].reshape(b, (n - 1) * (p // SUBSAMPLING), -1))
        if (t - n * p) // SUBSAMPLING:
            parts.append(self._images(xs[:, n * p - LEFT_CONTEXT:])[:, 1:])
        return self.dropout(torch.cat(parts, dim=1))

    def _images(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T // 4, D), before dropout: the two convolutions and the linear."""
        x = xs.unsqueeze(1)  # (B, 1, T, F)
        x = torch.relu(self._causal(self.conv1, x))
        x = torch.relu(self._causal(self.conv2, x))
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f))

    @staticmethod
    def _causal(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, F) -> (B, C', T // 2, F'): ``conv`` with one zero frame on the left in time.

        The convolution pads time by one frame on both sides itself, which gives the same
        outputs as a left pad (output t sees inputs 2t-1 .. 2t+1) without copying the image
        into a padded one (measured: that copy, its zero fill and its backward took 2 to 6% of a
        chunk SSL step on CPU); the extra last output an odd T gives sees the right pad and is
        dropped.
        """
        t = x.shape[2] // 2
        y = F.conv2d(x, conv.weight, conv.bias, conv.stride, (1, 0))
        return y if y.shape[2] == t else y[:, :, :t]

    def forward_segment(self, context: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Sub-sample a segment that does not start at the beginning of the utterance.

        Args:
            context: (B, LEFT_CONTEXT, F) the fbank frames just before the segment.
            xs: (B, T, F) the segment, T a multiple of 4 for all outputs to be whole.
        Returns:
            (B, T // 4, D), equal to the matching frames of a full-utterance forward.
        """
        return self.forward(torch.cat([context, xs], dim=1))[:, 1:]

    def forward_segments(
        self, context: torch.Tensor, xs: torch.Tensor, head: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Sub-sample M segments per utterance (after an optional head) in one image.

        Equal to :meth:`forward_segment` on each ``[context[:, m], xs[:, m]]`` (exactly: the
        segments are laid end to end, each ``LEFT_CONTEXT + T`` frames, a multiple of 4, and
        every output kept depends only on frames of its own segment), but one large image per
        utterance runs faster than M small ones (measured 2x in the copies' backward on CPU).
        A ``head`` (the base stream of copy-and-append) goes first in the same image and is
        sub-sampled as by :meth:`forward`: one convolution call for the whole pass.

        Args:
            context: (B, M, LEFT_CONTEXT, F) the fbank frames before each segment.
            xs: (B, M, T, F) the segments, T a multiple of 4.
            head: (B, T0, F) with T0 a multiple of 4, or None.
        Returns:
            (B, T0 // 4 + M * T // 4, D): the head's frames, then the segments'.
        """
        b, m, t, f = xs.shape
        if t % SUBSAMPLING:
            raise ValueError(f"segments must be a multiple of {SUBSAMPLING} frames, got {t}")
        parts = [torch.cat([context, xs], dim=2).reshape(b, m * (LEFT_CONTEXT + t), f)]
        t0 = 0
        if head is not None:
            if head.shape[1] % SUBSAMPLING:
                raise ValueError(f"the head must be a multiple of {SUBSAMPLING} frames, got "
                                 f"{head.shape[1]}")
            parts.insert(0, head)
            t0 = head.shape[1] // SUBSAMPLING
        y = self.forward(torch.cat(parts, dim=1))  # (B, T0 // 4 + M * (1 + T // 4), D)
        n = t // SUBSAMPLING
        segs = y[:, t0:].reshape(b, m, 1 + n, -1)[:, :, 1:].reshape(b, m * n, -1)
        return segs if head is None else torch.cat([y[:, :t0], segs], dim=1)

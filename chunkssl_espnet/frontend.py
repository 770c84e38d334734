"""Kaldi-compatible fbank frontend for ESPnet (docs/method.md section 2).

``KaldiFbankFrontend`` turns padded waveforms into 80-dim log-mel filter-banks exactly as
:func:`chunkssl_espnet.features.kaldi_fbank` does, so offline training, offline decoding and the
incremental fbank of streaming decoding compute the same numbers.
"""

from typing import Tuple

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from typeguard import typechecked

from chunkssl_espnet.features import HOP_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES, kaldi_fbank


def num_fbank_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Frames of ``snip_edges`` fbank: ``1 + (N - 400) // 160``, 0 when N < 400."""
    n = torch.div(num_samples - WINDOW_SAMPLES, HOP_SAMPLES, rounding_mode="floor") + 1
    return n.clamp(min=0)


class KaldiFbankFrontend(AbsFrontend):
    """(B, N) waveform in [-1, 1] -> (B, T, n_mels) fbank, T = 1 + (N - 400) // 160."""

    @typechecked
    def __init__(self, fs: int = SAMPLE_RATE, n_mels: int = 80):
        super().__init__()
        self.fs = fs
        self.n_mels = n_mels

    def output_size(self) -> int:
        return self.n_mels

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Args: input (B, N), input_lengths (B,). Returns feats (B, T, n_mels), lengths (B,)."""
        lens = num_fbank_frames(input_lengths)
        t_max = max(int(lens.max()), 1)
        feats = input.new_zeros(input.shape[0], t_max, self.n_mels, dtype=torch.float32)
        for i, n in enumerate(input_lengths.tolist()):
            f = kaldi_fbank(input[i, :n].float(), self.fs, self.n_mels)
            feats[i, : f.shape[0]] = f
        return feats, lens

"""Common part of the FSQ tokenizers (docs/method.md, section 3).

A tokenizer maps normalised fbank ``(B, T, 80)`` to one FSQ target per encoder frame: 4 stacked
fbank frames (320 values) are projected to d channels and quantised by ``FSQ``. Tokenizers are
frozen (``requires_grad`` False) and always compute in fp32.
"""

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from chunkssl_espnet.data.datadir import atomic_path, atomic_write_text
from chunkssl_espnet.features import NUM_MEL_BINS, save_mvn_stats, stack_frames
from chunkssl_espnet.frames import SUBSAMPLING
from chunkssl_espnet.fsq import DEFAULT_LEVELS, FSQ, resolve_levels

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
MVN_FILE = "feats_stats.npz"
FORMAT_VERSION = 1


class FSQTokenizer(torch.nn.Module, ABC):
    """Base class: stacked normalised fbank -> d continuous channels -> FSQ codes and indices.

    Args:
        levels: FSQ levels or preset name (default ``"2M"`` = ``[5] * 9``).
        input_dim: fbank dimension (80).
        stack: fbank frames per target (4).

    Subclasses implement ``project(x: (..., input_dim * stack)) -> z: (..., d)`` and list their
    constructor arguments in ``config()``.
    """

    kind: str = ""

    def __init__(
        self,
        levels: Union[str, Sequence[int]] = DEFAULT_LEVELS,
        input_dim: int = NUM_MEL_BINS,
        stack: int = SUBSAMPLING,
    ) -> None:
        super().__init__()
        self.levels = resolve_levels(levels)
        self.input_dim = int(input_dim)
        self.stack = int(stack)
        self.fsq = FSQ(self.levels)
        # Global MVN (ESPnet feats_stats.npz arrays) the input was normalised with, when known.
        self.mvn_stats: Optional[Dict[str, np.ndarray]] = None
        self.mvn_source: Optional[str] = None

    @property
    def frame_dim(self) -> int:
        """Values per stacked frame (320)."""
        return self.input_dim * self.stack

    @property
    def device(self) -> torch.device:
        return self.fsq._levels.device

    def config(self) -> Dict[str, Any]:
        """Constructor keyword arguments (JSON-serialisable)."""
        return {"levels": self.levels, "input_dim": self.input_dim, "stack": self.stack}

    def freeze(self) -> "FSQTokenizer":
        self.requires_grad_(False)
        self.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        """Moves between devices apply, casts to another dtype do not: the tokenizer computes
        its targets in fp32, so a model cast whole (``model.to(torch.bfloat16)``, ESPnet's
        ``--train_dtype``) keeps the same codes instead of a projection in another dtype than
        its (fp32) input."""

        def move_only(t: torch.Tensor) -> torch.Tensor:
            moved = fn(t)
            if t.is_floating_point() and moved.dtype != t.dtype:
                return t.to(device=moved.device)
            return moved

        return super()._apply(move_only, recurse)

    @abstractmethod
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked frames x (..., frame_dim) fp32 to pre-quantisation values z (..., d)."""

    def set_mvn(self, stats: Optional[Dict[str, np.ndarray]], source: Optional[str] = None) -> None:
        """Record the global MVN statistics (count, sum, sum_square) of the input features."""
        self.mvn_stats = None if stats is None else {k: np.asarray(v) for k, v in stats.items()}
        self.mvn_source = source

    # ----------------------------------------------------------------------------------------
    def stack_input(
        self, feats: torch.Tensor, lens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check and stack the input.

        Args:
            feats: (B, T, input_dim) normalised fbank.
            lens: (B,) valid frames.

        Returns:
            x: (B, T // stack, frame_dim) fp32; out_lens: (B,); valid: (B, T // stack) bool.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise ValueError(
                f"tokenizer expects features (B, T, {self.input_dim}) ({self.input_dim}-dim "
                f"fbank), got shape {tuple(feats.shape)}"
            )
        if lens.dim() != 1 or lens.shape[0] != feats.shape[0]:
            raise ValueError(
                f"lens must be (B,) with B={feats.shape[0]}, got shape {tuple(lens.shape)}"
            )
        if lens.numel() > 0:
            max_len, min_len = int(lens.max()), int(lens.min())
            if max_len > feats.shape[1]:
                raise ValueError(
                    f"lens has a length {max_len} longer than the feature tensor "
                    f"({feats.shape[1]} frames)"
                )
            if min_len < 0:
                raise ValueError(f"lens has a negative length {min_len}")
        x, out_lens = stack_frames(feats.float(), lens.to(feats.device), self.stack)
        steps = torch.arange(x.shape[1], device=x.device)
        valid = steps.unsqueeze(0) < out_lens.unsqueeze(1)
        return x, out_lens, valid

    def codes(self, feats: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """FSQ codes of each encoder frame.

        Args:
            feats: (B, T, input_dim) normalised fbank; lens: (B,).

        Returns:
            codes: (B, T // stack, d) fp32 in [-1, 1], 0 beyond ``out_lens``;
            out_lens: (B,) ``lens // stack``.
        """
        x, out_lens, valid = self.stack_input(feats, lens)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            codes = self.fsq.quantize(self.project(x))
        return codes.masked_fill(~valid.unsqueeze(-1), 0.0), out_lens

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Full FSQ indices.

        Args:
            feats: (B, T, input_dim) normalised fbank; lens: (B,).

        Returns:
            indices: (B, T // stack) int64 in ``[0, codebook_size)``, -1 beyond ``out_lens``;
            out_lens: (B,).
        """
        codes, out_lens = self.codes(feats, lens)
        x_valid = torch.arange(codes.shape[1], device=codes.device) < out_lens.unsqueeze(1)
        return self.fsq.codes_to_indices(codes).masked_fill(~x_valid, -1), out_lens

    def group_targets(
        self, feats: torch.Tensor, lens: torch.Tensor, group_size: int = 3
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-group indices for the group masked prediction loss.

        Returns:
            targets: (B, T // stack, G) int64, group g in ``[0, group_sizes[g])``, -1 beyond
            ``out_lens``; out_lens: (B,).
        """
        x, out_lens, valid = self.stack_input(feats, lens)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            targets = self.fsq.group_indices_of(self.project(x), group_size)
        return targets.masked_fill_(~valid.unsqueeze(-1), -1), out_lens

    # ----------------------------------------------------------------------------------------
    def save(self, directory: Union[str, Path]) -> None:
        """Write ``config.json`` and ``model.pt`` (and ``feats_stats.npz`` when MVN is known)
        into ``directory``, each atomically (``atomic_path``), ``config.json`` last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "conf": self.config(),
            "mvn_stats": MVN_FILE if self.mvn_stats is not None else None,
            "mvn_source": self.mvn_source,
        }
        if self.mvn_stats is not None:
            save_mvn_stats(self.mvn_stats, directory / MVN_FILE)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(state, tmp)
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

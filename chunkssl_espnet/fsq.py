"""Finite scalar quantisation (docs/method.md, section 3; Mentzer et al. 2023, arXiv 2309.15505).

Channel ``i`` of a d-dim vector is bounded to ``L_i`` levels with a tanh (offset by half a level for
even ``L_i``), rounded with a straight-through gradient, and scaled to [-1, 1]. The codebook is
implicit: its size is ``prod(L_i)`` and the index of a code is the mixed-radix number
``sum_i digit_i * prod_{j<i} L_j``. Nothing of size ``prod(L_i)`` is ever allocated, so
``FSQ([5] * 12)`` (244M codes) costs a few bytes.

Group targets for the group masked prediction loss (section 4) are the mixed-radix indices of
consecutive groups of channels.
"""

import math
import numbers
from typing import Dict, List, Sequence, Tuple, Union

import torch

LEVEL_PRESETS: Dict[str, List[int]] = {
    "1k": [8, 5, 5, 5],
    "64k": [8, 8, 8, 5, 5, 5],
    "2M": [5] * 9,
    "10M": [5] * 10,
    "244M": [5] * 12,
}
DEFAULT_LEVELS = "2M"


def resolve_levels(levels_or_name: Union[str, Sequence[int]]) -> List[int]:
    """Levels from a preset name (``"2M"``), a comma list (``"8,5,5,5"``) or a sequence of ints.

    Raises:
        ValueError: unknown preset, empty levels, or a level below 2.
    """
    if isinstance(levels_or_name, str):
        name = levels_or_name.strip()
        if name in LEVEL_PRESETS:
            levels = list(LEVEL_PRESETS[name])
        elif name and all(p.strip().isdigit() for p in name.split(",")):
            levels = [int(p) for p in name.split(",")]
        else:
            raise ValueError(
                f"unknown FSQ levels {levels_or_name!r}: use a preset "
                f"({', '.join(LEVEL_PRESETS)}) or a comma-separated list such as '8,5,5,5'"
            )
    else:
        levels = list(levels_or_name)
    if len(levels) == 0:
        raise ValueError("FSQ levels must not be empty")
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, numbers.Integral) or lv < 2:
            raise ValueError(f"every FSQ level must be an integer >= 2, got levels {levels}")
    return [int(lv) for lv in levels]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round with identity gradient (straight-through estimator)."""
    return x + (x.round() - x).detach()


class FSQ(torch.nn.Module):
    """Finite scalar quantiser with an implicit codebook of ``prod(levels)`` codes.

    Args:
        levels: number of levels per channel, each >= 2 (see ``resolve_levels`` for presets).

    Codes are the level grid scaled to [-1, 1]: for odd ``L`` the values ``k / (L // 2)``,
    ``k = -(L // 2) .. L // 2``; for even ``L`` the values ``k / (L // 2)``,
    ``k = -(L // 2) .. L // 2 - 1``. Everything is computed in fp32.
    """

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        self.levels: List[int] = resolve_levels(list(levels))
        self.dim: int = len(self.levels)
        self.codebook_size: int = math.prod(self.levels)
        basis = [math.prod(self.levels[:i]) for i in range(self.dim)]
        # Non-persistent: rebuilt from ``levels``; they follow .to(device).
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.int64), False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), False)
        self.register_buffer(
            "_half_width", torch.tensor([lv // 2 for lv in self.levels], dtype=torch.int64), False
        )
        self._radix_cache: Dict[Tuple[int, str], torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"levels={self.levels}, codebook_size={self.codebook_size}"

    def _check_last_dim(self, x: torch.Tensor, what: str) -> None:
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"FSQ{self.levels}: {what} must have last dimension {self.dim}, "
                f"got shape {tuple(x.shape)}"
            )

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Bound z (..., d) so that rounding gives ``L_i`` values per channel (fp32)."""
        self._check_last_dim(z, "z")
        eps = 1.0e-3
        levels = self._levels.float()
        half_l = (levels - 1.0) * (1.0 + eps) / 2.0
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise z (..., d) to codes (..., d) on the level grid in [-1, 1].

        Always fp32 (the input is cast up, autocast is disabled); the gradient of the rounding is
        the identity (straight-through), the gradient of the bounding is exact.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            digits = _round_ste(self.bound(z.float()))
            return digits / self._half_width.float()

    def codes_to_digits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (..., d) in [-1, 1] to integer digits (..., d) in ``[0, L_i)`` (int64)."""
        self._check_last_dim(codes, "codes")
        scaled = codes.float() * self._half_width.float() + self._half_width.float()
        return scaled.round().long()

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (..., d) to indices (...) int64 in ``[0, codebook_size)``."""
        return (self.codes_to_digits(codes) * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (...) int64 to codes (..., d) fp32; inverse of ``codes_to_indices``."""
        digits = torch.div(indices.long().unsqueeze(-1), self._basis, rounding_mode="floor")
        digits = digits % self._levels
        return (digits - self._half_width).float() / self._half_width.float()

    def group_sizes(self, group_size: int) -> List[int]:
        """Vocabulary size of each group of ``group_size`` consecutive channels (last may be
        smaller): e.g. ``FSQ([5] * 9).group_sizes(3) == [125, 125, 125]``."""
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        return [math.prod(self.levels[i : i + group_size]) for i in range(0, self.dim, group_size)]

    @torch.no_grad()
    def group_indices_of(self, z: torch.Tensor, group_size: int) -> torch.Tensor:
        """Per-group indices (..., G) int64 straight from pre-quantisation values z (..., d).

        Equal to ``group_indices(quantize(z), group_size)``: the same bounding and rounding,
        then the digits' mixed-radix sums as one small product, without the codes in between
        (the labelling pass of pre-training; about 3x fewer operators, in place; no gradient).
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            digits = self.bound(z.float()).round_().add_(self._half_width.float())
            radix = self._radix(group_size, z.device)
            return (digits.to(radix.dtype) @ radix).round_().long()

    def _radix(self, group_size: int, device: torch.device) -> torch.Tensor:
        """(d, G): column g holds group g's local mixed-radix basis, as in :meth:`group_indices`
        (cached per device). fp32 while every group index is below 2^24, where its sums of
        integer digits are exact; fp64 (exact below 2^53) for larger groups."""
        key = (group_size, str(device))
        if key not in self._radix_cache:
            sizes = self.group_sizes(group_size)
            dtype = torch.float32 if max(sizes) <= 2**24 else torch.float64
            radix = torch.zeros(self.dim, len(sizes), dtype=dtype)
            for g in range(len(sizes)):
                lo, hi = g * group_size, min((g + 1) * group_size, self.dim)
                radix[lo:hi, g] = (self._basis[lo:hi] // self._basis[lo]).cpu().to(dtype)
            self._radix_cache[key] = radix.to(device)
        return self._radix_cache[key]

    def group_indices(self, codes: torch.Tensor, group_size: int) -> torch.Tensor:
        """Codes (..., d) to per-group mixed-radix indices (..., G) int64.

        Group ``g`` covers channels ``[g * group_size, (g + 1) * group_size)``; its index is
        ``sum_i digit_i * prod_{g * group_size <= j < i} L_j``. Joining the group indices with
        radices ``group_sizes(group_size)`` gives back ``codes_to_indices(codes)``.
        """
        sizes = self.group_sizes(group_size)
        digits = self.codes_to_digits(codes)
        out = []
        for g in range(len(sizes)):
            lo, hi = g * group_size, min((g + 1) * group_size, self.dim)
            local_basis = self._basis[lo:hi] // self._basis[lo]
            out.append((digits[..., lo:hi] * local_basis).sum(-1))
        return torch.stack(out, dim=-1)

"""Codebook usage report of an FSQ tokenizer (docs/method.md, section 3)."""

import math
from typing import Any, Dict, Sequence

import torch


def perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of the empirical distribution given by ``counts`` (V,); 0 if empty."""
    total = counts.sum()
    if int(total) == 0:
        return 0.0
    p = counts[counts > 0].double() / total.double()
    return float(torch.exp(-(p * p.log()).sum()))


def codebook_usage(
    indices: torch.Tensor, group_targets: torch.Tensor, group_sizes: Sequence[int]
) -> Dict[str, Any]:
    """Usage of the full codebook and of each group's vocabulary; entries equal to -1 (padding)
    are ignored.

    Args:
        indices: (...) int64 full FSQ indices.
        group_targets: (..., G) int64 group indices.
        group_sizes: the G group vocabulary sizes.

    Returns:
        ``num_frames``, ``codebook_size``, ``distinct_indices``, ``group_sizes``,
        ``group_perplexity`` (list of G floats, exp of the entropy in nats),
        ``group_used`` (distinct values per group) and ``group_used_fraction``.
    """
    group_sizes = [int(v) for v in group_sizes]
    if group_targets.shape[-1] != len(group_sizes):
        raise ValueError(
            f"group_targets has {group_targets.shape[-1]} groups but {len(group_sizes)} group "
            "sizes were given"
        )
    valid_idx = indices[indices >= 0]
    groups = group_targets.reshape(-1, len(group_sizes))
    groups = groups[(groups >= 0).all(-1)]
    ppl, used = [], []
    for g, vocab in enumerate(group_sizes):
        counts = torch.bincount(groups[:, g].cpu(), minlength=vocab)
        ppl.append(perplexity(counts))
        used.append(int((counts > 0).sum()))
    return {
        "num_frames": int(valid_idx.numel()),
        "codebook_size": math.prod(group_sizes),
        "distinct_indices": int(torch.unique(valid_idx).numel()),
        "group_sizes": group_sizes,
        "group_perplexity": ppl,
        "group_used": used,
        "group_used_fraction": [u / v for u, v in zip(used, group_sizes)],
    }


def format_usage(usage: Dict[str, Any]) -> str:
    """One human-readable paragraph of a ``codebook_usage`` report."""
    lines = [
        f"frames: {usage['num_frames']}  distinct indices: {usage['distinct_indices']} "
        f"of {usage['codebook_size']}"
    ]
    for g, (v, p, f) in enumerate(
        zip(usage["group_sizes"], usage["group_perplexity"], usage["group_used_fraction"])
    ):
        lines.append(f"group {g}: vocab {v}  perplexity {p:.1f}  used {100 * f:.1f}%")
    return "\n".join(lines)

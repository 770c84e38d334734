"""The recipes' figures (PNG): loss curves of every training, and error rate against chunk size.

Loss curves come from the reporter ESPnet keeps in ``<exp>/checkpoint.pth`` (per epoch, per phase:
``stats[epoch]["train"|"valid"][key]``), so they survive resumed trainings and need no log parsing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import atomic_path
from chunkssl_espnet.frames import ENCODER_FRAME_MS

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

Curve = Dict[str, List[Tuple[int, float]]]


def read_training_curves(exp_dir: PathLike) -> Dict[str, Curve]:
    """``{phase: {key: [(epoch, value), ...]}}`` from ESPnet's reporter in ``checkpoint.pth``.

    Raises:
        FileNotFoundError: the experiment has no ``checkpoint.pth`` (training never ran an epoch).
    """
    import torch

    ckpt = Path(exp_dir) / "checkpoint.pth"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint, so no loss curve (train first)")
    # mmap: a large model's checkpoint is not read into memory for its few numbers.
    state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    stats = state["reporter"]["stats"]
    curves: Dict[str, Curve] = {}
    for epoch in sorted(stats):
        for phase, values in stats[epoch].items():
            for key, value in values.items():
                if isinstance(value, (int, float)) and key != "total_count":
                    curves.setdefault(phase, {}).setdefault(key, []).append((epoch, float(value)))
    return curves


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(
    experiments: Mapping[str, PathLike],
    out_png: PathLike,
    title: str,
    keys: Sequence[str] = ("loss",),
) -> Optional[Path]:
    """One panel per key (``loss``, ``acc``...), train (solid) and valid (dashed) per experiment.

    Experiments without a checkpoint are left out (with a warning); returns None if none has one.
    """
    curves = {}
    for label, exp_dir in experiments.items():
        try:
            curves[label] = read_training_curves(exp_dir)
        except FileNotFoundError as e:
            logger.warning("%s", e)
    if not curves:
        return None
    keys = [k for k in keys if any(k in c.get(p, {}) for c in curves.values()
                                   for p in ("train", "valid"))]
    if not keys:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (label, curve) in enumerate(curves.items()):
            for phase, style in (("train", "-"), ("valid", "--")):
                points = curve.get(phase, {}).get(key)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, marker="o", markersize=3, color=f"C{i}",
                            label=f"{label} ({phase})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_error_vs_chunk(
    series: Mapping[str, Mapping[int, float]],
    offline: Mapping[str, float],
    out_png: PathLike,
    metric: str = "WER (%)",
    title: str = "",
    frame_ms: int = ENCODER_FRAME_MS,
) -> Path:
    """Error rate against chunk size (ms, log scale), one line per model; offline as a dotted line.

    Args:
        series: ``{model: {chunk size in encoder frames: error rate}}``.
        offline: ``{model: offline error rate}``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, points) in enumerate(series.items()):
        if points:
            xs = sorted(points)
            ax.plot([c * frame_ms for c in xs], [points[c] for c in xs], marker="o",
                    color=f"C{i}", label=f"{label}, streaming")
        if label in offline:
            ax.axhline(offline[label], linestyle=":", color=f"C{i}", label=f"{label}, offline")
    ax.set_xscale("log", base=2)
    chunks = sorted({c for points in series.values() for c in points})
    if chunks:
        ax.set_xticks([c * frame_ms for c in chunks], [str(c * frame_ms) for c in chunks])
    ax.set_xlabel("chunk size (ms)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, out_png)


def _save(fig, out_png: PathLike) -> Path:
    """Save atomically (see ``atomic_path``) and close the figure."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return Path(out_png)

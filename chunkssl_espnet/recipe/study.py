"""The study report of egs2/mini_flite/asr1/run_study.sh: one table and one figure per sweep.

A *sweep* varies one setting (codebook size, labelled minutes, ...) and names, for each value,
either one model folder (its WER is reported) or a pair ``ssl|scratch`` (both WERs, and the
relative change of the first against the second with the paired bootstrap's 95% interval, the
cells of ``recipe score``'s gain row, :func:`chunkssl_espnet.recipe.results.gain_row`). Every
cell is scored from the decodings the decode stages left (offline: full context, and the
chunk-masked encoder at the chunk sizes decoded), as ``recipe score`` does, so the report can
be regenerated from the experiment folders alone.

Spec of a sweep on the command line: ``NAME:VALUE=DIR[|DIR],VALUE=DIR[|DIR],...``, folders
relative to the experiment directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import atomic_write_text
from chunkssl_espnet.frames import ENCODER_FRAME_MS
from chunkssl_espnet.recipe.jobs import RecipeError
from chunkssl_espnet.recipe.plots import _pyplot, _save
from chunkssl_espnet.recipe.results import gain_row, markdown_table, score_model

PathLike = Union[str, os.PathLike]

#: A sweep: its name and ``[(value, (model dir, optional baseline dir))]``.
Sweep = Tuple[str, List[Tuple[str, Tuple[str, Optional[str]]]]]


def parse_sweep(spec: str) -> Sweep:
    """``"codebook:1k=study/asr_1k,2M=asr_ssl|asr_scratch"`` -> ``("codebook", [...])``."""
    name, sep, items = spec.partition(":")
    if not sep or not name or not items:
        raise RecipeError(f"sweep: expected NAME:VALUE=DIR[|DIR],..., got {spec!r}")
    out = []
    for item in items.split(","):
        value, sep, dirs = item.partition("=")
        parts = dirs.split("|")
        if not sep or not value or not parts[0] or len(parts) > 2:
            raise RecipeError(f"sweep {name!r}: bad item {item!r} (VALUE=DIR or VALUE=DIR|DIR)")
        out.append((value, (parts[0], parts[1] if len(parts) == 2 else None)))
    return name, out


def _columns(result: Mapping[str, object]) -> Dict[str, Mapping[str, object]]:
    """``{"offline": score, "640 ms": score, ...}`` of one model on one test set: the offline
    decodings, full context and chunk-masked (the study's decode stage makes these; the main
    recipe's streaming decodings stay in its own RESULTS.md)."""
    cols: Dict[str, Mapping[str, object]] = {}
    if "offline" in result:
        cols["offline"] = result["offline"]  # type: ignore[assignment]
    for c, r in sorted(result["chunked"].items()):  # type: ignore[union-attr]
        cols[f"{c * ENCODER_FRAME_MS} ms"] = r
    return cols


def sweep_rows(
    exp_dir: Path, data_root: Path, test_set: str, sweep: Sweep
) -> Tuple[List[Dict[str, object]], List[str], Dict[str, Dict[str, Dict[str, float]]]]:
    """Table rows of one sweep on one test set, its columns, and the numbers for the figure
    (``{column: {"model"|"baseline": {value: WER}}}``)."""
    ref = data_root / test_set / "text"
    if not ref.is_file():
        raise RecipeError(f"{ref}: reference transcripts not found")
    rows, columns, series = [], ["value"], {}  # type: ignore[var-annotated]
    paired = any(b for _, (_, b) in sweep[1])
    for value, (model, base) in sweep[1]:
        sa = score_model(exp_dir / model, test_set, ref, "wer")
        sb = score_model(exp_dir / base, test_set, ref, "wer") if base else None
        a, b = _columns(sa), _columns(sb) if sb else {}
        gains: Dict[str, object] = {}
        if sb:  # two models: gain_row gives a row
            gains = gain_row({"a": sa, "b": sb}, "chunked", sorted(sa["chunked"])) or {}
        row: Dict[str, object] = {"value": value}
        for col, ra in a.items():
            label = f"{col}" if not paired else f"{col} SSL"
            row[label] = ra["score"]
            series.setdefault(col, {}).setdefault("model", {})[value] = float(ra["score"])
            if col in b:
                row[f"{col} scratch"] = b[col]["score"]
                series[col].setdefault("baseline", {})[value] = float(b[col]["score"])
                if col in gains:
                    row[f"{col} change [95% CI]"] = gains[col]
        for k in row:
            if k not in columns:
                columns.append(k)
        rows.append(row)
    return rows, columns, series


def trend(name: str, test_set: str, rows: Sequence[Mapping[str, object]]) -> str:
    """One plain sentence on the offline column of a sweep: which value is best and by how
    much, and for paired sweeps where the SSL model's relative change is largest."""
    key = "offline SSL" if any("offline SSL" in r for r in rows) else "offline"
    points = [(str(r["value"]), float(r[key])) for r in rows if key in r]  # type: ignore
    if not points:
        return ""
    best, worst = min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])
    text = (f"{test_set}, offline: the lowest WER is at {name} = {best[0]} ({best[1]:.1f}%), the "
            f"highest at {worst[0]} ({worst[1]:.1f}%)")
    changes = [(str(r["value"]), str(r["offline change [95% CI]"])) for r in rows
               if "offline change [95% CI]" in r]
    if changes:
        text += "; SSL against scratch: " + ", ".join(f"{v}: {c}" for v, c in changes)
    return text + "."


def plot_sweep(series: Mapping[str, Mapping[str, Mapping[str, float]]], name: str,
               test_set: str, out_png: PathLike) -> Optional[Path]:
    """WER against the swept value (categorical axis), one line per column and model."""
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=90)
    for col, lines in series.items():
        for who, points in lines.items():
            values = list(points)
            style = "-o" if who == "model" else "--s"
            label = col if len(lines) == 1 else f"{col}, {'SSL' if who == 'model' else 'scratch'}"
            ax.plot(range(len(values)), [points[v] for v in values], style, label=label)
            ax.set_xticks(range(len(values)), values)
    ax.set_xlabel(name)
    ax.set_ylabel("WER (%)")
    ax.set_title(f"{test_set}: WER against {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out_png)


def study_report(
    exp_dir: PathLike, data_root: PathLike, test_sets: Sequence[str], sweeps: Sequence[Sweep],
    out_md: PathLike, title: str = "Study", intro: str = "",
) -> Path:
    """Write ``out_md`` (tables), ``<out_md stem>.json`` (the numbers) and one PNG per sweep and
    test set in ``<out_md folder>/plots_study/``."""
    exp_dir, data_root, out_md = Path(exp_dir), Path(data_root), Path(out_md)
    parts = [f"# {title}\n", intro] if intro else [f"# {title}\n"]
    numbers: Dict[str, Dict[str, object]] = {}
    for sweep in sweeps:
        name = sweep[0]
        parts.append(f"## {name}\n")
        for test_set in test_sets:
            rows, columns, series = sweep_rows(exp_dir, data_root, test_set, sweep)
            slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
            png = plot_sweep(series, name, test_set,
                             out_md.parent / "plots_study" / f"{slug}_{test_set}.png")
            parts.append(f"### {test_set}: WER (%)\n\n{trend(name, test_set, rows)}\n\n"
                         + markdown_table(rows, columns))
            if png:
                parts.append(f"![{name}, {test_set}]({os.path.relpath(png, out_md.parent)})\n")
            numbers.setdefault(name, {})[test_set] = rows
    atomic_write_text(out_md.with_suffix(".json"), json.dumps(numbers, indent=1) + "\n")
    atomic_write_text(out_md, "\n".join(parts))
    return out_md


__all__ = ["parse_sweep", "plot_sweep", "study_report", "sweep_rows", "trend"]

"""The scoring stage: error rates of every decoding, the results tables, and the figures.

It reads the decoding folders the decode stages leave (``decode.offline_dir`` and
``decode.streaming_root``; only complete ones, with their ``.done`` stamp), scores them against the
test set's reference (WER with jiwer, or BLEU with sacreBLEU), and writes ``results.json``,
``RESULTS.md`` (printed by the recipe) and the figures under ``<exp>/plots/``: loss curves of the
SSL and the downstream trainings, and error rate against chunk size.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.bootstrap import bootstrap_files, format_gain
from chunkssl_espnet.data.datadir import atomic_write_text, read_scp
from chunkssl_espnet.data.scoring import score_bleu, score_wer
from chunkssl_espnet.frames import ENCODER_FRAME_MS as FRAME_MS
from chunkssl_espnet.recipe.decode import offline_dir, streaming_root
from chunkssl_espnet.recipe.jobs import RecipeError
from chunkssl_espnet.recipe.plots import plot_error_vs_chunk, plot_loss_curves
from chunkssl_espnet.recipe.provenance import versions

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

METRICS = {"wer": "WER (%)", "cer": "CER (%)", "bleu": "BLEU"}
#: Marker in a RESULTS.md template that the tables replace.
TEMPLATE_MARKER = "<!-- results -->"


def parse_labelled(items: Sequence[str]) -> List[Tuple[str, str]]:
    """``["asr_ssl=Chunk SSL", "asr_scratch"]`` -> ``[(dir, label), ...]`` (label: dir)."""
    out = []
    for item in items:
        name, _, label = item.partition("=")
        if not name:
            raise RecipeError(f"empty experiment name in {item!r}")
        out.append((name, label or name))
    return out


def _complete(folder: Path) -> bool:
    return (folder / ".done").is_file() and (folder / "text").is_file()


def score_file(ref: PathLike, hyp: PathLike, metric: str) -> Dict[str, object]:
    """Score one hypothesis file; the result has ``score`` (the metric) plus the details."""
    if metric == "bleu":
        res = score_bleu(ref, hyp)
        return {"score": res["bleu"], **res, "ref": str(ref), "hyp": str(hyp)}
    res = score_wer(ref, hyp, unit="char" if metric == "cer" else "word")
    return {"score": res["wer"], **res, "ref": str(ref), "hyp": str(hyp)}


def gain_row(
    per_model: Mapping[str, Mapping[str, object]], kind: str, chunks: Sequence[int]
) -> Optional[Dict[str, object]]:
    """The relative WER change of the first model against the second, per column, with the
    paired bootstrap's 95% interval (utterances resampled, :mod:`chunkssl_espnet.data.bootstrap`);
    None with fewer than two models. A column either model lacks stays empty."""
    if len(per_model) < 2:
        return None
    a, b = list(per_model.values())[:2]
    pairs = {"offline": (a.get("offline"), b.get("offline"))}
    for c in chunks:
        pairs[f"{c * FRAME_MS} ms"] = (a[kind].get(c), b[kind].get(c))  # type: ignore[union-attr]
    row: Dict[str, object] = {}
    for col, (ra, rb) in pairs.items():
        if ra is None or rb is None:
            continue
        try:
            g = bootstrap_files(ra["ref"], ra["hyp"], rb["hyp"])
        except ValueError:  # the baseline makes no error: no gain to measure
            continue
        row[col] = format_gain(g)
        ra["gain_vs_next"] = g.as_dict()
    return row


def score_model(
    model_dir: PathLike, test_set: str, ref: PathLike, metric: str
) -> Dict[str, object]:
    """Scores of one model on one test set: ``{"offline": ..., "chunked": {C: ...},
    "streaming": {C: {..., "summary": streaming summary.json}}}`` (missing decodings left out)."""
    model_dir = Path(model_dir)
    out: Dict[str, object] = {"chunked": {}, "streaming": {}}
    folder = offline_dir(model_dir, test_set)
    if _complete(folder):
        out["offline"] = score_file(ref, folder / "text", metric)
    for folder in sorted(model_dir.glob(f"decode_{test_set}_chunk*")):
        m = re.fullmatch(rf"decode_{re.escape(test_set)}_chunk(\d+)", folder.name)
        if m and _complete(folder):
            out["chunked"][int(m.group(1))] = score_file(ref, folder / "text", metric)
    for folder in sorted(streaming_root(model_dir, test_set).glob("chunk*")):
        m = re.fullmatch(r"chunk(\d+)", folder.name)
        if m and _complete(folder):
            res = score_file(ref, folder / "text", metric)
            summary = folder / "summary.json"
            res["summary"] = json.loads(summary.read_text()) if summary.is_file() else {}
            out["streaming"][int(m.group(1))] = res
    for folder in sorted((model_dir / f"decode_{test_set}_sherpa").glob("*_chunk*")):
        if _complete(folder):
            res = score_file(ref, folder / "text", metric)
            res["summary"] = json.loads((folder / "summary.json").read_text())
            out.setdefault("sherpa", {})[folder.name] = res
    return out


def _fmt(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


#: Figures of a streaming decoder's ``summary.json`` shown in the tables, in this order.
SUMMARY_KEYS = ("algorithmic_latency_ms", "average_lagging_ms", "rtf", "mean_chunk_latency_ms",
                "p90_chunk_latency_ms")
#: Numbers of a summary left out: bookkeeping, and BLEU (the table's score column has it).
SUMMARY_SKIP = ("num_utts", "chunk_size_frames", "chunk_size_ms", "num_left_chunks", "beam_size",
                "seed", "bleu")


def _summary_numbers(summary: Mapping[str, object]) -> Dict[str, float]:
    """The figures of a streaming ``summary.json`` (latency, RTF, ...): the known ones in
    ``SUMMARY_KEYS`` order, then any other scalar number (bookkeeping left out)."""
    numbers = _flat_numbers(summary)
    known = {k: numbers[k] for k in SUMMARY_KEYS if k in numbers}
    rest = {k: v for k, v in numbers.items() if k not in known and k not in SUMMARY_SKIP}
    return {**known, **rest}


def _flat_numbers(summary: Mapping[str, object]) -> Dict[str, float]:
    """The scalar numbers of a summary, nested mappings flattened to ``outer.inner``."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, Mapping):
            for k2, v2 in value.items():
                if isinstance(v2, (int, float)) and not isinstance(v2, bool):
                    out[f"{key}.{k2}"] = float(v2)
    return out


def _error_table(
    per_model: Mapping[str, Mapping[str, object]], labels: Mapping[str, str], name: str,
    heading: str, gain: bool = False,
) -> str:
    """One row per model: offline, then each chunk size (streaming, or else chunk-masked)."""
    chunks = sorted({c for s in per_model.values() for kind in ("chunked", "streaming")
                     for c in s[kind]})  # type: ignore[union-attr]
    streaming = any(s["streaming"] for s in per_model.values())
    kind = "streaming" if streaming else "chunked"
    cols = ["model", "offline"] + [f"{c * FRAME_MS} ms" for c in chunks]
    rows = []
    for model, s in per_model.items():
        row: Dict[str, object] = {"model": labels[model]}
        if "offline" in s:
            row["offline"] = s["offline"]["score"]  # type: ignore[index]
        for c in chunks:
            res = s[kind].get(c)  # type: ignore[union-attr]
            if res is not None:
                row[f"{c * FRAME_MS} ms"] = res["score"]
        rows.append(row)
    what = "streaming, chunk by chunk" if streaming else "chunk-masked encoder"
    note = ""
    extra = gain_row(per_model, kind, chunks) if gain else None
    if extra:
        first, second = (labels[m] for m in list(per_model)[:2])
        rows.append({"model": "relative change [95% CI]", **extra})
        note = (f" Last row: WER of {first} relative to {second} (negative: {first} is better),"
                " with the 95% interval of a paired bootstrap over utterances (2000 resamples).")
    return (f"{heading}: {name}\n\nColumns after `offline`: {what}, at the chunk size given "
            f"(algorithmic latency).{note}\n\n" + markdown_table(rows, cols))


def results_markdown(
    scores: Mapping[str, Mapping[str, Mapping[str, object]]],
    labels: Mapping[str, str],
    metric: str,
    set_info: Mapping[str, str],
    extra_scores: Optional[Mapping[str, Mapping[str, Mapping[str, Mapping[str, object]]]]] = None,
) -> str:
    """The tables: per test set, one row per model (offline, then each chunk size), the same
    for every extra metric (``{metric: scores}``); then a streaming table per model with the
    decoder's real-time factor and latencies."""
    name = METRICS[metric]
    parts = []
    for test_set, per_model in scores.items():
        parts.append(_error_table(per_model, labels, name,
                                  f"## {test_set} ({set_info.get(test_set, '')})",
                                  gain=metric == "wer"))
        for extra, extra_scores_ in (extra_scores or {}).items():
            parts.append(_error_table(extra_scores_[test_set], labels, METRICS[extra],
                                      f"### {test_set}"))
        for model, s in per_model.items():
            stream = s["streaming"]
            if not stream:
                continue
            numbers = {c: _summary_numbers(r.get("summary", {})) for c, r in stream.items()}
            keys = list(dict.fromkeys(k for n in numbers.values() for k in n))
            cols = ["chunk (ms)", name] + keys
            rows = [{"chunk (ms)": c * FRAME_MS, name: r["score"], **numbers[c]}
                    for c, r in sorted(stream.items())]
            parts.append(f"### {test_set}: streaming decoder of {labels[model]}\n\n"
                         + markdown_table(rows, cols))
        for model, s in per_model.items():
            if s.get("sherpa"):
                extra = {METRICS[m]: e[test_set][model] for m, e in (extra_scores or {}).items()}
                parts.append(_deploy_table(s, name, f"### {test_set}: {labels[model]} deployed "
                                           "(ONNX, sherpa-onnx) against PyTorch streaming", extra))
    return "\n".join(parts)


def _deploy_table(s: Mapping[str, object], name: str, heading: str,
                  extra: Optional[Mapping[str, Mapping[str, object]]] = None) -> str:
    """sherpa-onnx fp32 and int8 beside the PyTorch streaming decoder at the same chunk size:
    its beam search (all left chunks, the streaming table's) and its CTC greedy search on the
    export's left chunks and padded audio, whose tokens sherpa-onnx's must equal."""
    extra = extra or {}
    cols = ["decoder", "chunk (ms)", name, *extra, "RTF", "model MB",
            "utterances = PyTorch greedy"]
    order = {"pytorch": 0, "fp32": 1, "int8": 2}
    rows, shown = [], set()
    for variant, r in sorted(s["sherpa"].items(), key=lambda kv: (kv[1]["summary"][
            "chunk_size_frames"], order.get(kv[0].split("_")[0], 3))):
        summ, kind = r["summary"], variant.split("_")[0]
        c = summ["chunk_size_frames"]
        torch_r = s["streaming"].get(c)
        if torch_r is not None and c not in shown:
            shown.add(c)
            rtf = torch_r["summary"].get("rtf")
            rows.append({"decoder": "PyTorch, CTC prefix beam + attention rescoring, all left "
                         "chunks", "chunk (ms)": c * FRAME_MS, name: torch_r["score"],
                         **{m: e["streaming"][c]["score"] for m, e in extra.items()
                            if c in e["streaming"]},
                         "RTF": "" if rtf is None else f"{rtf:.4f}"})
        left = summ["num_left_chunks"]
        if kind == "pytorch":
            label = f"PyTorch, CTC greedy, {left} left chunks"
        else:
            label = f"sherpa-onnx {kind}, CTC greedy, {left} left chunks"
        equal = summ.get("utts_equal_to_reference")
        rows.append({"decoder": label, "chunk (ms)": c * FRAME_MS, name: r["score"],
                     **{m: e["sherpa"][variant]["score"] for m, e in extra.items()},
                     "RTF": f"{summ['rtf']:.4f}",
                     "model MB": summ["model_bytes"] / 1e6 if "model_bytes" in summ else "",
                     "utterances = PyTorch greedy": "" if equal is None
                     else f"{equal} / {summ['num_utts']}"})
    return f"{heading}\n\n" + markdown_table(rows, cols)


def stage_times(exp_dir: Path) -> str:
    """A table of the stages recorded under ``exp_dir`` (``run_info.json``): when each started
    and how long it took, in start order."""
    rows = []
    for path in exp_dir.rglob("run_info.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.append({"stage": info.get("stage", "?"),
                     "output": str(path.parent.relative_to(exp_dir)),
                     "started": info.get("started", ""),
                     "minutes": float(info.get("seconds", 0.0)) / 60,
                     "CPU minutes": (float(info["cpu_seconds"]) / 60
                                     if "cpu_seconds" in info else None)})
    if not rows:
        return ""
    rows.sort(key=lambda r: (r["started"], r["output"]))
    return "### Stages (from run_info.json)\n\n" + markdown_table(
        rows, ["stage", "output", "started", "minutes", "CPU minutes"])


def _set_info(data_dir: Path) -> str:
    n = len(read_scp(data_dir / "utt2spk")) if (data_dir / "utt2spk").is_file() else 0
    text = f"{n} utterances"
    nums = data_dir / "utt2num_samples"
    if nums.is_file():
        hours = sum(int(v) for v in read_scp(nums).values()) / 16000 / 3600
        text += f", {hours:.2f} h"
    return text


def score_recipe(
    exp_dir: PathLike,
    data_root: PathLike,
    test_sets: Sequence[str],
    models: Sequence[Tuple[str, str]],
    metric: str = "wer",
    text_name: str = "text",
    ssl: Sequence[Tuple[str, str]] = (),
    extra_metrics: Sequence[str] = (),
    out_md: Optional[PathLike] = None,
    template: Optional[PathLike] = None,
    title: str = "Results",
) -> Path:
    """Score every decoding of ``models`` on ``test_sets``, write the tables and the figures.

    Args:
        exp_dir: the experiment directory holding the model folders.
        data_root: holds ``<test set>/<text_name>`` (the references).
        models: ``(folder under exp_dir, label)`` of the downstream models, in table order.
        metric: ``wer``, ``cer`` or ``bleu``: the main one (figures, streaming table).
        extra_metrics: more tables of the same decodings (``cer`` beside ``wer``: character
            errors still move when an undertrained model gets every word wrong).
        ssl: ``(folder, label)`` of the pre-training runs, for the SSL loss curves.
        out_md: the markdown file (default ``<exp_dir>/RESULTS.md``).
        template: a markdown file whose ``<!-- results -->`` line is replaced by the tables.

    Returns:
        The markdown file (``results.json`` and ``plots/`` are written beside it).

    Raises:
        RecipeError: nothing was decoded yet, or a reference file is missing.
    """
    for m in (metric, *extra_metrics):
        if m not in METRICS:
            raise RecipeError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    exp_dir, data_root = Path(exp_dir), Path(data_root)
    out_md = Path(out_md) if out_md is not None else exp_dir / "RESULTS.md"
    labels = dict(models)
    scores: Dict[str, Dict[str, Dict[str, object]]] = {}
    for test_set in test_sets:
        ref = data_root / test_set / text_name
        if not ref.is_file():
            raise RecipeError(f"{ref}: reference transcripts not found")
        scores[test_set] = {m: score_model(exp_dir / m, test_set, ref, metric) for m, _ in models}
    decoded = {m for d in scores.values() for m, s in d.items()
               if "offline" in s or s["chunked"] or s["streaming"]}
    if not decoded:
        raise RecipeError(f"no complete decoding of {[m for m, _ in models]} on {list(test_sets)}"
                          f" under {exp_dir}; run the decoding stages first")
    for m, _ in models:
        if m not in decoded:
            logger.warning("%s: no complete decoding, left out of the tables", exp_dir / m)
    models = [(m, lab) for m, lab in models if m in decoded]
    scores = {t: {m: s for m, s in d.items() if m in decoded} for t, d in scores.items()}
    plots_dir = out_md.parent / "plots"
    plots = {}
    if ssl:
        p = plot_loss_curves({lab: exp_dir / d for d, lab in ssl}, plots_dir / "loss_ssl.png",
                             "SSL pre-training: group masked prediction loss")
        if p:
            plots["SSL loss"] = p
    p = plot_loss_curves({lab: exp_dir / d for d, lab in models}, plots_dir / "loss_downstream.png",
                         "Fine-tuning: loss and accuracy", keys=("loss", "acc"))
    if p:
        plots["downstream loss and accuracy"] = p
    for test_set, per_model in scores.items():
        series, offline = {}, {}
        for model, s in per_model.items():
            kind = "streaming" if s["streaming"] else "chunked"
            series[labels[model]] = {c: r["score"] for c, r in s[kind].items()}
            if "offline" in s:
                offline[labels[model]] = s["offline"]["score"]
        if any(series.values()):
            plots[f"{METRICS[metric]} vs chunk size ({test_set})"] = plot_error_vs_chunk(
                series, offline, plots_dir / f"{metric}_vs_chunk_{test_set}.png",
                METRICS[metric], title=test_set)
    set_info = {t: _set_info(data_root / t) for t in test_sets}
    extra_scores = {
        m: {t: {model: score_model(exp_dir / model, t, data_root / t / text_name, m)
                for model, _ in models} for t in test_sets}
        for m in extra_metrics
    }
    tables = results_markdown(scores, labels, metric, set_info, extra_scores)
    times = stage_times(exp_dir)
    if times:
        tables += "\n" + times
    ver = versions()
    footer = ("\nFigures: " + ", ".join(f"[{k}]({os.path.relpath(v, out_md.parent)})"
                                       for k, v in plots.items()) + "\n\n"
              f"Scored {time.strftime('%Y-%m-%d %H:%M')} with chunkssl_espnet "
              f"{ver['chunkssl_espnet']} ({ver['chunkssl_espnet_git']}), ESPnet {ver['espnet']},"
              f" torch {ver['torch']}. Commands, options and versions of every stage: "
              f"`run_info.json` in each output folder; training configs: `config.yaml`.\n")
    if template is not None:
        text = Path(template).read_text(encoding="utf-8")
        if TEMPLATE_MARKER not in text:
            raise RecipeError(f"{template}: no '{TEMPLATE_MARKER}' line to fill")
        body = text.replace(TEMPLATE_MARKER, tables + footer)
    else:
        body = f"# {title}\n\n{tables}{footer}"
    atomic_write_text(out_md.with_name("results.json"), json.dumps(
        {"metric": metric, "scores": scores, "extra_scores": extra_scores, "labels": labels,
         "plots": plots, "versions": ver},
        indent=1, default=str) + "\n")
    atomic_write_text(out_md, body)
    return out_md

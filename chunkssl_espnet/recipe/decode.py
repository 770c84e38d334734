"""Decoding stages: offline beam search in parallel parts, and streaming at several chunk sizes.

A decoding *unit* is one model on one test set at one chunk size. Offline (``decode_offline``):
each unit's test list is split into parts, one ESPnet inference process
(``chunkssl_espnet.bin.asr_inference`` or ``st_inference``) decodes each part, and the
``1best_recog/text`` files are merged into ``<unit>/text``. Streaming (``decode_streaming``): a
``chunkssl_espnet.bin.{asr,st}_inference_streaming`` process per unit, writing ``text``,
``partials.txt``, ``latency.json`` and ``summary.json``; with more units than ``nj`` slots, one
process decodes several chunk sizes of a model and test set in turn (one start and one model
loading, where a start that imports ESPnet costs more than a small test set's decoding). The
processes of all units share one pool of ``nj`` slots. Every unit is built in a ``.tmp`` folder
and moved into place when complete; a failed unit leaves the others done.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import atomic_write_text, read_scp, split_scp
from chunkssl_espnet.recipe.jobs import (
    Command,
    JobTime,
    RecipeError,
    python_module,
    raise_first,
    run_jobs,
    thread_env,
)
from chunkssl_espnet.recipe.provenance import StageRecord, fresh_tmp_dir, replace_dir

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


def chunk_dir_name(chunk_size: int) -> str:
    """``chunk<C>``: the folder of the results at chunk size ``C`` (encoder frames)."""
    return f"chunk{chunk_size}"


def offline_dir(model_dir: PathLike, test_set: str, chunk_size: Optional[int] = None) -> Path:
    """Where offline results live: ``<model_dir>/decode_<set>_offline`` (full context) or
    ``<model_dir>/decode_<set>_chunk<C>`` (beam search over a chunk-masked encoder)."""
    kind = "offline" if chunk_size is None or chunk_size < 0 else chunk_dir_name(chunk_size)
    return Path(model_dir) / f"decode_{test_set}_{kind}"


def streaming_root(model_dir: PathLike, test_set: str) -> Path:
    """Where streaming results live: ``<model_dir>/decode_<set>_stream/chunk<C>/``."""
    return Path(model_dir) / f"decode_{test_set}_stream"


@dataclass
class Model:
    """A trained model: its ESPnet experiment folder, config and model file."""

    model_dir: Path
    train_config: Path
    model_file: Path

    @classmethod
    def from_dir(cls, model_dir: PathLike, model_file: str) -> Model:
        model_dir = Path(model_dir)
        return cls(model_dir, model_dir / "config.yaml", model_dir / model_file)


@dataclass
class Unit:
    """One decoding: a model, a test set, a chunk size (None: full context), its output folder."""

    model: Model
    data_dir: Path
    chunk_size: Optional[int]
    out_dir: Path
    record: StageRecord
    tmp: Path = Path()
    jobs: List[Tuple[Command, Path]] = field(default_factory=list)


def _require(*paths: PathLike) -> None:
    for p in paths:
        if not Path(p).exists():
            raise RecipeError(f"{p}: not found; run the earlier stages first")


def offline_command(
    task: str,
    train_config: PathLike,
    model_file: PathLike,
    wav_scp: PathLike,
    out_dir: PathLike,
    extra: Sequence[str] = (),
    chunk_size: Optional[int] = None,
) -> Command:
    """ESPnet's inference command for one part; ``chunk_size`` sets the decode-time chunk mask.
    ``extra`` comes last, so it may override the defaults (``--ngpu 1``, ``--batch_size``)."""
    if task not in ("asr", "st"):
        raise RecipeError(f"offline decoding of task {task!r}: choose asr or st")
    cmd = python_module(
        f"chunkssl_espnet.bin.{task}_inference",
        f"--{task}_train_config", train_config,
        f"--{task}_model_file", model_file,
        "--data_path_and_name_and_type", f"{wav_scp},speech,sound",
        "--output_dir", out_dir,
        "--ngpu", "0",
        "--batch_size", "1",
    )
    if chunk_size is not None and chunk_size > 0:
        cmd += ["--decoding_chunk_size", str(chunk_size)]
    return cmd + [str(e) for e in extra]


def streaming_command(
    task: str,
    train_config: PathLike,
    model_file: PathLike,
    data_dir: PathLike,
    out_dirs: Sequence[PathLike],
    chunk_sizes: Sequence[int],
    extra: Sequence[str] = (),
    ref: Optional[PathLike] = None,
) -> Command:
    """The streaming decoder's command (``chunkssl_espnet.bin.<task>_inference_streaming``) at
    each of ``chunk_sizes``, into the matching ``out_dirs``; ``ref`` (ST) lets it report BLEU and
    average lagging in ``summary.json``."""
    if task not in ("asr", "st"):
        raise RecipeError(f"streaming decoding of task {task!r}: choose asr or st")
    if len(out_dirs) != len(chunk_sizes) or not chunk_sizes:
        raise RecipeError(f"one output folder per chunk size: {list(out_dirs)} for "
                          f"{list(chunk_sizes)}")
    cmd = python_module(
        f"chunkssl_espnet.bin.{task}_inference_streaming",
        f"--{task}_train_config", train_config,
        f"--{task}_model_file", model_file,
        "--data_dir", data_dir,
        "--output_dir", *out_dirs,
        "--chunk_size", *chunk_sizes,
    )
    if ref is not None:
        cmd += ["--ref", str(ref)]
    return cmd + [str(e) for e in extra]


def merge_text(parts: Sequence[PathLike], out: PathLike) -> int:
    """Concatenate Kaldi text files sorted by id into ``out``; the number of lines."""
    merged: Dict[str, str] = {}
    for p in parts:
        merged.update(read_scp(p))
    atomic_write_text(out, "".join(f"{k} {v}".rstrip() + "\n" for k, v in sorted(merged.items())))
    return len(merged)


def audio_seconds(data_dir: PathLike, sample_rate: int = 16000) -> Optional[float]:
    """Total audio of a data directory from ``utt2num_samples`` (None when absent)."""
    path = Path(data_dir) / "utt2num_samples"
    if not path.is_file():
        return None
    return sum(int(v) for v in read_scp(path).values()) / sample_rate


def _run_units(
    units: Sequence[Unit], nj: int, finish: Callable[[Unit, List[JobTime]], None],
    batches: Optional[Sequence[Sequence[Unit]]] = None,
) -> None:
    """Run the jobs of all units in one pool of ``nj``; ``finish`` every unit whose jobs all
    succeeded, then raise the first failure, if any (the finished units stay done).

    ``batches``: units whose jobs (held by the first unit of each batch) serve them all; by
    default each unit is its own batch. A batch's CPU time is shared out among its units."""
    batches = [[u] for u in units] if batches is None else batches
    jobs = [job for b in batches for job in b[0].jobs]
    results = run_jobs(jobs, nj, env=thread_env(1) if nj > 1 else None)
    failures: List[Union[JobTime, RecipeError]] = []
    k = 0
    for batch in batches:
        mine = results[k:k + len(batch[0].jobs)]
        k += len(batch[0].jobs)
        if any(isinstance(r, RecipeError) for r in mine):
            failures += [r for r in mine if isinstance(r, RecipeError)]
            continue
        times = [r for r in mine if isinstance(r, JobTime)]
        for u in batch:
            for t in times:
                u.record.add_cpu(t.cpu / len(batch))
            finish(u, times)
    raise_first(failures)


def streaming_batches(units: Sequence[Unit], nj: int) -> List[List[Unit]]:
    """Units that one streaming process decodes in turn: each unit alone while there are no
    more units than ``nj`` slots; else the chunk sizes of each (model, test set) split into
    as few processes as keep the ``nj`` slots busy."""
    if len(units) <= nj:
        return [[u] for u in units]
    pairs: Dict[Tuple[Path, Path], List[Unit]] = {}
    for u in units:
        pairs.setdefault((u.model.model_dir, u.data_dir), []).append(u)
    per_pair = max(1, -(-nj // len(pairs)))  # ceil(nj / pairs)
    batches = []
    for group in pairs.values():
        n = min(per_pair, len(group))
        batches += [group[i::n] for i in range(n)]
    return batches


def decode_offline(
    task: str,
    models: Sequence[Model],
    data_dirs: Sequence[PathLike],
    chunk_sizes: Sequence[Optional[int]] = (None,),
    nj: int = 1,
    extra: Sequence[str] = (),
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
) -> List[Path]:
    """Decode every test set with every model at every chunk size (None or -1: full context).

    Returns:
        The hypothesis files ``<offline_dir>/text``.
    """
    units = []
    for model in models:
        for data_dir in map(Path, data_dirs):
            for c in chunk_sizes:
                c = None if c is None or c < 0 else c
                out_dir = offline_dir(model.model_dir, data_dir.name, c)
                options = {"task": task, "train_config": str(model.train_config),
                           "model_file": str(model.model_file), "data_dir": str(data_dir),
                           "extra": list(extra), "chunk_size": c, "nj": nj, "force": force}
                units.append(Unit(model, data_dir, c, out_dir,
                                  StageRecord(out_dir, "decode_offline", options, argv)))
    todo = [u for u in units if not u.record.is_done()]
    for u in todo:
        _require(u.model.train_config, u.model.model_file, u.data_dir / "wav.scp")
    parts_per_unit = max(1, nj // max(1, len(todo)))
    for u in todo:
        wav_scp = u.data_dir / "wav.scp"
        n_parts = max(1, min(parts_per_unit, len(read_scp(wav_scp))))
        u.tmp = fresh_tmp_dir(u.out_dir)
        u.record.start()
        for j, part in enumerate(split_scp(wav_scp, n_parts, u.tmp / "split"), 1):
            cmd = offline_command(task, u.model.train_config, u.model.model_file, part,
                                  u.tmp / f"part{j}", extra, u.chunk_size)
            u.record.add_command(cmd)
            u.jobs.append((cmd, u.tmp / "logs" / f"decode.{j}.log"))
    if todo:
        logger.info("offline decoding: %d unit(s), %d job(s), %d at a time", len(todo),
                    sum(len(u.jobs) for u in todo), nj)

    def finish(u: Unit, times: List[JobTime]) -> None:
        texts = [u.tmp / f"part{j}" / "1best_recog" / "text" for j in range(1, len(u.jobs) + 1)]
        _require(*texts)
        n = merge_text(texts, u.tmp / "text")
        summary = {"num_utts": n, "audio_s": audio_seconds(u.data_dir),
                   "decode_wall_s": round(max(t.wall for t in times), 1), "jobs": len(u.jobs),
                   "chunk_size": u.chunk_size}
        atomic_write_text(u.tmp / "summary.json", json.dumps(summary, indent=1) + "\n")
        replace_dir(u.tmp, u.out_dir)
        u.record.finish({"text": str(u.out_dir / "text"), **summary})
        logger.info("%s: %d hypotheses", u.out_dir, n)

    _run_units(todo, nj, finish)
    return [u.out_dir / "text" for u in units]


def decode_streaming(
    models: Sequence[Model],
    data_dirs: Sequence[PathLike],
    chunk_sizes: Sequence[int],
    nj: int = 1,
    extra: Sequence[str] = (),
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
    task: str = "asr",
    ref_name: Optional[str] = None,
) -> List[Path]:
    """Stream every test set through every model at every chunk size, ``nj`` processes at a time.

    ``ref_name`` (ST): the reference file in each data directory, for BLEU and average lagging
    in the decoder's ``summary.json``.

    Returns:
        The unit folders ``<streaming_root>/chunk<C>``, each with ``text``, ``latency.json`` and
        ``summary.json``.
    """
    if not chunk_sizes:
        raise RecipeError("no chunk sizes to decode")
    bad = [c for c in chunk_sizes if c <= 0]
    if bad:
        raise RecipeError(f"chunk sizes must be positive encoder frames, got {bad}")
    units = []
    for model in models:
        for data_dir in map(Path, data_dirs):
            for c in chunk_sizes:
                out_dir = streaming_root(model.model_dir, data_dir.name) / chunk_dir_name(c)
                options = {"task": task, "train_config": str(model.train_config),
                           "model_file": str(model.model_file), "data_dir": str(data_dir),
                           "chunk_size": c, "extra": list(extra), "ref_name": ref_name,
                           "force": force}
                units.append(Unit(model, data_dir, c, out_dir,
                                  StageRecord(out_dir, "decode_streaming", options, argv)))
    todo = [u for u in units if not u.record.is_done()]
    for u in todo:
        _require(u.model.train_config, u.model.model_file, u.data_dir / "wav.scp")
    batches = streaming_batches(todo, nj)
    for batch in batches:
        first = batch[0]
        for u in batch:
            u.tmp = fresh_tmp_dir(u.out_dir)
            u.record.start()
        ref = first.data_dir / ref_name if ref_name else None
        cmd = streaming_command(task, first.model.train_config, first.model.model_file,
                                first.data_dir, [u.tmp for u in batch],
                                [u.chunk_size for u in batch], extra, ref)  # type: ignore[misc]
        for u in batch:
            u.record.add_command(cmd)
        log_name = "_".join(u.out_dir.name for u in batch)
        first.jobs.append((cmd, first.out_dir.parent / "logs" / f"{log_name}.log"))
    if todo:
        logger.info("streaming decoding: %d unit(s) in %d process(es), %d at a time",
                    len(todo), len(batches), nj)

    def finish(u: Unit, times: List[JobTime]) -> None:
        _require(u.tmp / "text")
        replace_dir(u.tmp, u.out_dir)
        summary = {}
        if (u.out_dir / "summary.json").is_file():
            summary = json.loads((u.out_dir / "summary.json").read_text())
        u.record.finish({"text": str(u.out_dir / "text"), "wall_s": round(times[0].wall, 1),
                         "summary": summary})

    _run_units(todo, nj, finish, batches)
    return [u.out_dir for u in units]

"""Feature statistics (ESPnet's ``--collect_stats``): global MVN and the speech shape files.

One statistics directory serves every task of a recipe: SSL, ASR and ST share the frontend
(``kaldi_fbank``), so they share ``feats_stats.npz`` and ``speech_shape``. The SSL task collects
them because it needs no text. With ``nj > 1`` the training and validation lists are split, one
ESPnet process runs per part, and the parts are summed with ESPnet's ``aggregate_stats_dirs``
(as ``asr.sh`` stage 10).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from chunkssl_espnet.bin.input_check import check_data_inputs
from chunkssl_espnet.data.datadir import read_scp, split_scp
from chunkssl_espnet.recipe.jobs import (
    RecipeError,
    python_module,
    run_command,
    run_parallel,
    thread_env,
)
from chunkssl_espnet.recipe.provenance import StageRecord, fresh_tmp_dir, replace_dir

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

STATS_MODULE = "chunkssl_espnet.bin.ssl_train"
#: Training utterances per statistics job at least: a job's ESPnet start costs about 10 s of CPU,
#: more than the features of a part this small (some 15 ms an utterance).
MIN_UTTS_PER_JOB = 200


def stats_command(
    config: PathLike,
    train_scp: PathLike,
    valid_scp: PathLike,
    out_dir: PathLike,
    extra: Sequence[str] = (),
) -> List[str]:
    """The ESPnet ``--collect_stats`` command for one part of the data (no normalisation yet)."""
    return python_module(
        STATS_MODULE,
        "--collect_stats", "true",
        "--config", config,
        "--normalize", "none",
        "--train_data_path_and_name_and_type", f"{train_scp},speech,sound",
        "--valid_data_path_and_name_and_type", f"{valid_scp},speech,sound",
        "--train_shape_file", train_scp,
        "--valid_shape_file", valid_scp,
        "--output_dir", out_dir,
        "--ngpu", "0",
        "--num_workers", "0",
        *extra,
    )


def stats_jobs(nj: int, n_train: int, n_valid: int,
               min_utts_per_job: int = MIN_UTTS_PER_JOB) -> int:
    """The number of statistics jobs: at most ``nj``, one per ``min_utts_per_job`` training
    utterances, and no more than the utterances of either list (both are split in as many
    parts)."""
    return max(1, min(nj, -(-n_train // max(1, min_utts_per_job)), n_valid))


def _check_outputs(out_dir: Path, train_scp: Path, valid_scp: Path) -> None:
    """The statistics and shape files exist and cover every utterance."""
    if not (out_dir / "train" / "feats_stats.npz").is_file():
        raise RecipeError(f"{out_dir / 'train' / 'feats_stats.npz'} was not written")
    for split, scp in (("train", train_scp), ("valid", valid_scp)):
        shape = out_dir / split / "speech_shape"
        if not shape.is_file():
            raise RecipeError(f"{shape} was not written")
        missing = set(read_scp(scp)) - set(read_scp(shape))
        if missing:
            raise RecipeError(f"{shape}: {len(missing)} utterances of {scp} have no shape, e.g. "
                              f"'{sorted(missing)[0]}'")


def collect_stats(
    config: PathLike,
    train_dir: PathLike,
    valid_dir: PathLike,
    out_dir: PathLike,
    nj: int = 1,
    extra: Sequence[str] = (),
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
    min_utts_per_job: int = MIN_UTTS_PER_JOB,
) -> Dict[str, Path]:
    """Collect ``out_dir/train/feats_stats.npz`` and ``out_dir/{train,valid}/speech_shape``.

    The work happens in ``<out_dir>.tmp`` which replaces ``out_dir`` when complete, so
    ``out_dir`` is either absent, old or complete. ``stats_jobs`` gives the number of jobs.

    Returns:
        ``{"stats_file": ..., "train_shape": ..., "valid_shape": ...}``.
    """
    out_dir = Path(out_dir)
    train_scp, valid_scp = Path(train_dir) / "wav.scp", Path(valid_dir) / "wav.scp"
    outputs = {
        "stats_file": out_dir / "train" / "feats_stats.npz",
        "train_shape": out_dir / "train" / "speech_shape",
        "valid_shape": out_dir / "valid" / "speech_shape",
    }
    options = {"config": str(config), "train_dir": str(train_dir), "valid_dir": str(valid_dir),
               "extra": list(extra), "nj": nj, "force": force}
    rec = StageRecord(out_dir, "stats", options, argv)
    if rec.is_done():
        return outputs
    for scp in (train_scp, valid_scp):
        if not scp.is_file():
            raise RecipeError(f"{scp}: not found; run the data preparation stages first")
    # Unreadable audio or another sample rate than the config's: say so now, naming the file
    # and the utterance, not in a statistics job's log (or not at all).
    check_data_inputs(["--config", str(config), *extra,
                       "--train_data_path_and_name_and_type", f"{train_scp},speech,sound",
                       "--valid_data_path_and_name_and_type", f"{valid_scp},speech,sound"])
    nj = stats_jobs(nj, len(read_scp(train_scp)), len(read_scp(valid_scp)), min_utts_per_job)
    tmp = fresh_tmp_dir(out_dir)
    rec.start()
    if nj == 1:
        jobs = [(stats_command(config, train_scp, valid_scp, tmp, extra), tmp / "stats.log")]
    else:
        parts = tmp / "split"
        trains = split_scp(train_scp, nj, parts / "train")
        valids = split_scp(valid_scp, nj, parts / "valid")
        jobs = [
            (stats_command(config, t, v, tmp / f"stats.{j}", extra), tmp / f"stats.{j}.log")
            for j, (t, v) in enumerate(zip(trains, valids), 1)
        ]
    for cmd, _ in jobs:
        rec.add_command(cmd)
    logger.info("stats: %d job(s), logs in %s", len(jobs), tmp)
    for t in run_parallel(jobs, nj, env=thread_env(1) if nj > 1 else None):
        rec.add_cpu(t.cpu)
    if nj > 1:
        from espnet2.bin.aggregate_stats_dirs import aggregate_stats_dirs

        aggregate_stats_dirs([tmp / f"stats.{j}" for j in range(1, nj + 1)], tmp,
                             log_level="WARNING", skip_sum_stats=False)
    _check_outputs(tmp, train_scp, valid_scp)
    replace_dir(tmp, out_dir)
    rec.finish({k: str(v) for k, v in outputs.items()})
    return outputs


def collect_text_stats(
    config: PathLike,
    train_text: PathLike,
    valid_text: PathLike,
    token_list: PathLike,
    bpemodel: PathLike,
    out_dir: PathLike,
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
) -> Dict[str, Path]:
    """The text shape files of an LM training: ``out_dir/{train,valid}/text_shape.bpe`` (tokens
    per sentence, then the vocabulary size, as ESPnet's ``lm.sh`` writes them), from ESPnet's
    LM ``--collect_stats`` on the transcripts ``train_text`` and ``valid_text``.

    Done in ``<out_dir>.tmp``, which replaces ``out_dir`` when complete.
    """
    out_dir = Path(out_dir)
    outputs = {p: out_dir / p / "text_shape.bpe" for p in ("train", "valid")}
    options = {"config": str(config), "train_text": str(train_text),
               "valid_text": str(valid_text), "token_list": str(token_list),
               "bpemodel": str(bpemodel), "force": force}
    rec = StageRecord(out_dir, "text_stats", options, argv)
    if rec.is_done():
        return outputs
    texts = {"train": Path(train_text), "valid": Path(valid_text)}
    for path in (*texts.values(), Path(token_list), Path(bpemodel)):
        if not path.is_file():
            raise RecipeError(f"{path}: not found; run the data preparation and BPE stages first")
    tmp = fresh_tmp_dir(out_dir)
    rec.start()
    ids = {phase: list(read_scp(text)) for phase, text in texts.items()}
    keys = {}
    for phase in texts:  # collect_stats reads the utterance ids from a key file
        keys[phase] = tmp / f"{phase}.keys"
        keys[phase].write_text("".join(f"{u}\n" for u in ids[phase]), encoding="utf-8")
    cmd = python_module(
        "chunkssl_espnet.bin.lm_train", "--collect_stats", "true", "--config", config,
        "--use_preprocessor", "true", "--token_type", "bpe", "--bpemodel", bpemodel,
        "--token_list", token_list,
        "--train_data_path_and_name_and_type", f"{texts['train']},text,text",
        "--valid_data_path_and_name_and_type", f"{texts['valid']},text,text",
        "--train_shape_file", keys["train"], "--valid_shape_file", keys["valid"],
        "--output_dir", tmp, "--ngpu", "0", "--num_workers", "0",
    )
    rec.add_command(cmd)
    rec.add_cpu(run_command(cmd, tmp / "stats.log", env=thread_env(1)).cpu)
    vocab = sum(1 for t in Path(token_list).read_text(encoding="utf-8").splitlines() if t.strip())
    for phase, text in texts.items():
        shape = tmp / phase / "text_shape"
        if not shape.is_file():
            raise RecipeError(f"{shape} was not written; see {tmp / 'stats.log'}")
        lines = shape.read_text(encoding="utf-8").splitlines()
        missing = set(ids[phase]) - {line.split()[0] for line in lines if line.strip()}
        if missing:
            raise RecipeError(f"{shape}: {len(missing)} sentences of {text} have no shape, e.g. "
                              f"'{sorted(missing)[0]}'")
        (tmp / phase / "text_shape.bpe").write_text(
            "".join(f"{line},{vocab}\n" for line in lines if line.strip()), encoding="utf-8")
    replace_dir(tmp, out_dir)
    rec.finish({k: str(v) for k, v in outputs.items()})
    return outputs

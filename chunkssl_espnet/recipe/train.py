"""ESPnet training of the recipes' three tasks (SSL, ASR, ST) with Chunk SSL's classes.

``espnet_train_args`` turns the recipe's data layout (Kaldi data directories, one statistics
directory, token lists) into ESPnet's command line; ``train`` runs it as
``python -m chunkssl_espnet.bin.<task>_train ... --resume true`` with its log in
``<output_dir>/train.log``, so an interrupted training resumes from ``checkpoint.pth``. Several
GPUs: ``ngpu > 1`` adds ``--multiprocessing_distributed true`` (ESPnet spawns one process per
GPU); several nodes (``num_nodes > 1``) run the same command on every node under ``srun`` or
``mpirun`` (``--dist_launcher slurm|mpi``), as ESPnet's ``launch.py`` does. A CPU training in
several processes (``cpu_procs > 1``) runs under ``torch.distributed.run --standalone``, one
thread a process, DDP over gloo: ESPnet's mode with an external launcher. Its steps equal one
process's over the same global batch (tests/test_distributed.py), and on a few cores two
single-threaded ranks step faster than one process with two threads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from chunkssl_espnet.bin.input_check import check_data_inputs
from chunkssl_espnet.recipe.jobs import (
    RecipeError,
    python_module,
    raise_first,
    run_jobs,
    thread_env,
)
from chunkssl_espnet.recipe.provenance import StageRecord

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

TASKS = ("ssl", "asr", "st", "lm")
#: The averaged checkpoint of each task when its config names no ``best_model_criterion``.
FINAL_MODEL = {"ssl": "valid.loss.ave.pth", "asr": "valid.acc.ave.pth", "st": "valid.acc.ave.pth",
               "lm": "valid.loss.ave.pth"}
#: ESPnet's ``--fold_length`` of the LM's text shape file (tokens; as ``lm.sh``).
LM_FOLD_LENGTH = 150


def final_model_name(task: str, config: Optional[PathLike]) -> str:
    """The averaged checkpoint ESPnet ends a training with: ``<phase>.<key>.ave.pth`` of the
    first ``best_model_criterion`` of ``config`` (a training YAML or ESPnet's resolved
    ``config.yaml``), or the task's default when the file or the entry is absent."""
    import yaml

    if config is not None and Path(config).is_file():
        with open(config, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
        criteria = conf.get("best_model_criterion") or []
        if criteria and len(criteria[0]) >= 2:
            return f"{criteria[0][0]}.{criteria[0][1]}.ave.pth"
    return FINAL_MODEL[task]


def pretraining_stats(model_file: PathLike) -> Optional[Path]:
    """The MVN statistics file a trained model normalised its features with: its experiment's
    ``config.yaml`` (next to ``model_file``) ``normalize_conf.stats_file``; None when the model
    has no such config or no global MVN.

    Raises:
        RecipeError: the config names a statistics file that does not exist.
    """
    import yaml

    config = Path(model_file).parent / "config.yaml"
    if not config.is_file():
        return None
    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    stats = (conf.get("normalize_conf") or {}).get("stats_file")
    if conf.get("normalize") != "global_mvn" or not stats:
        return None
    stats = Path(stats)
    candidates = [stats]  # absolute, or relative to here (ESPnet's unpack writes such paths)
    out = Path(conf.get("output_dir") or "")
    model_dir = Path(model_file).resolve().parent
    if not stats.is_absolute() and not out.is_absolute() and out.parts and \
            model_dir.parts[-len(out.parts):] == out.parts:
        # relative to where that training ran (its output_dir is relative to the same place)
        candidates.insert(0, Path(*model_dir.parts[: -len(out.parts)]) / stats)
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise RecipeError(f"{config}: normalize_conf.stats_file {stats} does not exist (looked "
                          f"for {', '.join(map(str, candidates))}); the fine-tuned encoder needs "
                          "the statistics it was pre-trained with")
    stats = found[0]
    try:  # relative where it can be, as the recipes write paths (ESPnet's pack matches them)
        return stats.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return stats


def espnet_train_args(
    task: str,
    config: PathLike,
    train_dir: PathLike,
    valid_dir: PathLike,
    stats_dir: PathLike,
    output_dir: PathLike,
    tokenizer_dir: Optional[PathLike] = None,
    token_list: Optional[PathLike] = None,
    bpemodel: Optional[PathLike] = None,
    text_name: str = "text",
    src_token_list: Optional[PathLike] = None,
    src_bpemodel: Optional[PathLike] = None,
    src_text_name: Optional[str] = None,
    init_param: Sequence[str] = (),
    max_epoch: Optional[int] = None,
    ngpu: int = 0,
    num_nodes: int = 1,
    dist_launcher: Optional[str] = None,
) -> List[str]:
    """ESPnet's training arguments for ``task`` on the recipe's directories.

    SSL reads ``wav.scp`` only and needs ``tokenizer_dir``; ASR adds ``<text_name>`` tokenised by
    ``bpemodel``; ST adds the target ``<text_name>`` and, with ``src_text_name``, the source
    transcript for the auxiliary CTC. LM reads ``<text_name>`` only, with the text shape files
    of ``recipe.stats.collect_text_stats`` in ``stats_dir``.

    Raises:
        RecipeError: an unknown task, or a file the task needs is not given.
    """
    if task not in TASKS:
        raise RecipeError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    train_dir, valid_dir, stats_dir = Path(train_dir), Path(valid_dir), Path(stats_dir)
    stats_file = stats_dir / "train" / "feats_stats.npz"
    for spec in init_param:
        stats_file = pretraining_stats(spec.split(":")[0]) or stats_file
    speech = task != "lm"  # the LM reads text only: no features, text shapes
    shape = "speech_shape" if speech else "text_shape.bpe"
    args = [
        "--config", str(config),
        "--output_dir", str(output_dir),
        *(["--normalize_conf", f"stats_file={stats_file}"] if speech else []),
        "--train_shape_file", str(stats_dir / "train" / shape),
        "--valid_shape_file", str(stats_dir / "valid" / shape),
        *([] if speech else ["--fold_length", str(LM_FOLD_LENGTH)]),
        "--resume", "true",
        "--ngpu", str(ngpu),
    ]
    streams = [("wav.scp", "speech", "sound")] if speech else []
    if task == "ssl":
        if tokenizer_dir is None:
            raise RecipeError("SSL training needs --tokenizer_dir (stage: tokenizer)")
        args += ["--model_conf", f"tokenizer_dir={tokenizer_dir}"]
    else:
        if token_list is None or bpemodel is None:
            raise RecipeError(f"{task.upper()} training needs --token_list and --bpemodel")
        args += ["--token_list", str(token_list), "--token_type", "bpe",
                 "--bpemodel", str(bpemodel)]
        streams.append((text_name, "text", "text"))
    if task == "st" and src_text_name is not None:
        if src_token_list is None or src_bpemodel is None:
            raise RecipeError("ST with a source transcript needs --src_token_list and "
                              "--src_bpemodel")
        args += ["--src_token_list", str(src_token_list), "--src_token_type", "bpe",
                 "--src_bpemodel", str(src_bpemodel)]
        streams.append((src_text_name, "src_text", "text"))
    for phase, data_dir in (("train", train_dir), ("valid", valid_dir)):
        for name, key, kind in streams:
            args += [f"--{phase}_data_path_and_name_and_type", f"{data_dir / name},{key},{kind}"]
    for spec in init_param:
        args += ["--init_param", spec]
    if max_epoch is not None:
        args += ["--max_epoch", str(max_epoch)]
    if ngpu > 1 or num_nodes > 1:
        args += ["--multiprocessing_distributed", "true"]
    if num_nodes > 1:
        # With --multiprocessing_distributed, ESPnet reads the number of nodes from
        # --dist_world_size and each node's rank from the launcher (srun or mpirun).
        args += ["--dist_world_size", str(num_nodes), "--dist_launcher", dist_launcher or "slurm"]
    return args


def check_inputs(args: Sequence[str]) -> None:
    """Every data, shape, statistics and token file named in ``args`` exists (clear message)."""
    flags = {"--train_shape_file", "--valid_shape_file", "--token_list", "--bpemodel",
             "--src_token_list", "--src_bpemodel", "--config"}
    for flag, value in zip(args, args[1:]):
        path = None
        if flag in flags:
            path = value
        elif flag.endswith("_data_path_and_name_and_type"):
            path = value.split(",")[0]
        elif flag == "--normalize_conf" and value.startswith("stats_file="):
            path = value.split("=", 1)[1]
        elif flag == "--model_conf" and value.startswith("tokenizer_dir="):
            path = value.split("=", 1)[1]
        elif flag == "--init_param":
            path = value.split(":")[0]
        if path is not None and not Path(path).exists():
            raise RecipeError(f"{flag} {value}: {path} does not exist; run the earlier stages")


@dataclass
class TrainJob:
    """One ESPnet training: its task, output folder and complete ESPnet arguments."""

    task: str
    output_dir: Path
    espnet_args: List[str]

    @property
    def final_model(self) -> Path:
        config = None
        if "--config" in self.espnet_args:
            config = self.espnet_args[self.espnet_args.index("--config") + 1]
        return self.output_dir / final_model_name(self.task, config)


def without_init(job: TrainJob, output_dir: PathLike) -> TrainJob:
    """The same training from scratch: no ``--init_param``, another output folder."""
    args, skip = [], False
    for i, a in enumerate(job.espnet_args):
        if skip:
            skip = False
            continue
        if a == "--init_param":
            skip = True
            continue
        if i > 0 and job.espnet_args[i - 1] == "--output_dir":
            a = str(output_dir)
        args.append(a)
    return TrainJob(job.task, Path(output_dir), args)


def training_command(task: str, espnet_args: Sequence[str], cpu_procs: int = 1) -> List[str]:
    """``python -m chunkssl_espnet.bin.<task>_train ARGS``; with ``cpu_procs > 1`` the same under
    ``torch.distributed.run --standalone --nproc_per_node <cpu_procs>`` with ``--dist_backend
    gloo`` (CPU ranks on this machine).

    Raises:
        RecipeError: ``cpu_procs`` below 1, or above 1 for a GPU training (``--ngpu`` > 0).
    """
    if cpu_procs < 1:
        raise RecipeError(f"--cpu_procs {cpu_procs}: give 1 or more processes")
    module = f"chunkssl_espnet.bin.{task}_train"
    if cpu_procs == 1:
        return python_module(module, *espnet_args)
    args = list(espnet_args)
    if "--ngpu" in args and args[args.index("--ngpu") + 1] != "0":
        raise RecipeError(f"--cpu_procs {cpu_procs} is for CPU training; with GPUs, --ngpu N "
                          "runs one process per GPU")
    return python_module("torch.distributed.run", "--standalone", "--nproc_per_node", cpu_procs,
                         "-m", module, *args, "--dist_backend", "gloo")


def train(
    jobs: Sequence[TrainJob],
    num_threads: Optional[int] = None,
    concurrent: bool = False,
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
    cpu_procs: int = 1,
) -> List[Path]:
    """Run ESPnet trainings (resuming) into their output folders; return the averaged models.

    ESPnet writes the resolved configuration (``config.yaml``), the checkpoints and the averaged
    model there; the log goes to ``train.log`` and the command and versions to ``run_info.json``.
    A training already done with the same arguments is skipped. ``concurrent`` runs the trainings
    side by side (on a CPU, two single-threaded trainings finish sooner than two 2-thread ones in
    a row); otherwise one after the other. ``cpu_procs > 1`` runs each training in that many
    CPU processes of one thread each (``training_command``).
    """
    todo = []
    for job in jobs:
        rec = StageRecord(job.output_dir, f"{job.task}_train",
                          {"task": job.task, "espnet_args": job.espnet_args, "force": force}, argv)
        if not (rec.is_done() and job.final_model.exists()):
            check_inputs(job.espnet_args)
            check_data_inputs(job.espnet_args)  # audio, transcripts, tokenizer: fail now
            todo.append((job, rec))
    runs = []
    for job, rec in todo:
        rec.start()
        cmd = training_command(job.task, job.espnet_args, cpu_procs)
        rec.add_command(cmd)
        runs.append((cmd, job.output_dir / "train.log"))
        logger.info("%s training -> %s (log %s)", job.task.upper(), job.output_dir, runs[-1][1])
    threads = 1 if cpu_procs > 1 else num_threads
    results = run_jobs(runs, len(runs) if concurrent else 1, env=thread_env(threads))
    failures = []
    for (job, rec), result, (_, log) in zip(todo, results, runs):
        if isinstance(result, RecipeError):
            failures.append(result)
        elif not job.final_model.exists():
            failures.append(RecipeError(f"{job.task.upper()} training ended without "
                                        f"{job.final_model}; see {log}"))
        else:
            rec.add_cpu(result.cpu)
            rec.finish({"model": str(job.final_model), "config": str(job.output_dir /
                        "config.yaml"), "log": str(log)})
    raise_first(failures)
    return [job.final_model for job in jobs]

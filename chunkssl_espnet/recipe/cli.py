"""Thin command line of the recipe stages: ``python -m chunkssl_espnet.recipe <command>``.

Each sub-command maps its options onto one function of this package; arguments after a bare
``--`` go unchanged to the ESPnet (or other) program the stage runs. Errors a user can cause print
one ``error: ...`` message (what failed, which file, where the log is) and exit 1.

Commands: check-data, dump, combine, holdout, stats, text-stats, step, train, decode,
stream-decode, deploy, score, study-report.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from chunkssl_espnet.data.datadir import DataDirError
from chunkssl_espnet.frames import ENCODER_FRAME_MS
from chunkssl_espnet.recipe.jobs import RecipeError

logger = logging.getLogger("chunkssl_espnet.recipe")


def _split_passthrough(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Our options, and everything after the first bare ``--``."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _check_data(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.datadirs import check_data_dirs

    counts = check_data_dirs(a.data_dirs, need_text=not a.no_text, fs=a.fs)
    return "\n".join(f"{d}: OK, {n} utterances" for d, n in counts.items())


def _dump(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.datadirs import dump_segments

    return "\n".join(
        str(dump_segments(src, Path(a.out_root) / Path(src).name, nj=a.nj,
                          need_text=not a.no_text, force=a.force, argv=a.argv))
        for src in a.srcs
    )


def _combine(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.datadirs import combine_data_dirs

    out = []
    for spec in a.specs:
        dst, sep, srcs = spec.partition("=")
        if not sep or not dst or not srcs:
            raise RecipeError(f"combine: expected DST=SRC1,SRC2,..., got {spec!r}")
        root = Path(a.data_root)
        combine_data_dirs([root / s for s in srcs.split(",")], root / dst,
                          need_text=not a.no_text)
        out.append(f"{root / dst}: from {srcs}")
    return "\n".join(out)


def _holdout(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.datadirs import holdout

    train, valid = holdout(a.src, a.train_dst, a.valid_dst, a.n, need_text=not a.no_text)
    return f"{valid}: {a.n} utterances held out; {train}: the rest"


def _stats(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.stats import collect_stats

    out = collect_stats(a.config, a.train_dir, a.valid_dir, a.out_dir, nj=a.nj, extra=a.extra,
                        force=a.force, argv=a.argv)
    return out["stats_file"]


def _text_stats(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.stats import collect_text_stats

    out = collect_text_stats(a.config, a.train_text, a.valid_text, a.token_list, a.bpemodel,
                             a.out_dir, force=a.force, argv=a.argv)
    return "\n".join(str(v) for v in out.values())


def _step(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.jobs import run_command
    from chunkssl_espnet.recipe.provenance import StageRecord

    if not a.extra:
        raise RecipeError("step: give the command after '--'")
    rec = StageRecord(a.out_dir, a.name, {"command": a.extra, "force": a.force}, a.argv)
    if rec.is_done():
        return f"{a.name}: {a.out_dir} is up to date"
    rec.start()
    rec.add_command(a.extra)
    log = Path(a.log) if a.log else Path(a.out_dir) / f"{a.name}.log"
    rec.add_cpu(run_command(a.extra, log).cpu)
    rec.finish({"log": str(log)})
    return f"{a.name}: done -> {a.out_dir} (log {log})"


def _train(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.train import TrainJob, espnet_train_args, train, without_init

    args = espnet_train_args(
        a.task, a.config, a.train_dir, a.valid_dir, a.stats_dir, a.output_dir,
        tokenizer_dir=a.tokenizer_dir, token_list=a.token_list, bpemodel=a.bpemodel,
        text_name=a.text_name, src_token_list=a.src_token_list, src_bpemodel=a.src_bpemodel,
        src_text_name=a.src_text_name, init_param=a.init_param, max_epoch=a.max_epoch,
        ngpu=a.ngpu, num_nodes=a.num_nodes, dist_launcher=a.dist_launcher,
    ) + a.extra
    jobs = [TrainJob(a.task, Path(a.output_dir), args)]
    if a.baseline_output_dir:
        if not a.init_param:
            raise RecipeError("--baseline_output_dir: the main training has no --init_param, "
                              "so the baseline would be the same training")
        jobs.append(without_init(jobs[0], a.baseline_output_dir))
    models = train(jobs, num_threads=a.num_threads, concurrent=a.concurrent, force=a.force,
                   argv=a.argv, cpu_procs=a.cpu_procs)
    return "\n".join(str(m) for m in models)


def _models(task: str, model_dirs: Sequence[str], model_file: Optional[str]) -> list:
    from chunkssl_espnet.recipe.decode import Model
    from chunkssl_espnet.recipe.train import final_model_name

    return [Model.from_dir(d, model_file or final_model_name(task, Path(d) / "config.yaml"))
            for d in model_dirs]


def _decode(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.decode import decode_offline

    texts = decode_offline(a.task, _models(a.task, a.model_dirs, a.model_file), a.data_dirs,
                           chunk_sizes=a.chunk_sizes, nj=a.nj, extra=a.extra, force=a.force,
                           argv=a.argv)
    return "\n".join(str(p) for p in texts)


def _stream_decode(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.decode import decode_streaming

    dirs = decode_streaming(_models(a.task, a.model_dirs, a.model_file), a.data_dirs,
                            a.chunk_sizes, nj=a.nj, extra=a.extra, force=a.force, argv=a.argv,
                            task=a.task, ref_name=a.ref_name)
    return "\n".join(str(d) for d in dirs)


def _deploy(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.deploy import deploy_model

    dirs = deploy_model(a.model_dir, a.data_dirs, a.chunk_size, a.num_left_chunks,
                        a.model_file, force=a.force, argv=a.argv)
    return "\n".join(str(d) for d in dirs)


def _score(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.results import parse_labelled, score_recipe

    out = score_recipe(a.exp_dir, a.data_root, a.test_sets, parse_labelled(a.models),
                       metric=a.metric, text_name=a.text_name, ssl=parse_labelled(a.ssl),
                       extra_metrics=a.extra_metrics,
                       out_md=a.out, template=a.template, title=a.title)
    return out.read_text(encoding="utf-8") + f"\n(written to {out})"


def _study_report(a: argparse.Namespace) -> object:
    from chunkssl_espnet.recipe.study import parse_sweep, study_report

    intro = Path(a.intro).read_text(encoding="utf-8") if a.intro else ""
    out = study_report(a.exp_dir, a.data_root, a.test_sets, [parse_sweep(s) for s in a.sweeps],
                       a.out, title=a.title, intro=intro)
    return out.read_text(encoding="utf-8") + f"\n(written to {out})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chunkssl_espnet.recipe", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, run: Callable[[argparse.Namespace], object], help: str,
            passthrough: str = "") -> argparse.ArgumentParser:
        epilog = f"Arguments after a bare '--' go to {passthrough}." if passthrough else None
        p = sub.add_parser(name, help=help, description=help, epilog=epilog)
        p.set_defaults(run=run)
        p.add_argument("--force", action="store_true", help="redo even if already done")
        return p

    p = add("check-data", _check_data, "validate data directories, write utt2num_samples")
    p.add_argument("data_dirs", nargs="+")
    p.add_argument("--no_text", action="store_true", help="unlabelled data (SSL)")
    p.add_argument("--fs", type=int, default=16000,
                   help="required sample rate of the audio (the configs' frontend_conf.fs)")

    p = add("dump", _dump, "cut the segments of data directories into one flac per utterance")
    p.add_argument("srcs", nargs="+", help="data directories")
    p.add_argument("--out_root", required=True, help="writes <out_root>/<name of each src>")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--no_text", action="store_true", help="unlabelled data (SSL)")

    p = add("combine", _combine, "concatenate data directories (DST=SRC1,SRC2,...)")
    p.add_argument("specs", nargs="+", help="DST=SRC1,SRC2,... (names under --data_root)")
    p.add_argument("--data_root", default=".")
    p.add_argument("--no_text", action="store_true", help="unlabelled data (SSL)")

    p = add("holdout", _holdout, "split off n evenly spaced utterances as a validation set")
    p.add_argument("src")
    p.add_argument("train_dst")
    p.add_argument("valid_dst")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--no_text", action="store_true", help="unlabelled data (SSL)")

    p = add("stats", _stats, "feature statistics and shape files (ESPnet --collect_stats)",
            "ESPnet's ssl_train")
    p.add_argument("--config", required=True, help="a training config (its frontend is used)")
    p.add_argument("--train_dir", required=True)
    p.add_argument("--valid_dir", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--nj", type=int, default=1)

    p = add("text-stats", _text_stats, "text shape files of an LM training (ESPnet's LM "
            "--collect_stats)")
    p.add_argument("--config", required=True, help="the LM training config")
    p.add_argument("--train_text", required=True, help="Kaldi-style text: <id> <sentence>")
    p.add_argument("--valid_text", required=True)
    p.add_argument("--token_list", required=True)
    p.add_argument("--bpemodel", required=True)
    p.add_argument("--out_dir", required=True)

    p = add("step", _step, "run a command once per set of options, with log and run_info.json",
            "the command to run")
    p.add_argument("--out_dir", required=True, help="the command's output directory")
    p.add_argument("--name", default="step", help="stage name (log file name)")
    p.add_argument("--log", default=None)

    p = add("train", _train, "ESPnet training (SSL, ASR, ST or LM), resumable",
            "ESPnet's <task>_train")
    p.add_argument("--task", required=True, choices=["ssl", "asr", "st", "lm"])
    p.add_argument("--config", required=True)
    p.add_argument("--train_dir", required=True)
    p.add_argument("--valid_dir", required=True)
    p.add_argument("--stats_dir", required=True, help="speech statistics (text shapes: LM)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--tokenizer_dir", help="SSL: the FSQ tokenizer")
    p.add_argument("--token_list")
    p.add_argument("--bpemodel")
    p.add_argument("--text_name", default="text", help="target transcript file of the data dirs")
    p.add_argument("--src_token_list")
    p.add_argument("--src_bpemodel")
    p.add_argument("--src_text_name", help="ST: source transcript (auxiliary CTC)")
    p.add_argument("--init_param", action="append", default=[],
                   help="<file>:<src key>:<dst key>, e.g. exp/ssl/valid.loss.ave.pth:encoder:"
                        "encoder (repeatable)")
    p.add_argument("--max_epoch", type=int)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--dist_launcher", choices=["slurm", "mpi"])
    p.add_argument("--baseline_output_dir",
                   help="also train the same model from scratch (no --init_param) into this dir")
    p.add_argument("--concurrent", action="store_true",
                   help="run the baseline side by side with the main training (CPU)")
    p.add_argument("--num_threads", type=int, help="CPU threads (OMP_NUM_THREADS)")
    p.add_argument("--cpu_procs", type=int, default=1,
                   help="CPU training in this many processes of one thread each (DDP over gloo, "
                        "torch.distributed.run --standalone); --ngpu 0 only")

    def add_decode(name: str, run: Callable[[argparse.Namespace], object], help: str,
                   passthrough: str) -> argparse.ArgumentParser:
        """A decoding command, with the options the offline and streaming decodings share."""
        p = add(name, run, help, passthrough)
        p.add_argument("--task", default="asr", choices=["asr", "st"])
        p.add_argument("--model_dirs", nargs="+", required=True, help="ESPnet experiment folders")
        p.add_argument("--model_file", help="file in each model dir (default: the averaged model "
                       "of the first best_model_criterion of its config.yaml)")
        p.add_argument("--data_dirs", nargs="+", required=True, help="test sets")
        p.add_argument("--nj", type=int, default=1, help="decoding processes at a time")
        return p

    p = add_decode("decode", _decode, "offline beam search decoding in nj parallel parts",
                   "ESPnet's <task>_inference")
    p.add_argument("--chunk_sizes", type=int, nargs="+", default=[-1],
                   help="decode-time chunk sizes in encoder frames (-1: full context, default)")

    p = add_decode("stream-decode", _stream_decode, "streaming decoding at several chunk sizes",
                   "chunkssl_espnet.bin.<task>_inference_streaming")
    p.add_argument("--ref_name", help="ST: reference file in each data dir (BLEU, lagging)")
    p.add_argument("--chunk_sizes", type=int, nargs="+", required=True,
                   help=f"encoder frames of {ENCODER_FRAME_MS} ms")

    p = add("deploy", _deploy, "ONNX export (fp32, int8) and sherpa-onnx streaming decoding")
    p.add_argument("--model_dir", required=True, help="an ESPnet ASR experiment folder")
    p.add_argument("--model_file", default="valid.loss.ave.pth")
    p.add_argument("--data_dirs", nargs="+", required=True, help="test sets")
    p.add_argument("--chunk_size", type=int, default=16, help=f"encoder frames of "
                   f"{ENCODER_FRAME_MS} ms")
    p.add_argument("--num_left_chunks", type=int, default=4)

    p = add("score", _score, "score all decodings, write RESULTS.md, results.json and plots")
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--data_root", required=True, help="holds <test set>/<text_name>")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--models", nargs="+", required=True,
                   help="<folder in exp_dir>=<label>, in table order")
    p.add_argument("--ssl", nargs="*", default=[], help="SSL runs <folder>=<label> (loss plot)")
    p.add_argument("--metric", default="wer", choices=["wer", "cer", "bleu"])
    p.add_argument("--extra_metrics", nargs="*", default=[], choices=["wer", "cer", "bleu"],
                   help="more tables of the same decodings (e.g. cer)")
    p.add_argument("--text_name", default="text")
    p.add_argument("--template", help="markdown with a '<!-- results -->' line to fill")
    p.add_argument("--out", help="default <exp_dir>/RESULTS.md")
    p.add_argument("--title", default="Results")

    p = add("study-report", _study_report, "tables and figures of sweeps of decoded models")
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--data_root", required=True, help="holds <test set>/text")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--sweeps", nargs="+", required=True,
                   help="NAME:VALUE=DIR[|BASELINE_DIR],... (folders under exp_dir)")
    p.add_argument("--out", required=True, help="the markdown file")
    p.add_argument("--title", default="Study")
    p.add_argument("--intro", help="a markdown file put under the title")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, extra = _split_passthrough(argv)
    args = build_parser().parse_args(ours)
    args.extra = extra
    args.argv = [sys.executable, "-m", "chunkssl_espnet.recipe", *argv]
    if extra and args.command in ("check-data", "dump", "combine", "holdout", "score",
                                  "study-report"):
        print(f"error: {args.command} takes no arguments after '--': {shlex.join(extra)}",
              file=sys.stderr)
        return 2
    try:
        result = args.run(args)
    except (RecipeError, DataDirError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(result)
    return 0

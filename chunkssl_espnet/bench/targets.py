"""Benchmark 3: producing pre-training targets for an hour of features (docs/method.md section 3).

Features: the real LibriVox utterances of pocketsphinx-testdata (24.7 s, 16 kHz) through
:func:`kaldi_fbank`, normalised with their global mean/variance, tiled to ``--hours`` of fbank
frames (360,000 per hour) and perturbed with N(0, ``--noise-std``^2) noise in normalised units so
that no two frames are equal. The hour is cut into 15 s utterances.

Methods, each producing one label per frame of its own rate:

* FSQ ``random`` tokenizer: a statistics pass (``fit``: mean/std of the projected channels, one
  pass, nothing iterative) and the labelling pass (group targets, 25 Hz);
* FSQ ``trained`` tokenizer: auto-encoder training (``train_autoencoder``; reported separately)
  and the labelling pass;
* HuBERT-style k-means: scikit-learn ``MiniBatchKMeans`` fitted on the frames with the settings of
  fairseq's ``examples/hubert/simple_kmeans/learn_kmeans.py`` (k-means++, ``n_init`` 20,
  ``max_iter`` 100, ``batch_size`` 10000, ``tol`` 0, ``max_no_improvement`` 100,
  ``reassignment_ratio`` 0, ``compute_labels`` False) unless overridden, then ``predict`` on every
  frame (100 Hz 80-dim frames like HuBERT's first iteration, or the 320-dim stacked frames of the
  tokenizers with ``--kmeans-input stacked``).

    python -m chunkssl_espnet.bench.targets --threads 1 --out exp/bench/targets.json
"""

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from chunkssl_espnet.bench.common import (
    LIBRIVOX_DIR,
    add_common_args,
    fmt_ratio,
    fmt_seconds,
    format_machine,
    machine_info,
    markdown_table,
    print_goals,
    run_main,
    save_record,
    setup_run,
    time_fn,
)
from chunkssl_espnet.features import (
    NUM_MEL_BINS,
    apply_mvn,
    compute_mvn_stats,
    kaldi_fbank,
    load_wav,
)
from chunkssl_espnet.frames import SUBSAMPLING
from chunkssl_espnet.tokenizer import build_tokenizer, train_autoencoder

FRAMES_PER_HOUR = 360_000
UTT_FRAMES = 1500  # 15 s utterances
UTTS_PER_BATCH = 16
GOAL_SPEEDUP = 10.0

Batch = Tuple[torch.Tensor, torch.Tensor]


def load_features(
    wav_dir: Path, frames: int, noise_std: float, seed: int
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Normalised fbank (frames, 80) tiled from the real utterances of ``wav_dir``.

    Raises:
        FileNotFoundError: no wav file in ``wav_dir``.
    """
    wavs = sorted(Path(wav_dir).glob("*.wav"))
    if not wavs:
        raise FileNotFoundError(
            f"no *.wav in {wav_dir}: install the Debian package pocketsphinx-testdata "
            "(apt-get install pocketsphinx-testdata) or pass --wav-dir with 16 kHz wav files"
        )
    start = time.perf_counter()
    real = [kaldi_fbank(*load_wav(w)) for w in wavs]
    fbank_s = time.perf_counter() - start
    stats = compute_mvn_stats(real)
    real_norm = apply_mvn(torch.cat(real), stats)
    reps = -(-frames // real_norm.shape[0])
    feats = real_norm.repeat(reps, 1)[:frames].contiguous()
    gen = torch.Generator().manual_seed(seed)
    feats += noise_std * torch.randn(feats.shape, generator=gen)
    info = {
        "wav_dir": str(wav_dir),
        "num_wavs": len(wavs),
        "real_frames": int(real_norm.shape[0]),
        "real_seconds": real_norm.shape[0] / 100.0,
        "fbank_seconds_for_real_audio": fbank_s,
        "tiles": reps,
        "frames": frames,
        "noise_std": noise_std,
    }
    return feats, info


def make_batches(feats: torch.Tensor, device: torch.device) -> List[Batch]:
    """Cut (N, 80) frames into 15 s utterances, batched 16 at a time (the last one shorter)."""
    utts = list(torch.split(feats, UTT_FRAMES))
    batches = []
    for i in range(0, len(utts), UTTS_PER_BATCH):
        group = utts[i : i + UTTS_PER_BATCH]
        lens = torch.tensor([u.shape[0] for u in group])
        padded = torch.nn.utils.rnn.pad_sequence(group, batch_first=True)
        batches.append((padded.to(device), lens.to(device)))
    return batches


def label_fsq(tokenizer, batches: Sequence[Batch], group_size: int) -> int:
    """Group targets of every batch (what pre-training consumes); returns the number of labels."""
    n = 0
    for feats, lens in batches:
        targets, out_lens = tokenizer.group_targets(feats, lens, group_size)
        n += int(out_lens.sum())
    return n


def distinct_fsq(tokenizer, batches: Sequence[Batch]) -> int:
    """Distinct full FSQ indices used (not timed)."""
    seen = [tokenizer(feats, lens)[0].flatten() for feats, lens in batches]
    idx = torch.cat(seen)
    return int(torch.unique(idx[idx >= 0]).numel())


def kmeans_model(args: argparse.Namespace):
    from sklearn.cluster import MiniBatchKMeans

    return MiniBatchKMeans(
        n_clusters=args.kmeans_clusters,
        init="k-means++",
        max_iter=args.kmeans_max_iter,
        batch_size=args.kmeans_batch_size,
        compute_labels=False,
        tol=0.0,
        max_no_improvement=args.kmeans_max_no_improvement,
        init_size=None,
        n_init=args.kmeans_n_init,
        reassignment_ratio=0.0,
        random_state=args.seed,
        verbose=0,
    )


def timed_once(fn) -> Tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench_kmeans(feats: torch.Tensor, args: argparse.Namespace) -> Dict[str, Any]:
    """Fit once (timed), then label every frame (median of ``--repeats``)."""
    x = feats.numpy()
    if args.kmeans_input == "stacked":
        n = x.shape[0] // SUBSAMPLING
        x = x[: n * SUBSAMPLING].reshape(n, SUBSAMPLING * NUM_MEL_BINS)
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = kmeans_model(args)
    fit_s, fit_cpu_s, _ = timed_once(lambda: km.fit(x))
    labels: List[np.ndarray] = []

    def label() -> None:
        labels[:] = [km.predict(x)]

    t_label = time_fn(label, torch.device("cpu"), args.repeats, args.warmup)
    return {
        "method": "k-means",
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "label": t_label.to_dict(),
        "num_labels": int(x.shape[0]),
        "label_dim": int(x.shape[1]),
        "distinct_labels": int(np.unique(labels[0]).size),
        "vocabulary": args.kmeans_clusters,
        "n_steps": int(km.n_steps_),
        "n_iter": int(km.n_iter_),
        "settings": {
            "n_clusters": args.kmeans_clusters, "init": "k-means++",
            "n_init": args.kmeans_n_init, "max_iter": args.kmeans_max_iter,
            "batch_size": args.kmeans_batch_size, "tol": 0.0,
            "max_no_improvement": args.kmeans_max_no_improvement,
            "reassignment_ratio": 0.0, "input": args.kmeans_input,
        },  # fmt: skip
    }


def bench_fsq(
    kind: str, batches: Sequence[Batch], args: argparse.Namespace, device: torch.device
) -> Dict[str, Any]:
    """Fit statistics (random) or train (trained) once, then label (median of ``--repeats``)."""
    conf: Dict[str, Any] = {"levels": args.levels, "seed": args.seed}
    tokenizer = build_tokenizer(kind, **conf).to(device)
    row: Dict[str, Any] = {"method": f"FSQ {kind}", "levels": tokenizer.levels}
    if kind == "random":
        fit_s, fit_cpu_s, _ = timed_once(lambda: tokenizer.fit(batches))
        row["fit_s"], row["fit_cpu_s"] = fit_s, fit_cpu_s
        row["fit_what"] = "statistics pass (mean/std of the projected channels)"
    else:
        cpu_batches = [(f.cpu(), n.cpu()) for f, n in batches]
        fit_s, fit_cpu_s, mse = timed_once(lambda: train_autoencoder(
            tokenizer, cpu_batches, epochs=args.ae_epochs, batch_size=args.ae_batch_size,
            seed=args.seed, device=device, progress=False,
        ))  # fmt: skip
        row["fit_s"], row["fit_cpu_s"] = fit_s, fit_cpu_s
        row["fit_what"] = f"auto-encoder training, {args.ae_epochs} epochs"
        row["reconstruction_mse"] = mse
    counts: List[int] = []
    t_label = time_fn(lambda: counts.append(label_fsq(tokenizer, batches, args.group_size)),
                      device, args.repeats, args.warmup)  # fmt: skip
    row["label"] = t_label.to_dict()
    row["num_labels"] = counts[-1]
    row["vocabulary"] = tokenizer.fsq.codebook_size
    row["distinct_labels"] = distinct_fsq(tokenizer, batches)
    return row


def format_table(rows: Sequence[Dict[str, Any]], kmeans: Dict[str, Any]) -> str:
    headers = [
        "method", "labels (rate)", "fit / train", "label all frames", "total", "total CPU time",
        "speed-up total (CPU time)", "speed-up labelling (CPU time)", "distinct labels",
    ]  # fmt: skip
    body = []
    for r in rows:
        rate = "100 Hz" if r["method"] == "k-means" and r["label_dim"] == NUM_MEL_BINS else "25 Hz"
        body.append([
            r["method"], f"{r['num_labels']:,} ({rate})", fmt_seconds(r["fit_s"]),
            fmt_seconds(r["label"]["median_s"]), fmt_seconds(r["total_s"]),
            fmt_seconds(r["total_cpu_s"]),
            "1x" if r is kmeans else
            f"{fmt_ratio(r['speedup_total'])} ({fmt_ratio(r['speedup_total_cpu_time'])})",
            "1x" if r is kmeans else
            f"{fmt_ratio(r['speedup_label'])} ({fmt_ratio(r['speedup_label_cpu_time'])})",
            f"{r['distinct_labels']:,} of {r['vocabulary']:,}",
        ])  # fmt: skip
    return markdown_table(headers, body)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=1.0, help="hours of features to label")
    parser.add_argument("--wav-dir", type=Path, default=LIBRIVOX_DIR)
    parser.add_argument("--noise-std", type=float, default=0.1,
                        help="noise added to the tiled normalised features")
    parser.add_argument("--levels", default="2M", help="FSQ levels of the tokenizers")
    parser.add_argument("--group-size", type=int, default=3)
    parser.add_argument("--ae-epochs", type=int, default=10, help="trained tokenizer epochs")
    parser.add_argument("--ae-batch-size", type=int, default=256)
    parser.add_argument("--kmeans-clusters", type=int, default=500)
    parser.add_argument("--kmeans-n-init", type=int, default=20)
    parser.add_argument("--kmeans-max-iter", type=int, default=100)
    parser.add_argument("--kmeans-batch-size", type=int, default=10000)
    parser.add_argument("--kmeans-max-no-improvement", type=int, default=100)
    parser.add_argument("--kmeans-input", choices=["frames", "stacked"], default="frames",
                        help="80-dim 100 Hz frames (HuBERT) or 320-dim stacked 25 Hz frames")
    parser.add_argument("--skip-trained", action="store_true", help="no trained tokenizer")
    add_common_args(parser, repeats=3)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print the markdown table, write ``--out``; returns the results."""
    from threadpoolctl import threadpool_limits

    args = get_parser().parse_args(argv)
    device = setup_run(args)
    threads = torch.get_num_threads()  # scikit-learn's BLAS and OpenMP get as many
    machine = machine_info(device)
    frames = int(round(args.hours * FRAMES_PER_HOUR))
    feats, data_info = load_features(args.wav_dir, frames, args.noise_std, args.seed)
    batches = make_batches(feats, device)

    rows = []
    with threadpool_limits(limits=threads):
        kmeans = bench_kmeans(feats, args)
    print(f"[targets] k-means: fit {kmeans['fit_s']:.1f} s, label "
          f"{kmeans['label']['median_s']:.2f} s", flush=True)
    rows.append(kmeans)
    kinds = ["random"] if args.skip_trained else ["random", "trained"]
    for kind in kinds:
        row = bench_fsq(kind, batches, args, device)
        print(f"[targets] FSQ {kind}: fit {row['fit_s']:.2f} s, label "
              f"{row['label']['median_s']:.3f} s", flush=True)
        rows.append(row)
    for r in rows:
        r["total_s"] = r["fit_s"] + r["label"]["median_s"]
        r["total_cpu_s"] = r["fit_cpu_s"] + r["label"]["cpu_median_s"]
    for r in rows:
        r["speedup_total"] = kmeans["total_s"] / r["total_s"]
        r["speedup_label"] = kmeans["label"]["median_s"] / r["label"]["median_s"]
        r["speedup_total_cpu_time"] = kmeans["total_cpu_s"] / r["total_cpu_s"]
        r["speedup_label_cpu_time"] = kmeans["label"]["cpu_median_s"] / r["label"]["cpu_median_s"]
    goals = {}
    for r in rows[1:]:
        key = r["method"].replace(" ", "_")
        goals[f"{key}_total"] = {"target": GOAL_SPEEDUP, "value": r["speedup_total"],
                                 "met": r["speedup_total"] >= GOAL_SPEEDUP}
        goals[f"{key}_labelling"] = {"target": GOAL_SPEEDUP, "value": r["speedup_label"],
                                     "met": r["speedup_label"] >= GOAL_SPEEDUP}
    table = format_table(rows, kmeans)
    print(f"\nTargets for {args.hours:g} h ({frames:,} fbank frames: {data_info['num_wavs']} real "
          f"LibriVox utterances, {data_info['real_seconds']:.1f} s, tiled x{data_info['tiles']} "
          f"+ N(0, {args.noise_std}^2)), {threads} thread(s), labelling median of {args.repeats}")
    print(f"Machine: {format_machine(machine)}")
    print(f"k-means: {kmeans['settings']}, stopped after {kmeans['n_steps']} mini-batch steps")
    print(table)
    print_goals(goals, lambda _, g: f">= {g['target']:.0f}x: {g['value']:,.1f}x")
    return save_record("targets", args, machine, threads=threads, data=data_info, results=rows,
                       goals=goals, table=table)  # fmt: skip


if __name__ == "__main__":
    run_main(main)

"""Benchmark 5: pre-training throughput of a Chunk SSL step (docs/method.md sections 3 to 8).

One training step (forward, backward, gradient clipping at 5, Adam step) on the same batch of
audio (default 8 x 15 s of the real LibriVox utterances of pocketsphinx-testdata, tiled), in
train mode (dropout on), for:

* ours, chunk: ``ChunkSSLModel`` built by ``ChunkSSLTask.build_model`` from
  ``conf/ssl_chunk_tiny.yaml`` (random FSQ tokenizer fitted on the batch, 2M codebook, group loss),
  chunk size fixed at ``--chunk-ms`` (default 640 ms): one copy-and-append pass;
* ours, chunk, dense attention: the same step with the dense masked attention over all (2T)^2
  pairs (``attention_block_frames: 0``), the baseline of the block-sparse attention
  (``--no-dense`` skips it);
* ours, offline: the same model on a full-context batch (no copies, the utterance is masked);
* ESPnet HuBERT: ESPnet's stock SSL step (``SSLTask.build_model``, ``ESPnetSSLModel``,
  ``HuBERTLoss`` with 500 classes, the stock ``mask`` util, random integer labels as ``text``)
  with a ``conformer`` encoder of the same size (d 144, 4 heads, 6 layers, FFN 1024, kernel 15,
  macaron, relative positions). HuBERT's loss reads the encoder output at the masking rate, so the
  encoder cannot sub-sample: its frames come from the frontend, ``--espnet-frontends``:

  - ``fbank40`` (default): ESPnet's ``default`` STFT log-mel frontend with a 40 ms hop (80 mels),
    a ``linear`` preencoder to 144, masks of 5 frames (200 ms): the same encoder frame rate as ours
    (25 Hz), so the encoders see the same number of frames;
  - ``cnn``: the stock HuBERT ``wav2vec_cnn`` frontend (512 channels, 20 ms frames), ``linear``
    preencoder, masks of 10 frames: what ESPnet's HuBERT recipe runs; twice the frames and a
    costly convolutional frontend (slow on CPU: not in the default run).

Steps are interleaved (chunk, offline, ESPnet, chunk, ...) in one process with ``--threads``
torch threads (default 1); figures are medians, by wall clock and by CPU time of the process (on a
shared machine, CPU time counts the work done; wall time also counts other processes' share of
the cores). Throughput is audio seconds per second of step. FLOPs of one step of each row are
counted by ``torch.utils.flop_counter`` (matrix products, convolutions, attention; element-wise
work is not counted) on the first utterance and multiplied by the batch size (the utterances are
equally long); model FLOP utilisation is counted FLOPs per second of the median step over
the rate of a ``--matmul-size`` square fp32 matmul measured in the same run (before and after the
steps), both by wall clock and by CPU time. ``--bf16`` runs our encoder under bf16 autocast
(``model_conf.autocast_dtype``) and ESPnet's step under ``torch.autocast`` in bf16 (what
``--use_amp`` does on a CUDA GPU with bf16), and measures the matmul rate in bf16. Peak memory per
utterance (``bench/memory.py``) is measured on an untimed step of the first utterance; minor
page faults per step (``getrusage``, median of the timed steps) count the host pages the kernel
had to map in and zero during the step.

    python -m chunkssl_espnet.bench.ssl_throughput --out exp/bench/ssl_throughput.json
"""

import argparse
import logging
import resource
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from chunkssl_espnet.bench.common import (
    LIBRIVOX_DIR,
    REPO,
    SIZES,
    BenchError,
    Timing,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    format_machine,
    machine_info,
    markdown_table,
    print_goals,
    profile_top_ops,
    run_main,
    save_record,
    setup_run,
    time_fn,
    time_interleaved,
)
from chunkssl_espnet.bench.memory import measure_step_memory
from chunkssl_espnet.features import (
    SAMPLE_RATE,
    apply_mvn,
    compute_mvn_stats,
    kaldi_fbank,
    load_wav,
    save_mvn_stats,
)

GOAL_COST_RATIO = 2.2  # chunk step / offline step, wall and CPU time
GOAL_TIME_OVER_FLOPS = 1.15  # that time ratio / the counted-FLOP ratio
GOAL_MFU = 0.50
NUM_CLASSES = 500
ESPNET_FRONTENDS = {
    "fbank40": dict(frontend="default", mask_length=5,
                    frontend_conf=dict(fs=SAMPLE_RATE, n_fft=1024, win_length=640,
                                       hop_length=640, n_mels=80)),
    "cnn": dict(frontend="wav2vec_cnn", mask_length=10,  # HuBERT base's feature extractor
                frontend_conf=dict(norm_mode="group_norm", conv_mode="standard", bias=False)),
}  # fmt: skip

Batch = Tuple[torch.Tensor, torch.Tensor]


def make_audio(librivox_dir: Path, batch: int, seconds: float) -> Batch:
    """``batch`` windows of ``seconds`` of the LibriVox utterances, concatenated and tiled.

    Returns:
        speech (B, N) float32, lengths (B,) int64 (all N).
    """
    wavs = sorted(librivox_dir.glob("*.wav"))
    if not wavs:
        raise BenchError(
            f"no LibriVox utterances in {librivox_dir}: install the Debian package "
            "pocketsphinx-testdata or pass --librivox-dir"
        )
    audio = torch.cat([load_wav(w, SAMPLE_RATE)[0] for w in wavs])
    n = int(seconds * SAMPLE_RATE)
    reps = -(-(batch * n) // audio.numel())
    tiled = audio.repeat(reps)[: batch * n]
    return tiled.view(batch, n).clone(), torch.full((batch,), n, dtype=torch.long)


# ---------------------------------------------------------------------------------- models
def build_ours(size: str, speech: Batch, workdir: Path, seed: int):
    """``ChunkSSLTask.build_model`` on conf/ssl_chunk_tiny.yaml, with global MVN statistics and
    a random FSQ tokenizer fitted on the batch's features."""
    from chunkssl_espnet.espnet_plugin import ChunkSSLTask
    from chunkssl_espnet.tokenizer import build_tokenizer

    wav, lens = speech
    feats = [kaldi_fbank(w, SAMPLE_RATE, 80) for w in wav]
    stats = compute_mvn_stats(feats)
    save_mvn_stats(stats, workdir / "feats_stats.npz")
    tok = build_tokenizer("random", levels="2M", seed=seed)
    normed = torch.stack([apply_mvn(f, stats) for f in feats])
    tok.fit([(normed, torch.full((normed.shape[0],), normed.shape[1]))])
    tok.save(workdir / "tokenizer")
    cmd = ["--config", str(REPO / "conf/ssl_chunk_tiny.yaml"),
           "--normalize_conf", f"stats_file={workdir / 'feats_stats.npz'}",
           "--model_conf", f"tokenizer_dir={workdir / 'tokenizer'}"]  # fmt: skip
    for k, v in SIZES[size].items():
        cmd += ["--encoder_conf", f"{k}={v}"]
    args = ChunkSSLTask.get_parser().parse_args(cmd)
    torch.manual_seed(seed)
    model = ChunkSSLTask.build_model(args)
    model.encoder.dynamic_chunk_training = False  # the step's chunk size is set per row
    return model, args


def build_espnet(size: str, frontend: str, workdir: Path, seed: int):
    """ESPnet's stock HuBERT-style SSL model with a conformer encoder of the same size."""
    from espnet2.tasks.ssl import SSLTask

    fe = ESPNET_FRONTENDS[frontend]
    sizes = SIZES[size]
    tokens = workdir / "hubert_tokens.txt"
    tokens.write_text("".join(f"{i}\n" for i in range(NUM_CLASSES)))
    conf = {
        "frontend": fe["frontend"], "frontend_conf": fe["frontend_conf"],
        "normalize": "utterance_mvn", "preencoder": "linear",
        "preencoder_conf": {"output_size": sizes["output_size"]},
        "encoder": "conformer",
        "encoder_conf": dict(
            sizes, input_layer=None, macaron_style=True, pos_enc_layer_type="rel_pos",
            selfattention_layer_type="rel_selfattn", rel_pos_type="latest",
            use_cnn_module=True, dropout_rate=0.1, positional_dropout_rate=0.1,
            attention_dropout_rate=0.0,
        ),
        "loss": [{"name": "hubert", "conf": {"num_classes": NUM_CLASSES, "final_dim": 256}}],
        "util": [{"name": "mask", "conf": {"mask_prob": 0.8,
                                           "mask_length": fe["mask_length"]}}],
        "token_list": str(tokens), "token_type": "word",
    }  # fmt: skip
    path = workdir / f"hubert_{frontend}.yaml"
    path.write_text(yaml.safe_dump(conf))
    args = SSLTask.get_parser().parse_args(["--config", str(path)])
    torch.manual_seed(seed)
    return SSLTask.build_model(args), args


def hubert_labels(model, speech: Batch, seed: int) -> Batch:
    """Random integer labels at the encoder's frame rate (HuBERT's k-means ids stand-in)."""
    wav, lens = speech
    dev = next(model.parameters()).device
    with torch.no_grad():
        feats, flens = model._extract_feats(wav[:1].to(dev), lens[:1].to(dev))
    t = int(flens[0])
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (wav.shape[0], t), generator=gen)
    return labels, torch.full((wav.shape[0],), t, dtype=torch.long)


def make_step(model, optimizer, batch: Dict[str, torch.Tensor],
              autocast: Optional[torch.dtype] = None) -> Callable[[], float]:  # fmt: skip
    """One training step as ESPnet's trainer runs it: forward (under ``autocast`` when given, as
    ``--use_amp``), backward, clip, Adam."""
    device = next(model.parameters()).device.type

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=autocast or torch.bfloat16, enabled=bool(autocast)):
            loss, _, _ = model(**batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return float(loss.detach())

    return step


def matmul_rate(n: int, device: torch.device, repeats: int,
                dtype: torch.dtype = torch.float32) -> Dict[str, Any]:  # fmt: skip
    """GFLOP/s of an ``n`` x ``n`` matmul in ``dtype`` (2 n^3 FLOPs), median of ``repeats``, by
    wall and by CPU time."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    t = time_fn(lambda: torch.mm(a, b), device, repeats, warmup=1)
    return {"n": n, "gflops": 2 * n**3 / t.median / 1e9,
            "cpu_gflops": 2 * n**3 / t.cpu_median / 1e9, "timing": t.to_dict()}


def count_flops(step: Callable[[], Any]) -> Dict[str, Any]:
    """FLOPs of one call of ``step`` counted by ``FlopCounterMode``, total and top operators."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    per_op: Dict[str, int] = {}
    for ops in counter.get_flop_counts().values():
        for op, n in ops.items():
            per_op[str(op)] = max(per_op.get(str(op), 0), int(n))  # module totals nest
    top = dict(sorted(per_op.items(), key=lambda kv: -kv[1])[:8])
    return {"total": int(counter.get_total_flops()), "top_ops": top}


# ---------------------------------------------------------------------------------- driver
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per step")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per utterance")
    parser.add_argument("--chunk-ms", type=int, default=640, help="chunk size of the chunk rows")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--espnet-frontends", nargs="+", choices=sorted(ESPNET_FRONTENDS),
                        default=["fbank40"], help="ESPnet HuBERT baselines (see above)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="top ops of one step of each row (default: only for a missed goal)")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count and MFU")
    parser.add_argument("--librivox-dir", type=Path, default=LIBRIVOX_DIR)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast in every step (and a bf16 matmul rate)")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip the chunk row with dense masked attention")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak memory")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return parser


Steps = Dict[str, Callable[[], float]]


def _interleaved(steps: Steps, device: torch.device, repeats: int,
                 warmup: int) -> Tuple[Dict[str, Timing], Dict[str, float], Dict[str, float]]:
    """Step timings (A B C A B C ..., :func:`time_interleaved`), each step's last loss, and the
    median minor page faults of its timed calls (the kernel mapping in fresh host pages)."""
    losses: Dict[str, float] = {}
    faults: Dict[str, List[int]] = {k: [] for k in steps}

    def recorded(name: str) -> Callable[[], None]:
        def call() -> None:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            losses[name] = steps[name]()
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

        return call

    timings = time_interleaved({k: recorded(k) for k in steps}, device, repeats, warmup)
    return timings, losses, {k: statistics.median(v[-repeats:]) for k, v in faults.items()}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print the markdown table, write ``--out``; returns the results."""
    args = get_parser().parse_args(argv)
    device = setup_run(args)
    if args.chunk_ms % 40:
        raise BenchError(f"--chunk-ms {args.chunk_ms}: must be a multiple of 40 ms")
    chunk = args.chunk_ms // 40
    chunk_key = f"ours_chunk_{args.chunk_ms}ms"
    amp = torch.bfloat16 if args.bf16 else None
    mm_dtype = torch.bfloat16 if args.bf16 else torch.float32
    logging.getLogger().setLevel(logging.WARNING)
    machine = machine_info(device)
    speech = make_audio(args.librivox_dir, args.batch_size, args.seconds)
    audio_s = args.batch_size * args.seconds
    steps: Steps = {}
    one: Steps = {}  # the same step on the first utterance only
    params: Dict[str, int] = {}

    def first(b: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {k: v[:1] for k, v in b.items()}

    with tempfile.TemporaryDirectory() as tmp:
        ours, _ = build_ours(args.size, speech, Path(tmp), args.seed)
        ours = ours.to(device).train()
        opt = torch.optim.Adam(ours.parameters(), lr=0.002)
        batch = {"speech": speech[0].to(device), "speech_lengths": speech[1].to(device)}

        ours.autocast_dtype = amp
        block_frames = ours.encoder.attention_block_frames

        def with_chunk(size: int, blocks: int, b: Dict[str, torch.Tensor]) -> Callable[[], float]:
            base = make_step(ours, opt, b)

            def step() -> float:
                ours.encoder.static_chunk_size = size
                ours.encoder.attention_block_frames = blocks
                return base()

            return step

        variants = [(chunk_key, chunk, block_frames)]
        if not args.no_dense:
            variants.append((f"{chunk_key}_dense", chunk, 0))
        variants.append(("ours_offline", -1, block_frames))
        for name, size, blocks in variants:
            steps[name] = with_chunk(size, blocks, batch)
            one[name] = with_chunk(size, blocks, first(batch))
        params["ours"] = sum(p.numel() for p in ours.encoder.parameters())
        for fe in args.espnet_frontends:
            model, _ = build_espnet(args.size, fe, Path(tmp), args.seed)
            model = model.to(device).train()
            text, text_lens = hubert_labels(model, speech, args.seed)
            hb = {**batch, "text": text.to(device), "text_lengths": text_lens.to(device)}
            hopt = torch.optim.Adam(model.parameters(), lr=0.002)
            name = f"espnet_hubert_{fe}"
            steps[name] = make_step(model, hopt, hb, amp)
            one[name] = make_step(model, hopt, first(hb), amp)
            params[name] = sum(p.numel() for p in model.encoder.parameters())
            params[f"{name}_frames"] = int(text_lens[0])
    torch.set_num_threads(args.threads)  # model building may have changed it
    mm_before = matmul_rate(args.matmul_size, device, args.repeats, mm_dtype)
    timings, losses, faults = _interleaved(steps, device, args.repeats, args.warmup)
    mm_after = matmul_rate(args.matmul_size, device, args.repeats, mm_dtype)
    mm_gflops = statistics.median([mm_before["gflops"], mm_after["gflops"]])
    mm_cpu_gflops = statistics.median([mm_before["cpu_gflops"], mm_after["cpu_gflops"]])
    rows = []
    for name, t in timings.items():
        row = {"name": name, "step": t.to_dict(), "audio_s_per_s": audio_s / t.median,
               "last_loss": losses[name], "minor_page_faults": faults[name]}  # fmt: skip
        if not args.no_memory:
            row["memory_per_utterance"] = measure_step_memory(one[name], device)
        if not args.no_flops:  # utterances are equally long: FLOPs scale with the batch
            flops = count_flops(one[name])
            total = flops["total"] * args.batch_size
            achieved, achieved_cpu = total / t.median, total / t.cpu_median
            row["flops"] = {
                "step_gflop": total / 1e9,
                "top_ops_gflop": {k: v * args.batch_size / 1e9
                                  for k, v in flops["top_ops"].items()},
                "achieved_gflops": achieved / 1e9, "utilisation": achieved / 1e9 / mm_gflops,
                "achieved_gflops_cpu_time": achieved_cpu / 1e9,
                "utilisation_cpu_time": achieved_cpu / 1e9 / mm_cpu_gflops,
            }  # fmt: skip
        rows.append(row)
    by_name = {r["name"]: r for r in rows}
    med = {k: r["step"]["median_s"] for k, r in by_name.items()}
    cpu = {k: r["step"]["cpu_median_s"] for k, r in by_name.items()}
    for r in rows:
        r["cost_vs_ours_chunk"] = r["step"]["median_s"] / med[chunk_key]
    others = [k for k in med if k != chunk_key]
    ratios = {f"{chunk_key}_over_{k}": med[chunk_key] / med[k] for k in others}
    cpu_ratios = {f"{chunk_key}_over_{k}": cpu[chunk_key] / cpu[k] for k in others}
    flop_ratios = {} if args.no_flops else {
        f"{chunk_key}_over_{k}": by_name[chunk_key]["flops"]["step_gflop"]
        / by_name[k]["flops"]["step_gflop"] for k in others
    }  # fmt: skip
    goals = {}
    key = f"{chunk_key}_over_ours_offline"
    goals[f"cost_{key}"] = {"target": f"<= {GOAL_COST_RATIO}x", "value": ratios[key],
                            "cpu_time_value": cpu_ratios[key],
                            "met": max(ratios[key], cpu_ratios[key]) <= GOAL_COST_RATIO}
    if flop_ratios:  # the time a chunk step costs beyond its arithmetic
        over = {"value": ratios[key] / flop_ratios[key],
                "cpu_time_value": cpu_ratios[key] / flop_ratios[key]}
        goals[f"time_over_flop_ratio_{key}"] = {
            "target": f"<= {GOAL_TIME_OVER_FLOPS}x", **over,
            "met": max(over.values()) <= GOAL_TIME_OVER_FLOPS}
    mfu = None if args.no_flops else by_name[chunk_key]["flops"]
    if mfu is not None:
        goals["mfu_ours_chunk"] = {"target": f">= {GOAL_MFU:.0%}", "value": mfu["utilisation"],
                                   "cpu_time_value": mfu["utilisation_cpu_time"],
                                   "met": mfu["utilisation"] >= GOAL_MFU}  # fmt: skip
    profiles = {}
    if not args.no_profile and (args.profile or not all(g["met"] for g in goals.values())):
        for name, fn in steps.items():
            profiles[name] = profile_top_ops(fn, device, 15)

    headers = ["step", "median s/step, wall (CPU time)", "audio s per s (wall)",
               "cost / ours chunk, wall (CPU time)", "counted GFLOP/step",
               "GFLOP/s, wall (CPU time)", "of matmul rate, wall (CPU time)",
               "peak memory / utterance", "page faults / step"]
    body = []
    for r in rows:
        f = r.get("flops")
        body.append([
            r["name"], f"{fmt_seconds(med[r['name']])} ({fmt_seconds(cpu[r['name']])})",
            f"{r['audio_s_per_s']:.1f}",
            f"{fmt_ratio(r['cost_vs_ours_chunk'])} ({fmt_ratio(cpu[r['name']] / cpu[chunk_key])})",
            "-" if f is None else f"{f['step_gflop']:.1f}",
            "-" if f is None else
            f"{f['achieved_gflops']:.1f} ({f['achieved_gflops_cpu_time']:.1f})",
            "-" if f is None else f"{f['utilisation']:.1%} ({f['utilisation_cpu_time']:.1%})",
            fmt_bytes(r["memory_per_utterance"]["peak_bytes"]) if "memory_per_utterance" in r
            else "-",
            f"{r['minor_page_faults'] / 1e3:.0f}k",
        ])  # fmt: skip
    table = markdown_table(headers, body)
    print(f"\nSSL training step (forward+backward+Adam), batch {args.batch_size} x "
          f"{args.seconds:g} s = {audio_s:g} s of audio, {args.size} encoders"
          f"{', bf16 autocast' if args.bf16 else ''} "
          f"({params['ours'] / 1e6:.2f}M ours), median of {args.repeats} interleaved steps")
    print(f"Machine: {format_machine(machine)}")
    print(table)
    for k, v in ratios.items():
        counted = f", {flop_ratios[k]:.2f}x counted FLOPs" if flop_ratios else ""
        print(f"ratio {k}: {v:.2f}x wall, {cpu_ratios[k]:.2f}x CPU time{counted}")
    print(f"{args.matmul_size}^2 {'bf16' if args.bf16 else 'fp32'} matmul: {mm_gflops:.1f} "
          f"GFLOP/s wall (before "
          f"{mm_before['gflops']:.1f}, after {mm_after['gflops']:.1f}), {mm_cpu_gflops:.1f} "
          "GFLOP/s CPU time")

    def describe(name: str, g: Dict[str, Any]) -> str:
        if name.startswith("mfu"):
            return f"({g['target']}): {g['value']:.1%} wall ({g['cpu_time_value']:.1%} CPU time)"
        return f"({g['target']}): {g['value']:.2f}x wall ({g['cpu_time_value']:.2f}x CPU time)"

    print_goals(goals, describe)
    for name, prof in profiles.items():
        print(f"\nprofile {name}:\n{prof}")
    return save_record(
        "ssl_throughput", args, machine,
        audio_s_per_step=audio_s, encoder_params=params, results=rows, ratios=ratios,
        cpu_time_ratios=cpu_ratios, flop_ratios=flop_ratios,
        matmul={"before": mm_before, "after": mm_after, "gflops": mm_gflops,
                "cpu_time_gflops": mm_cpu_gflops},
        mfu=mfu, goals=goals, profiles=profiles, table=table,
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)

"""Benchmark 1: copy-and-append vs the naive N-1 chunk passes (docs/method.md section 7).

For each preset and chunk size, one training step (forward + backward) on utterances of
``--frames`` fbank frames (default 1500 = 15 s) of random normalised features:

* copy-and-append: one pass of :func:`copy_append_forward` over ``[B1..BN, E1..E(N-1)]``;
* naive: for each ``i``, a pass over ``[B1..Bi, masked B(i+1)]``, each followed by its own
  backward (gradient accumulation: the memory-frugal way to run the naive algorithm; one backward
  over all N-1 graphs would keep every pass's activations alive).

Both steps score the masked frames of chunks 2..N with the same fixed random projection of the
outputs, so they compute the same loss and the same gradients. The two steps are timed in
alternation; the naive warm-up runs its shortest and longest pass only. The run also checks the
equivalence: in eval mode, dropout 0, the copy outputs of :func:`copy_append_forward` and of the
reference :func:`naive_chunk_forward` (max abs diff), and the parameter gradients of the two steps.

Where the naive step is too slow (base preset on CPU), ``--naive-max-passes K`` times K evenly
spaced passes (first and last included) and scales the time by ``(N-1)/K``: the table then says
EXTRAPOLATED, and ``--check-frames`` can restrict the equivalence check to a prefix.

    python -m chunkssl_espnet.bench.copy_append --out exp/bench/copy_append.json
"""

import argparse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from chunkssl_espnet.bench.common import (
    DEFAULT_CHUNK_MS,
    BenchError,
    add_common_args,
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
    time_interleaved,
)
from chunkssl_espnet.bench.memory import measure_step_memory, method_description
from chunkssl_espnet.copy_append import copy_append_forward, naive_chunk_forward, naive_pass_input
from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.features import NUM_MEL_BINS
from chunkssl_espnet.frames import ENCODER_FRAME_MS, SUBSAMPLING
from chunkssl_espnet.masking import apply_fbank_mask, chunk_span_mask

GOAL_CHUNK_MS = 640
GOAL_SPEEDUP = 4.0


@dataclass
class Inputs:
    """One batch and what both steps score.

    Attributes:
        feats: (B, T, 80) clean features; lens: (B,) fbank frames.
        frame_mask: (B, T') bool encoder-frame mask; masked: (B, T, 80) masked features.
        weight: (B, T', D) fixed random projection of the outputs defining the loss.
        select: (B, T') float, 1 on the scored frames (masked frames of chunks 2..N).
    """

    feats: torch.Tensor
    lens: torch.Tensor
    frame_mask: torch.Tensor
    masked: torch.Tensor
    weight: torch.Tensor
    select: torch.Tensor


def build_encoder(preset: str, seed: int, device: torch.device) -> ChunkConformerEncoder:
    """The preset's encoder with dropout 0 (train and eval mode then compute the same)."""
    torch.manual_seed(seed)
    encoder = ChunkConformerEncoder(
        NUM_MEL_BINS, preset=preset, dropout_rate=0.0, attention_dropout_rate=0.0
    )
    return encoder.to(device)


def make_inputs(
    batch: int, frames: int, chunk: int, dim: int, seed: int, device: torch.device
) -> Inputs:
    """Random normalised features, a chunk span mask (45%, spans of 4) and the loss weights."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, frames, NUM_MEL_BINS, generator=gen)
    lens = torch.full((batch,), frames, dtype=torch.long)
    t_enc = frames // SUBSAMPLING
    frame_mask = chunk_span_mask(lens // SUBSAMPLING, t_enc, chunk, generator=gen)
    masked = apply_fbank_mask(feats, frame_mask, SUBSAMPLING, generator=gen)
    weight = torch.randn(batch, t_enc, dim, generator=gen)
    pos = torch.arange(t_enc)[None, :]
    select = (frame_mask & (pos >= chunk)).float()
    return Inputs(*(x.to(device) for x in (feats, lens, frame_mask, masked, weight, select)))


def naive_pass_starts(t_enc: int, chunk: int) -> List[int]:
    """First encoder frame of each predicted chunk: one naive pass each (N - 1 of them)."""
    return list(range(chunk, t_enc, chunk))


def select_passes(starts: Sequence[int], max_passes: int) -> List[int]:
    """All passes (``max_passes <= 0``) or ``max_passes`` evenly spaced ones, first and last
    included (the timing of the subset is extrapolated, and says so)."""
    if max_passes <= 0 or max_passes >= len(starts):
        return list(starts)
    if max_passes == 1:
        return [starts[-1]]
    idx = sorted({round(i * (len(starts) - 1) / (max_passes - 1)) for i in range(max_passes)})
    return [starts[i] for i in idx]


def _zero_grad(encoder: torch.nn.Module) -> None:
    for p in encoder.parameters():
        p.grad = None


def copy_append_step(encoder: ChunkConformerEncoder, inp: Inputs, chunk: int) -> None:
    """One copy-and-append training step: a single forward and backward."""
    _zero_grad(encoder)
    out = copy_append_forward(
        encoder, inp.feats, inp.lens, chunk, inp.frame_mask, masked_feats=inp.masked
    )
    loss = (out.copies * inp.weight * inp.select[..., None]).sum()
    loss.backward()


def naive_step(
    encoder: ChunkConformerEncoder, inp: Inputs, chunk: int, starts: Sequence[int]
) -> None:
    """The naive training step: the passes starting at ``starts``, each with its backward."""
    _zero_grad(encoder)
    t_enc = inp.feats.shape[1] // SUBSAMPLING
    for start in starts:
        end = min(start + chunk, t_enc)
        x, lens = naive_pass_input(inp.feats, inp.lens, inp.masked, start, chunk)
        out, _, _ = encoder.forward_masked(x, lens, chunk, -1)
        sel = inp.select[:, start:end, None]
        loss = (out[:, start:end] * inp.weight[:, start:end] * sel).sum()
        loss.backward()


def _grads(encoder: torch.nn.Module) -> List[torch.Tensor]:
    return [
        p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        for p in encoder.parameters()
    ]


def check_equivalence(
    encoder: ChunkConformerEncoder, inp: Inputs, chunk: int, check_frames: int
) -> Dict[str, Any]:
    """Eval mode, no grad: copy-and-append vs :func:`naive_chunk_forward` on the first
    ``check_frames`` fbank frames (all when <= 0).

    Returns:
        ``max_abs_diff_copies`` (over valid copy frames), ``max_abs_diff_base``, ``check_frames``.
    """
    t = inp.feats.shape[1] if check_frames <= 0 else min(check_frames, inp.feats.shape[1])
    t -= t % SUBSAMPLING
    feats, masked = inp.feats[:, :t], inp.masked[:, :t]
    lens = torch.clamp(inp.lens, max=t)
    fmask = inp.frame_mask[:, : t // SUBSAMPLING]
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            ca = copy_append_forward(encoder, feats, lens, chunk, fmask, masked_feats=masked)
            nv = naive_chunk_forward(encoder, feats, lens, chunk, fmask, masked_feats=masked)
    finally:
        encoder.train(was_training)
    valid = ca.copies_valid
    base_valid = torch.arange(ca.base.shape[1], device=valid.device)[None, :] < ca.olens[:, None]
    diff_copies = (ca.copies - nv.copies).abs()[valid]
    diff_base = (ca.base - nv.base).abs()[base_valid]
    return {
        "max_abs_diff_copies": float(diff_copies.max()) if diff_copies.numel() else 0.0,
        "max_abs_diff_base": float(diff_base.max()) if diff_base.numel() else 0.0,
        "copy_frames_compared": int(valid.sum()),
        "check_frames": t,
    }


def memory_passes(starts: Sequence[int]) -> List[int]:
    """Passes the naive memory measurement runs: the first and the last (longest). Each pass's
    graph is freed by its own backward, so the naive step's peak is that of its longest pass with
    the gradients allocated (tests/test_bench.py checks it equals the peak over all passes)."""
    return sorted({starts[0], starts[-1]})


def bench_config(
    preset: str, chunk_ms: int, args: argparse.Namespace, device: torch.device
) -> Dict[str, Any]:
    """Time, memory and equivalence of one (preset, chunk size)."""
    if chunk_ms % ENCODER_FRAME_MS:
        raise BenchError(f"--chunk-ms {chunk_ms}: must be a multiple of {ENCODER_FRAME_MS} ms")
    chunk = chunk_ms // ENCODER_FRAME_MS
    t_enc = args.frames // SUBSAMPLING
    if t_enc <= chunk:
        raise BenchError(
            f"--frames {args.frames} gives {t_enc} encoder frames: not more than one chunk of "
            f"{chunk}; use longer utterances"
        )
    encoder = build_encoder(preset, args.seed, device).train()
    inp = make_inputs(args.batch_size, args.frames, chunk, encoder.output_size(), args.seed, device)
    starts = naive_pass_starts(t_enc, chunk)
    timed_starts = select_passes(starts, args.naive_max_passes)
    extrapolated = len(timed_starts) < len(starts)
    per_utt = 1.0 / args.batch_size

    row: Dict[str, Any] = {
        "preset": preset,
        "chunk_ms": chunk_ms,
        "chunk_frames": chunk,
        "num_chunks": -(-t_enc // chunk),
        "naive_passes": len(starts),
        "naive_passes_timed": len(timed_starts),
        "naive_extrapolated": extrapolated,
    }

    def amp():  # --bf16: the steps' forward under autocast (the equivalence check is fp32)
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def ca() -> None:
        with amp():
            copy_append_step(encoder, inp, chunk)

    def naive() -> None:
        with amp():
            naive_step(encoder, inp, chunk, timed_starts)

    def naive_warmup() -> None:  # the shortest and the longest pass (warm-up and memory)
        with amp():
            naive_step(encoder, inp, chunk, memory_passes(starts))

    times = time_interleaved({"copy_append": ca, "naive": naive}, device, args.repeats,
                             args.warmup, warmup_fns={"naive": naive_warmup})  # fmt: skip
    t_ca, t_nv = times["copy_append"], times["naive"]
    if extrapolated:
        row["naive_subset_per_utt"] = t_nv.scaled(per_utt).to_dict()
        t_nv = t_nv.scaled(len(starts) / len(timed_starts))
    else:  # the last timed call was a full naive step: compare its gradients with one CA step
        grads_nv = _grads(encoder)
        ca()
        grads_ca = _grads(encoder)
        row["grad_max_abs_diff"] = max(
            float((a - b).abs().max()) for a, b in zip(grads_ca, grads_nv)
        )
        row["grad_max_abs"] = max(float(g.abs().max()) for g in grads_ca)
    row["copy_append_per_utt"] = t_ca.scaled(per_utt).to_dict()
    row["naive_per_utt"] = t_nv.scaled(per_utt).to_dict()
    row["speedup"] = t_nv.median / t_ca.median
    row["speedup_cpu_time"] = t_nv.cpu_median / max(t_ca.cpu_median, 1e-9)
    row["equivalence"] = check_equivalence(encoder, inp, chunk, args.check_frames)

    if not args.no_memory:
        def zero() -> None:
            _zero_grad(encoder)

        mem = {
            "copy_append": measure_step_memory(ca, device, warmup=0, before=zero),
            "naive": measure_step_memory(naive_warmup, device, warmup=0, before=zero),
        }
        row["memory_per_utt_bytes"] = {k: v["peak_bytes"] * per_utt for k, v in mem.items()}
        row["memory_method"] = {k: v["method"] for k, v in mem.items()}
        row["memory_ratio_copy_append_over_naive"] = (
            mem["copy_append"]["peak_bytes"] / max(mem["naive"]["peak_bytes"], 1)
        )
    if args.profile:
        row["profile_copy_append"] = profile_top_ops(ca, device)
        row["profile_naive"] = profile_top_ops(naive, device)
    return row


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    headers = [
        "preset", "chunk", "N chunks", "copy-append s/utt", "naive s/utt", "speed-up",
        "speed-up CPU time", "copy-append peak mem/utt", "naive peak mem/utt",
        "max abs diff copies", "max grad diff",
    ]  # fmt: skip
    body = []
    for r in rows:
        naive = fmt_seconds(r["naive_per_utt"]["median_s"])
        if r["naive_extrapolated"]:
            naive += f" (EXTRAPOLATED from {r['naive_passes_timed']}/{r['naive_passes']} passes)"
        mem = r.get("memory_per_utt_bytes", {})
        grad = r.get("grad_max_abs_diff")
        grad_txt = "-" if grad is None else f"{grad:.1e} (of {r['grad_max_abs']:.1e})"
        eq = r["equivalence"]
        eq_txt = f"{eq['max_abs_diff_copies']:.1e}"
        if eq["check_frames"] < r.get("frames", eq["check_frames"]):
            eq_txt += f" (first {eq['check_frames']} frames)"
        body.append([
            r["preset"], f"{r['chunk_ms']} ms ({r['chunk_frames']})", r["num_chunks"],
            fmt_seconds(r["copy_append_per_utt"]["median_s"]), naive, fmt_ratio(r["speedup"]),
            fmt_ratio(r["speedup_cpu_time"]), fmt_bytes(mem.get("copy_append")),
            fmt_bytes(mem.get("naive")), eq_txt, grad_txt,
        ])  # fmt: skip
    return markdown_table(headers, body)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=None, choices=["tiny", "base", "large"],
                        help="encoder presets (default: tiny on CPU, tiny and base on CUDA)")
    parser.add_argument("--frames", type=int, default=1500, help="fbank frames per utterance")
    parser.add_argument("--batch-size", type=int, default=1, help="utterances per step")
    parser.add_argument("--chunk-ms", type=int, nargs="+", default=list(DEFAULT_CHUNK_MS))
    parser.add_argument(
        "--naive-max-passes", type=int, default=0,
        help="time only this many evenly spaced naive passes and EXTRAPOLATE (0: all, measured)",
    )  # fmt: skip
    parser.add_argument(
        "--check-frames", type=int, default=0,
        help="equivalence check on the first N fbank frames only (0: the whole utterance)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="top ops of each step")
    parser.add_argument("--bf16", action="store_true", help="steps under bf16 autocast")
    add_common_args(parser, repeats=3)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print the markdown table, write ``--out``; returns the results."""
    args = get_parser().parse_args(argv)
    device = setup_run(args)
    presets = args.presets or (["tiny"] if device.type == "cpu" else ["tiny", "base"])
    machine = machine_info(device)
    rows = []
    for preset in presets:
        for chunk_ms in args.chunk_ms:
            row = bench_config(preset, chunk_ms, args, device)
            row["frames"] = args.frames
            rows.append(row)
            print(
                f"[copy_append] {preset} {chunk_ms} ms: speed-up {row['speedup']:.2f}x, "
                f"max abs diff {row['equivalence']['max_abs_diff_copies']:.1e}", flush=True
            )  # fmt: skip
    goals = {}
    for preset in presets:
        at_goal = [r for r in rows if r["preset"] == preset and r["chunk_ms"] == GOAL_CHUNK_MS]
        if at_goal:
            s = at_goal[0]["speedup"]
            goals[f"{preset}_speedup_at_{GOAL_CHUNK_MS}ms"] = {
                "target": GOAL_SPEEDUP, "value": s, "met": s >= GOAL_SPEEDUP,
                "extrapolated": at_goal[0]["naive_extrapolated"],
            }  # fmt: skip
    table = format_table(rows)
    print(f"\nCopy-and-append vs naive, {args.frames} fbank frames ({args.frames / 100:.1f} s) per "
          f"utterance, batch {args.batch_size}, forward+backward, median of {args.repeats}")
    print(f"Machine: {format_machine(machine)}")
    if not args.no_memory:
        print(f"Peak memory: {method_description(device)}")
    print(table)
    print_goals(goals, lambda _, g: f">= {g['target']}x: {g['value']:.2f}x")
    for r in rows:
        if args.profile:
            print(f"\nprofile {r['preset']} {r['chunk_ms']} ms copy-append:\n"
                  f"{r['profile_copy_append']}\nnaive:\n{r['profile_naive']}")
    return save_record(
        "copy_append", args, machine,
        memory_method=None if args.no_memory else method_description(device),
        results=rows, goals=goals, table=table,
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)

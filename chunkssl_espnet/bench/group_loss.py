"""Benchmark 2: the group masked prediction loss vs a full softmax (docs/method.md section 4).

For the codebooks 1k ``[8,5,5,5]``, 64k ``[8,8,8,5,5,5]`` and 2M ``[5]*9`` (groups of 3 channels),
on ``B * T`` scored frames of D-dim encoder output (D from the encoder preset):

* head parameters and fp32 logits per frame: ``sum_g V_g`` (group) vs ``prod_g V_g`` (full),
  counted from the shapes of the actual heads; the full softmax at 2M is computed, not built;
* step time: forward + backward of :class:`GroupMaskedPredictionLoss` (head and loss) where the
  full softmax fits (1k, 64k), and its peak memory (see ``chunkssl_espnet.bench.memory``);
* equality of the losses on a product model: the full head is built from the group head so that
  its logit of code ``k`` is ``sum_g`` (group g's logit of k's group index); the full softmax of
  that is the product of the group softmaxes, so both losses must agree.

    python -m chunkssl_espnet.bench.group_loss --out exp/bench/group_loss.json
"""

import argparse
import math
from typing import Any, Dict, List, Optional, Sequence

import torch

from chunkssl_espnet.bench.common import (
    add_common_args,
    fmt_bytes,
    fmt_count,
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
from chunkssl_espnet.encoder import ENCODER_PRESETS
from chunkssl_espnet.fsq import FSQ, LEVEL_PRESETS
from chunkssl_espnet.group_loss import MAX_FULL_SOFTMAX_CLASSES, GroupMaskedPredictionLoss

DEFAULT_CODEBOOKS = ("1k", "64k", "2M")
GOAL_CODEBOOK = "2M"
GOAL_RATIO = 1000.0
FP32_BYTES = 4


def build_loss(
    levels: List[int], dim: int, group_size: int, full: bool, seed: int, device: torch.device
) -> GroupMaskedPredictionLoss:
    torch.manual_seed(seed)
    loss = GroupMaskedPredictionLoss(dim, levels=levels, group_size=group_size, full_softmax=full)
    return loss.to(device)


def make_batch(
    levels: List[int], dim: int, group_size: int, frames: int, seed: int, device: torch.device
):
    """Encoder output x (1, frames, D) requiring grad, group targets (1, frames, G), all scored."""
    gen = torch.Generator().manual_seed(seed)
    vocab = FSQ(levels).group_sizes(group_size)
    x = torch.randn(1, frames, dim, generator=gen).to(device).requires_grad_(True)
    targets = torch.stack(
        [torch.randint(v, (1, frames), generator=gen) for v in vocab], dim=-1
    ).to(device)
    mask = torch.ones(1, frames, dtype=torch.bool, device=device)
    return x, targets, mask


def loss_step(loss_fn: GroupMaskedPredictionLoss, x: torch.Tensor, targets, mask) -> None:
    """Head forward + loss + backward (gradients of the head and of the encoder output)."""
    x.grad = None
    loss_fn.zero_grad(set_to_none=True)
    loss, _ = loss_fn([x], targets, mask)
    loss.backward()


def _step_fn(loss_fn: GroupMaskedPredictionLoss, x: torch.Tensor, targets, mask):
    return lambda: loss_step(loss_fn, x, targets, mask)


def _free_grads(loss_fn: GroupMaskedPredictionLoss, x: torch.Tensor):
    def free() -> None:
        x.grad = None
        loss_fn.zero_grad(set_to_none=True)

    return free


@torch.no_grad()
def product_full_head(group: GroupMaskedPredictionLoss, full: GroupMaskedPredictionLoss) -> None:
    """Set ``full``'s head so that its logit of code k is the sum of k's group logits.

    With joint index ``k = sum_g t_g * radix_g``, row k of the full weight is
    ``sum_g W_group[offset_g + t_g]`` (likewise the bias); the full softmax then factorises into
    the group softmaxes (its log-normaliser is the sum of the groups' log-normalisers).
    """
    vocab = torch.tensor(group.group_vocab_sizes)
    radix = torch.tensor([math.prod(group.group_vocab_sizes[:g]) for g in range(len(vocab))])
    offsets = torch.cumsum(vocab, 0) - vocab
    k = torch.arange(math.prod(group.group_vocab_sizes))
    rows = (k[:, None] // radix[None, :]) % vocab[None, :] + offsets[None, :]  # (prod V, G)
    rows = rows.to(group.head.weight.device)
    weight = torch.zeros_like(full.head.weight)
    bias = torch.zeros_like(full.head.bias)
    for g in range(rows.shape[1]):
        weight += group.head.weight[rows[:, g]]
        bias += group.head.bias[rows[:, g]]
    full.head.weight.copy_(weight)
    full.head.bias.copy_(bias)


def loss_equivalence(
    levels: List[int], dim: int, group_size: int, frames: int, seed: int, device: torch.device
) -> Dict[str, float]:
    """Group loss vs full-softmax loss on the product model (fp32)."""
    group = build_loss(levels, dim, group_size, False, seed, device)
    full = build_loss(levels, dim, group_size, True, seed, device)
    product_full_head(group, full)
    x, targets, mask = make_batch(levels, dim, group_size, frames, seed, device)
    with torch.no_grad():
        lg, sg = group([x], targets, mask)
        lf, sf = full([x], targets, mask)
    return {
        "group_loss": float(lg),
        "full_softmax_loss": float(lf),
        "abs_diff": abs(float(lg) - float(lf)),
        "rel_diff": abs(float(lg) - float(lf)) / max(abs(float(lf)), 1e-30),
        "group_acc_joint": float(sg["acc_joint"]),
        "full_acc_joint": float(sf["acc_joint"]),
    }


def bench_codebook(
    name: str, dim: int, frames: int, args: argparse.Namespace, device: torch.device
) -> Dict[str, Any]:
    """Sizes, step times, memory and loss equality of one codebook."""
    levels = LEVEL_PRESETS[name] if name in LEVEL_PRESETS else [int(v) for v in name.split(",")]
    vocab = FSQ(levels).group_sizes(args.group_size)
    size = math.prod(levels)
    fits = size <= MAX_FULL_SOFTMAX_CLASSES
    row: Dict[str, Any] = {
        "codebook": name, "levels": levels, "codebook_size": size, "group_vocab_sizes": vocab,
        "frames": frames, "dim": dim, "full_softmax_built": fits,
    }  # fmt: skip
    group = build_loss(levels, dim, args.group_size, False, args.seed, device)
    n_group = group.head.out_features
    row["group"] = {
        "logits_per_frame": n_group,
        "logits_bytes_per_frame": n_group * FP32_BYTES,
        "head_params": sum(p.numel() for p in group.head.parameters()),
    }
    # The full head is Linear(D, prod V): D * prod V weights and prod V biases.
    row["full"] = {
        "logits_per_frame": size,
        "logits_bytes_per_frame": size * FP32_BYTES,
        "head_params": dim * size + size,
        "measured": fits,
    }
    row["ratio_logits"] = size / n_group
    row["ratio_params"] = row["full"]["head_params"] / row["group"]["head_params"]

    x, targets, mask = make_batch(levels, dim, args.group_size, frames, args.seed, device)
    modules = {"group": group}
    if fits:
        modules["full"] = build_loss(levels, dim, args.group_size, True, args.seed, device)
        n_full = sum(p.numel() for p in modules["full"].head.parameters())
        assert n_full == row["full"]["head_params"]
    steps = {kind: _step_fn(m, x, targets, mask) for kind, m in modules.items()}
    times = time_interleaved(steps, device, args.repeats, args.warmup)
    for kind, timing in times.items():
        row[kind]["step"] = timing.to_dict()
    if fits:
        row["speedup_step"] = times["full"].median / times["group"].median
        row["speedup_step_cpu_time"] = times["full"].cpu_median / max(
            times["group"].cpu_median, 1e-9
        )
        row["equivalence"] = loss_equivalence(
            levels, dim, args.group_size, args.equivalence_frames, args.seed, device
        )
    for kind, step in steps.items():
        if not args.no_memory:
            mem = measure_step_memory(step, device, warmup=0, before=_free_grads(modules[kind], x))
            row[kind]["step_peak_bytes"] = mem["peak_bytes"]
            row[kind]["memory_method"] = mem["method"]
        if args.profile:
            row[kind]["profile"] = profile_top_ops(step, device)
    return row


def format_tables(rows: Sequence[Dict[str, Any]]) -> str:
    headers = [
        "codebook", "group V_g", "head params group / full", "ratio",
        "logits bytes/frame group / full", "ratio", "step group / full", "speed-up",
        "speed-up CPU time", "step peak mem group / full",
    ]  # fmt: skip
    body = []
    for r in rows:
        g, f = r["group"], r["full"]
        mark = "" if f["measured"] else " (computed)"
        t_full = fmt_seconds(f["step"]["median_s"]) if "step" in f else "not built"
        body.append([
            f"{r['codebook']} ({r['codebook_size']:,})", "+".join(map(str, r["group_vocab_sizes"])),
            f"{fmt_count(g['head_params'])} / {fmt_count(f['head_params'])}{mark}",
            fmt_ratio(r["ratio_params"]),
            f"{fmt_bytes(g['logits_bytes_per_frame'])} / "
            f"{fmt_bytes(f['logits_bytes_per_frame'])}{mark}",
            fmt_ratio(r["ratio_logits"]),
            f"{fmt_seconds(g['step']['median_s'])} / {t_full}",
            fmt_ratio(r.get("speedup_step")), fmt_ratio(r.get("speedup_step_cpu_time")),
            f"{fmt_bytes(g.get('step_peak_bytes'))} / {fmt_bytes(f.get('step_peak_bytes'))}",
        ])  # fmt: skip
    eq_rows = [
        [r["codebook"], f"{r['equivalence']['group_loss']:.6f}",
         f"{r['equivalence']['full_softmax_loss']:.6f}", f"{r['equivalence']['abs_diff']:.1e}",
         f"{r['equivalence']['rel_diff']:.1e}"]
        for r in rows if "equivalence" in r
    ]  # fmt: skip
    text = markdown_table(headers, body)
    if eq_rows:
        text += "\n\nLoss on the product model (full head built from the group head):\n\n"
        text += markdown_table(
            ["codebook", "group loss", "full-softmax loss", "abs diff", "rel diff"], eq_rows
        )
    return text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="base", choices=sorted(ENCODER_PRESETS),
                        help="encoder preset giving D (tiny 144, base 512, large 768)")
    parser.add_argument("--batch-size", type=int, default=4, help="B utterances")
    parser.add_argument("--enc-frames", type=int, default=375,
                        help="T encoder frames per utterance (375 = 15 s); B*T frames are scored")
    parser.add_argument("--codebooks", nargs="+", default=list(DEFAULT_CODEBOOKS),
                        help="level presets (1k, 64k, 2M, 10M, 244M) or comma lists")
    parser.add_argument("--group-size", type=int, default=3)
    parser.add_argument("--equivalence-frames", type=int, default=256)
    parser.add_argument("--profile", action="store_true", help="top ops of each step")
    add_common_args(parser, repeats=3)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print the markdown tables, write ``--out``; returns the results."""
    args = get_parser().parse_args(argv)
    device = setup_run(args)
    dim = ENCODER_PRESETS[args.preset]["output_size"]
    frames = args.batch_size * args.enc_frames
    machine = machine_info(device)
    rows = []
    for name in args.codebooks:
        row = bench_codebook(name, dim, frames, args, device)
        rows.append(row)
        print(f"[group_loss] {name}: logits ratio {row['ratio_logits']:,.0f}x, "
              f"params ratio {row['ratio_params']:,.0f}x", flush=True)
    goals = {}
    at_goal = [r for r in rows if r["codebook"] == GOAL_CODEBOOK]
    if at_goal:
        r = at_goal[0]
        for key in ("ratio_logits", "ratio_params"):
            goals[f"{GOAL_CODEBOOK}_{key}"] = {
                "target": GOAL_RATIO, "value": r[key], "met": r[key] >= GOAL_RATIO
            }
    table = format_tables(rows)
    print(f"\nGroup loss vs full softmax, D={dim} ({args.preset}), {frames} scored frames "
          f"(B={args.batch_size} x T={args.enc_frames}), head+loss forward+backward, "
          f"median of {args.repeats}")
    print(f"Machine: {format_machine(machine)}")
    if not args.no_memory:
        print(f"Peak memory: {method_description(device)}")
    print(table)
    print_goals(goals, lambda _, g: f">= {g['target']:.0f}x: {g['value']:,.0f}x")
    if args.profile:
        for r in rows:
            for kind in ("group", "full"):
                if "profile" in r[kind]:
                    print(f"\nprofile {r['codebook']} {kind}:\n{r[kind]['profile']}")
    return save_record(
        "group_loss", args, machine,
        memory_method=None if args.no_memory else method_description(device),
        results=rows, goals=goals, table=table,
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)

"""Fit or train an FSQ tokenizer and report its codebook usage (docs/method.md, section 3).

    python -m chunkssl_espnet.bin.tokenizer_train --kind random --levels 2M \\
        --data_dir data/train --out_dir exp/tokenizer_random

Writes into ``--out_dir``: ``config.json`` and ``model.pt`` (read by ``load_tokenizer``),
``feats_stats.npz`` (the global MVN the features were normalised with, ESPnet format) and
``usage.json`` (codebook usage on the data, and the reconstruction error for ``trained``).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from chunkssl_espnet.data.datadir import atomic_write_text
from chunkssl_espnet.features import (
    SAMPLE_RATE,
    apply_mvn,
    compute_mvn_stats,
    kaldi_fbank,
    load_mvn_stats,
    load_wav,
)
from chunkssl_espnet.fsq import DEFAULT_LEVELS, LEVEL_PRESETS
from chunkssl_espnet.tokenizer import (
    TOKENIZERS,
    build_tokenizer,
    codebook_usage,
    format_usage,
    train_autoencoder,
)

Batch = Tuple[torch.Tensor, torch.Tensor]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=sorted(TOKENIZERS), default="random")
    parser.add_argument(
        "--levels",
        default=DEFAULT_LEVELS,
        help=f"FSQ levels: a preset ({', '.join(LEVEL_PRESETS)}) or a list such as 8,5,5,5",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data_dir", type=Path, help="Kaldi-style dir with wav.scp (<uttid> <path>)")
    src.add_argument("--feats_scp", type=Path, help="kaldiio scp or ark of 80-dim raw fbank")
    parser.add_argument(
        "--stats_file", type=Path, help="ESPnet feats_stats.npz for global MVN (default: computed)"
    )
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10, help="trained kind only")
    parser.add_argument("--batch_size", type=int, default=256, help="stacked frames per step")
    parser.add_argument("--lr", type=float, default=2.0e-3)
    parser.add_argument("--hidden", type=int, default=256, help="trained kind only")
    parser.add_argument("--group_size", type=int, default=3, help="for the usage report")
    parser.add_argument("--max_utts", type=int, default=None, help="use the first N utterances")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--num_threads", type=int, default=1, help="CPU threads (the models are tiny: 1 is best)"
    )
    return parser


def read_wav_scp(path: Path) -> List[Tuple[str, str]]:
    """``<uttid> <path>`` lines of a wav.scp (piped commands are not supported)."""
    if not path.is_file():
        raise FileNotFoundError(f"wav.scp not found: {path}")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[1].rstrip().endswith("|"):
            raise ValueError(
                f"{path}:{lineno}: expected '<uttid> <audio path>' (no pipes), got {line!r}"
            )
        entries.append((parts[0], parts[1].strip()))
    if not entries:
        raise ValueError(f"{path} lists no utterances")
    return entries


def iter_features(args: argparse.Namespace) -> Iterator[Tuple[str, torch.Tensor]]:
    """Raw fbank (T, 80) per utterance, from a wav.scp or a feats scp/ark."""
    if args.data_dir is not None:
        scp = args.data_dir / "wav.scp"
        for uttid, wav in read_wav_scp(scp):
            try:
                yield uttid, kaldi_fbank(*load_wav(wav, SAMPLE_RATE))
            except (ValueError, FileNotFoundError) as e:
                raise ValueError(f"{scp}: utterance '{uttid}': {e}") from e
        return
    import kaldiio

    path = args.feats_scp
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    uttid = "<first>"
    try:
        if path.suffix == ".ark":
            for uttid, mat in kaldiio.load_ark(str(path)):
                yield uttid, torch.tensor(mat, dtype=torch.float32)
        else:
            loader = kaldiio.load_scp(str(path))
            for uttid in loader:
                yield uttid, torch.tensor(loader[uttid], dtype=torch.float32)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"utterance {uttid} ({path}): cannot read features: {e}") from e
    except Exception as e:  # kaldiio raises many types on corrupt input
        raise ValueError(f"utterance {uttid} ({path}): cannot read features: {e!r}") from e


def load_features(args: argparse.Namespace) -> List[Tuple[str, torch.Tensor]]:
    """The first ``--max_utts`` utterances' raw fbank, checked to be (T, 80)."""
    source = args.data_dir if args.data_dir is not None else args.feats_scp
    utts: List[Tuple[str, torch.Tensor]] = []
    if args.max_utts is not None and args.max_utts < 1:
        raise ValueError(f"--max_utts must be >= 1, got {args.max_utts}")
    with tqdm(desc="fbank", unit="utt", total=args.max_utts) as bar:
        for uttid, feats in iter_features(args):
            if feats.dim() != 2 or feats.shape[1] != 80:
                raise ValueError(
                    f"utterance {uttid} ({source}): expected (T, 80) fbank, "
                    f"got shape {tuple(feats.shape)}"
                )
            utts.append((uttid, feats))
            bar.update(1)
            if args.max_utts is not None and len(utts) >= args.max_utts:
                break
    if not utts:
        raise ValueError(f"no utterances were read from {source}")
    return utts


def make_batches(feats: Sequence[torch.Tensor], utts_per_batch: int = 16) -> List[Batch]:
    """Pad consecutive utterances into ``(feats (B, T, 80), lens (B,))`` batches."""
    batches = []
    for i in range(0, len(feats), utts_per_batch):
        chunk = feats[i : i + utts_per_batch]
        lens = torch.tensor([f.shape[0] for f in chunk])
        batches.append((torch.nn.utils.rnn.pad_sequence(list(chunk), batch_first=True), lens))
    return batches


def run(args: argparse.Namespace) -> dict:
    start = time.time()
    utts = load_features(args)
    if args.stats_file is not None:
        stats, source = load_mvn_stats(args.stats_file), str(args.stats_file)
    else:
        stats, source = compute_mvn_stats(f for _, f in utts), "computed by tokenizer_train"
    batches = make_batches([apply_mvn(f, stats) for _, f in utts])

    conf = {"levels": args.levels, "seed": args.seed}
    if args.kind == "trained":
        conf["hidden"] = args.hidden
    tokenizer = build_tokenizer(args.kind, **conf).to(args.device)
    tokenizer.set_mvn(stats, source)
    report = {"kind": args.kind, "levels": tokenizer.levels, "num_utts": len(utts)}
    if args.kind == "random":
        tokenizer.fit(batches)
    else:
        report["reconstruction_mse"] = train_autoencoder(
            tokenizer, batches, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, device=args.device,
        )  # fmt: skip

    indices, groups = [], []
    for feats, lens in batches:
        idx, out_lens = tokenizer(feats.to(args.device), lens)
        grp, _ = tokenizer.group_targets(feats.to(args.device), lens, args.group_size)
        indices.append(idx.flatten().cpu())
        groups.append(grp.reshape(-1, grp.shape[-1]).cpu())
    usage = codebook_usage(
        torch.cat(indices), torch.cat(groups), tokenizer.fsq.group_sizes(args.group_size)
    )
    report.update(usage)
    tokenizer.save(args.out_dir)
    report["seconds"] = round(time.time() - start, 2)
    atomic_write_text(args.out_dir / "usage.json", json.dumps(report, indent=2) + "\n")

    print(f"tokenizer {args.kind} levels {tokenizer.levels} -> {args.out_dir}")
    print(format_usage(usage))
    if "reconstruction_mse" in report:
        print(f"reconstruction error (MSE per value): {report['reconstruction_mse']:.4f}")
    return report


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(max(1, args.num_threads))
    try:
        run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"tokenizer_train: error: {e}")


if __name__ == "__main__":
    main()

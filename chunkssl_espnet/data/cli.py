"""Thin command line over the data functions: ``python -m chunkssl_espnet.data <command>``.

Each sub-command maps its options one to one onto a library function; all logic lives there.
Errors a user can cause (bad path, malformed file) print one line ``error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, List, Optional

from chunkssl_espnet.data import datadir, scoring, tokens


def _validate(a: argparse.Namespace) -> object:
    n = datadir.validate_data_dir(a.data_dir, need_text=not a.no_text, check_audio=not a.no_audio)
    return f"{a.data_dir}: OK, {n} utterances"


def _fix(a: argparse.Namespace) -> object:
    return f"{a.data_dir}: {datadir.fix_data_dir(a.data_dir)} utterances kept"


def _split_scp(a: argparse.Namespace) -> object:
    return [str(p) for p in datadir.split_scp(a.scp, a.nj, a.out_dir)]


def _subset(a: argparse.Namespace) -> object:
    ids = None
    if a.ids is not None:
        ids = [line.split()[0] for line in Path(a.ids).read_text().splitlines() if line.strip()]
    return datadir.subset_data_dir(a.src, a.dst, ids=ids, n=a.n)


def _speed_perturb(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data.speed_perturb import speed_perturb_data_dir

    d = speed_perturb_data_dir(a.src, a.dst, a.factors, a.audio_dir, a.nj)  # validates d
    return f"{d}: OK, {len(datadir.read_scp(d / 'utt2spk'))} utterances"


def _utt2num_samples(a: argparse.Namespace) -> object:
    return str(datadir.write_utt2num_samples(a.data_dir))


def _spm_train(a: argparse.Namespace) -> object:
    model = tokens.train_sentencepiece(a.input, a.model_prefix, a.vocab_size, a.model_type,
                                       a.character_coverage, has_uttids=a.has_uttids)
    if a.token_list:
        tokens.write_token_list(model, a.token_list)
    return str(model)


def _token_list(a: argparse.Namespace) -> object:
    if a.kind != "dummy" and a.source is None:
        raise ValueError(f"token-list {a.kind} needs --source (the .model or text file)")
    if a.kind == "bpe":
        return len(tokens.write_token_list(a.source, a.out))
    if a.kind == "char":
        return len(tokens.write_char_token_list(a.source, a.out))
    return len(tokens.write_dummy_token_list(a.out, a.num_tokens))


def _score_wer(a: argparse.Namespace) -> object:
    return scoring.score_wer(a.ref, a.hyp, unit=a.unit)


def _score_bleu(a: argparse.Namespace) -> object:
    return scoring.score_bleu(a.ref, a.hyp, tokenize=a.tokenize)


def _librispeech(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data.librispeech import prepare_librispeech

    return {k: str(v) for k, v in prepare_librispeech(a.root, a.out_dir, a.subsets).items()}


def _librilight(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data.librilight import prepare_librilight

    return str(prepare_librilight(a.root, a.out_dir, a.subset, a.max_segment_s))


def _must_c(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data.must_c import prepare_must_c

    return {k: str(v) for k, v in prepare_must_c(a.root, a.out_dir, a.lang_pair, a.splits).items()}


def _mini(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data import mini_flite

    fn = mini_flite.generate_mini_st if a.command == "mini-st" else mini_flite.generate_mini_flite
    dirs = fn(a.audio_dir, a.data_dir, a.n_train, a.n_valid, a.n_test, a.voices, a.test_voice,
              a.seed, a.nj)
    return {k: str(v) for k, v in dirs.items()}


def _pool_voices(names: List[str]) -> List[str]:
    """``--pool-voices``: voice names, ``espeak`` standing for every espeak-ng voice."""
    from chunkssl_espnet.data.voices import ESPEAK_VOICES

    return [v for n in names for v in (ESPEAK_VOICES if n == "espeak" else [n])]


def _mini_asr(a: argparse.Namespace) -> object:
    from chunkssl_espnet.data.mini_asr import generate_mini_asr

    dirs = generate_mini_asr(a.audio_dir, a.data_dir, a.n_labelled, a.n_pool, a.n_valid,
                             a.n_test, a.vocab_size, a.train_voices, a.valid_unseen_voice,
                             a.test_unseen_voice, a.seed, a.nj, a.perturb,
                             _pool_voices(a.pool_voices), a.pool_voice_share)
    return {k: str(v) for k, v in dirs.items()}


def build_parser() -> argparse.ArgumentParser:
    """One sub-command per library function; ``set_defaults(run=...)`` names the function."""
    parser = argparse.ArgumentParser(prog="python -m chunkssl_espnet.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, run: Callable[[argparse.Namespace], object], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = add("validate", _validate, "check a Kaldi-style data directory")
    p.add_argument("data_dir")
    p.add_argument("--no-text", action="store_true", help="unlabelled data: no text file needed")
    p.add_argument("--no-audio", action="store_true", help="do not check that audio files exist")
    add("fix", _fix, "keep common ids, sort, rebuild spk2utt").add_argument("data_dir")
    p = add("split-scp", _split_scp, "split an scp file into nj parts (wav.scp -> wav.1.scp ...)")
    p.add_argument("scp")
    p.add_argument("nj", type=int)
    p.add_argument("out_dir")
    p = add("subset", _subset, "copy a subset of a data directory")
    p.add_argument("src")
    p.add_argument("dst")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--n", type=int, help="number of evenly spaced utterances")
    g.add_argument("--ids", help="file whose first column lists the utterance ids")
    p = add("speed-perturb", _speed_perturb, "copy a labelled data directory at several sox "
            "speeds (Kaldi's speed perturbation: sp0.9-<utt> ...)")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1])
    p.add_argument("--audio-dir", required=True, help="where the perturbed wav files go")
    p.add_argument("--nj", type=int, default=2)
    add("utt2num-samples", _utt2num_samples, "write utt2num_samples from audio headers"
        ).add_argument("data_dir")
    p = add("spm-train", _spm_train, "train a SentencePiece model")
    p.add_argument("--input", required=True)
    p.add_argument("--model-prefix", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--character-coverage", type=float, default=1.0)
    p.add_argument("--has-uttids", action="store_true", help="input is a Kaldi text file")
    p.add_argument("--token-list", help="also write ESPnet's token list here")
    p = add("token-list", _token_list, "write an ESPnet token list (bpe model, char or dummy)")
    p.add_argument("kind", choices=["bpe", "char", "dummy"])
    p.add_argument("out")
    p.add_argument("--source", help="bpe: the .model file; char: the Kaldi text file")
    p.add_argument("--num-tokens", type=int, default=0, help="dummy: placeholder count")
    for name, run in (("score-wer", _score_wer), ("score-bleu", _score_bleu)):
        p = add(name, run, f"{name[6:].upper()} of Kaldi-style hypothesis vs reference files")
        p.add_argument("ref")
        p.add_argument("hyp")
    sub.choices["score-wer"].add_argument("--unit", default="word", choices=["word", "char"])
    sub.choices["score-bleu"].add_argument("--tokenize", default="13a")
    p = add("librispeech", _librispeech, "prepare LibriSpeech subsets")
    p.add_argument("root")
    p.add_argument("out_dir")
    p.add_argument("subsets", nargs="+")
    p = add("librilight", _librilight, "prepare a Libri-Light subset (no text)")
    p.add_argument("root")
    p.add_argument("out_dir")
    p.add_argument("--subset", default="small")
    p.add_argument("--max-segment-s", type=float, default=None)
    p = add("must-c", _must_c, "prepare MuST-C splits")
    p.add_argument("root")
    p.add_argument("out_dir")
    p.add_argument("--lang-pair", default="en-de")
    p.add_argument("--splits", nargs="+", default=["train", "dev", "tst-COMMON", "tst-HE"])
    for name in ("mini-flite", "mini-st"):
        p = add(name, _mini, f"synthesise the {name} corpus with flite")
        p.add_argument("audio_dir")
        p.add_argument("data_dir")
        p.add_argument("--n-train", type=int, default=2000)
        p.add_argument("--n-valid", type=int, default=150)
        p.add_argument("--n-test", type=int, default=200)
        p.add_argument("--voices", nargs="+", default=["slt", "rms", "awb", "kal16"])
        p.add_argument("--test-voice", default="awb")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--nj", type=int, default=2)
    p = add("mini-asr", _mini_asr, "synthesise the mini ASR corpus (labelled set, unlabelled "
            "pool, seen and unseen-voice validation and test sets)")
    p.add_argument("audio_dir")
    p.add_argument("data_dir")
    p.add_argument("--n-labelled", type=int, default=600)
    p.add_argument("--n-pool", type=int, default=3000)
    p.add_argument("--n-valid", type=int, default=100)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--train-voices", nargs="+", default=["slt", "awb", "kal16"])
    p.add_argument("--valid-unseen-voice", default="ked")
    p.add_argument("--test-unseen-voice", default="rms")
    p.add_argument("--perturb", default="all", choices=["all", "pool", "none"],
                   help="which training-voice renditions get a sox speed and pitch perturbation")
    p.add_argument("--pool-voices", nargs="*", default=[],
                   help="speakers heard only in the unlabelled pool ('espeak': all espeak-ng "
                        "voices of chunkssl_espnet.data.voices.ESPEAK_VOICES)")
    p.add_argument("--pool-voice-share", type=float, default=0.5,
                   help="share of the pool's extra renditions spoken by a pool-only voice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=2)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one sub-command; print its result (JSON for dicts and lists)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if isinstance(result, (dict, list)):
        result = json.dumps(result, indent=1, ensure_ascii=False)
    print(result)
    return 0

"""The mini ASR corpus of egs2/mini_flite/asr1, built to ask whether pre-training helps.

Text: natural English sentences of 4 to 14 words, from Debian ``fortunes`` (files without
offensive content) and the English side of FreeDict's en-de examples, kept when every word is one
of the ``vocab_size`` most frequent words of that collection. The sentences are shuffled and cut
into three disjoint groups:

* *labelled* sentences (one utterance each: the fine-tuning set ``train``);
* *evaluation* sentences, only those whose words all occur in the labelled transcripts (a closed
  vocabulary, as in Resource Management: test errors are recognition errors, not words never
  heard), split into ``valid`` and ``test`` sentences;
* the rest, which is spoken only in the unlabelled pool.

Speakers: the training voices (default flite ``slt``, ``awb`` and ``kal16``) with varied prosody
and a sox speed and pitch perturbation per utterance (:mod:`chunkssl_espnet.data.voices`). Two
voices never appear in any training data: one for ``valid_unseen`` (festival ``ked``) and another
for ``test_unseen`` (flite ``rms``), so that choices made for unseen voices never look at a test
set. Each held-out voice shares its synthesis method with a training voice (``ked`` and ``kal16``
are diphone voices; ``rms``, ``slt`` and ``awb`` are statistical parametric ones): the held-out
speakers differ by the speaker, not by a synthesiser the models never heard.

Data directories under ``data_dir``:

* ``train``: labelled fine-tuning set; ``pool``: unlabelled pre-training pool, ``train`` plus
  more renditions of the labelled and pool-only sentences by other (virtual) speakers, and
  optionally by speakers heard nowhere else (``pool_voices``, e.g. espeak-ng's) (a ``text`` file
  is written for inspection; SSL never reads it);
* ``valid_seen`` / ``test_seen``: new sentences, training voices (perturbed as in training);
* ``valid_unseen`` / ``test_unseen``: the same sentences, each by its held-out voice (prosody
  varied, no sox perturbation).

``lm_text/text``: the text-only corpus of the language model, every selected sentence except the
evaluation ones (the labelled and the pool-only sentences), as LibriSpeech ships an LM corpus
beside its audio. ``corpus_info.json`` records sizes, hours, vocabulary and the OOV rates of every
set against the labelled transcripts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import (
    atomic_write_text,
    read_scp,
    validate_data_dir,
    write_data_dir,
    write_utt2num_samples,
)
from chunkssl_espnet.data.mini_flite import (
    DURATION_STRETCH,
    F0_MEAN,
    FORTUNE_DIR,
    FREEDICT_DICT,
    load_fortune_sentences,
    load_freedict_pairs,
)
from chunkssl_espnet.data.textnorm import librispeech_style
from chunkssl_espnet.data.voices import FESTIVAL_VOICES, Rendition, render_all, wav_path

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

#: Fortune files without offensive content (Debian's fortunes and fortunes-min).
FORTUNE_FILES = ("fortunes", "wisdom", "literature", "people", "work", "education", "science",
                 "food", "pets", "kids", "art", "humorists", "platitudes", "miscellaneous",
                 "riddles", "goedel", "sports", "tao", "magic", "paradoxum", "computers",
                 "songs-poems", "law", "medicine", "news")
TRAIN_VOICES = ("slt", "awb", "kal16")
SPEEDS = (0.9, 1.0, 1.1)
PITCH_CENTS = (-300.0, 300.0)
SPLITS = ("train", "pool", "valid_seen", "valid_unseen", "test_seen", "test_unseen")


@dataclasses.dataclass(frozen=True)
class Sentences:
    """The three disjoint sentence groups (normalised transcripts)."""

    labelled: List[str]
    valid: List[str]
    test: List[str]
    pool_only: List[str]
    vocabulary: List[str]


def closed_vocabulary_sentences(
    sentences: Sequence[str],
    vocab_size: int,
    n_labelled: int,
    n_valid: int,
    n_test: int,
    seed: int = 0,
    min_words: int = 4,
    max_words: int = 14,
) -> Sentences:
    """Select and split sentences (see the module docstring).

    Raises:
        ValueError: too few sentences for the sizes asked.
    """
    kept = [s for s in dict.fromkeys(sentences) if min_words <= len(s.split()) <= max_words]
    counts = Counter(w for s in kept for w in s.split())
    vocab = {w for w, _ in counts.most_common(vocab_size)}
    kept = [s for s in kept if all(w in vocab for w in s.split())]
    random.Random(seed).shuffle(kept)
    if len(kept) < n_labelled:
        raise ValueError(f"{len(kept)} sentences within the {vocab_size} most frequent words; "
                         f"{n_labelled} labelled ones asked: raise vocab_size")
    labelled = kept[:n_labelled]
    heard = {w for s in labelled for w in s.split()}
    covered = [s for s in kept[n_labelled:] if all(w in heard for w in s.split())]
    if len(covered) < n_valid + n_test:
        raise ValueError(f"only {len(covered)} sentences use only words of the {n_labelled} "
                         f"labelled ones; {n_valid} + {n_test} asked: raise n_labelled or "
                         "vocab_size, or ask for fewer")
    evaluation = set(covered[: n_valid + n_test])
    return Sentences(
        labelled=labelled,
        valid=covered[:n_valid],
        test=covered[n_valid : n_valid + n_test],
        pool_only=[s for s in kept[n_labelled:] if s not in evaluation],
        vocabulary=sorted(heard),
    )


def _rendition(rng: random.Random, utt_id: str, voice: str, text: str, perturbed: bool
               ) -> Rendition:
    """A rendition of ``voice``: perturbed, a virtual speaker (random duration stretch, mean f0
    and sox speed and pitch); else the voice itself (its own f0, a tempo within 5%). The random
    draws are the same either way, so the switch changes no other utterance."""
    stretch = round(rng.uniform(*DURATION_STRETCH), 3)
    f0 = round(rng.uniform(*F0_MEAN), 1) if voice not in FESTIVAL_VOICES else 0.0
    speed, pitch = rng.choice(SPEEDS), float(round(rng.uniform(*PITCH_CENTS)))
    if not perturbed:
        stretch, f0, speed, pitch = round(1 + (stretch - 1) / 3, 3), 0.0, 1.0, 0.0
    return Rendition(utt_id, voice, text.capitalize(), stretch, f0, speed, pitch)


def plan_corpus(
    s: Sentences,
    n_pool: int,
    train_voices: Sequence[str] = TRAIN_VOICES,
    valid_unseen_voice: str = "ked",
    test_unseen_voice: str = "rms",
    seed: int = 0,
    perturb: str = "all",
    pool_voices: Sequence[str] = (),
    pool_voice_share: float = 0.5,
) -> Dict[str, List[Tuple[Rendition, str]]]:
    """Who says what in each split: ``{split: [(rendition, transcript)]}``, deterministic.

    The pool holds the ``train`` renditions first, then ``n_pool - len(train)`` more renditions
    cycling over the labelled and pool-only sentences (shuffled), each by a random training
    voice with its own prosody and perturbation.

    ``perturb``: which renditions of the training voices get a sox perturbation: ``all``,
    ``pool`` (only the pool's extra renditions: the labelled set and the seen evaluation sets
    keep the voices' own timbre, the unlabelled pool holds the variety) or ``none``.

    ``pool_voices``: speakers heard only in the unlabelled pool: a ``pool_voice_share`` of the
    pool's extra renditions is spoken by one of them instead (drawn from a generator of its own,
    so every other utterance of every split is the same as without them).
    """
    if perturb not in ("all", "pool", "none"):
        raise ValueError(f"perturb must be all, pool or none, got {perturb!r}")
    held = {valid_unseen_voice, test_unseen_voice}
    if held & set(train_voices) or valid_unseen_voice == test_unseen_voice:
        raise ValueError(f"the held-out voices {sorted(held)} must differ from each other and "
                         f"from the training voices {list(train_voices)}")
    if set(pool_voices) & (held | set(train_voices)):
        raise ValueError(f"the pool-only voices {sorted(pool_voices)} must differ from the "
                         f"training voices {list(train_voices)} and held-out ones {sorted(held)}")
    if not 0.0 <= pool_voice_share <= 1.0:
        raise ValueError(f"pool_voice_share must be in [0, 1], got {pool_voice_share}")
    if n_pool < len(s.labelled):
        raise ValueError(f"the pool ({n_pool}) must hold the {len(s.labelled)} labelled ones")
    rng = random.Random(seed)
    pool_rng = random.Random(f"{seed}-pool-voices")
    plan: Dict[str, List[Tuple[Rendition, str]]] = {k: [] for k in SPLITS}

    def seen(tag: str, texts: Sequence[str]) -> List[Tuple[Rendition, str]]:
        perturbed = perturb == "all" or (perturb == "pool" and tag == "p")
        out = []
        for i, text in enumerate(texts):
            voice = rng.choice(list(train_voices))
            if tag == "p" and pool_voices and pool_rng.random() < pool_voice_share:
                voice = pool_rng.choice(list(pool_voices))
            out.append((_rendition(rng, f"{voice}-{tag}{i:05d}", voice, text, perturbed),
                        text))
        return out

    plan["train"] = seen("l", s.labelled)
    extra_texts = s.labelled + s.pool_only
    order = list(range(len(extra_texts)))
    rng.shuffle(order)
    extra = [extra_texts[order[i % len(order)]] for i in range(n_pool - len(s.labelled))]
    plan["pool"] = plan["train"] + seen("p", extra)
    plan["valid_seen"] = seen("v", s.valid)
    plan["test_seen"] = seen("t", s.test)
    for split, voice, texts, tag in (("valid_unseen", valid_unseen_voice, s.valid, "v"),
                                     ("test_unseen", test_unseen_voice, s.test, "t")):
        plan[split] = [(_rendition(rng, f"{voice}-{tag}{i:05d}", voice, t, False), t)
                       for i, t in enumerate(texts)]
    return plan


def oov_rate(texts: Sequence[str], vocabulary: Sequence[str]) -> float:
    """Fraction of running words of ``texts`` outside ``vocabulary``."""
    vocab = set(vocabulary)
    words = [w for t in texts for w in t.split()]
    return sum(w not in vocab for w in words) / max(len(words), 1)


def generate_mini_asr(
    audio_dir: PathLike,
    data_dir: PathLike,
    n_labelled: int = 600,
    n_pool: int = 3000,
    n_valid: int = 100,
    n_test: int = 300,
    vocab_size: int = 1000,
    train_voices: Sequence[str] = TRAIN_VOICES,
    valid_unseen_voice: str = "ked",
    test_unseen_voice: str = "rms",
    seed: int = 0,
    n_jobs: int = 2,
    perturb: str = "all",
    pool_voices: Sequence[str] = (),
    pool_voice_share: float = 0.5,
    fortune_dir: PathLike = FORTUNE_DIR,
    dict_path: PathLike = FREEDICT_DICT,
) -> Dict[str, Path]:
    """Generate the corpus (module docstring); returns ``{split: data directory}``."""
    fortunes = load_fortune_sentences(fortune_dir, FORTUNE_FILES, min_words=4, max_words=14)
    freedict = [en for en, _ in load_freedict_pairs(dict_path)]
    texts = [librispeech_style(x) for x in fortunes + freedict]
    s = closed_vocabulary_sentences(texts, vocab_size, n_labelled, n_valid, n_test, seed)
    plan = plan_corpus(s, n_pool, train_voices, valid_unseen_voice, test_unseen_voice, seed,
                       perturb, pool_voices, pool_voice_share)
    renditions = list({r.utt_id: r for items in plan.values() for r, _ in items}.values())
    n_new = render_all(renditions, audio_dir, n_jobs)
    logger.info("mini_asr: %d utterances planned, %d synthesised", len(renditions), n_new)
    out: Dict[str, Path] = {}
    info: Dict[str, object] = {"vocabulary_size": len(s.vocabulary),
                               "vocab_size_asked": vocab_size, "seed": seed,
                               "train_voices": list(train_voices),
                               "valid_unseen_voice": valid_unseen_voice,
                               "test_unseen_voice": test_unseen_voice, "perturb": perturb,
                               "pool_voices": list(pool_voices),
                               "pool_voice_share": pool_voice_share if pool_voices else 0.0,
                               "splits": {}}
    for split, items in plan.items():
        d = write_data_dir(
            Path(data_dir) / split,
            {r.utt_id: str(wav_path(audio_dir, r).resolve()) for r, _ in items},
            {r.utt_id: r.utt_id.split("-")[0] for r, _ in items},
            texts={"text": {r.utt_id: t for r, t in items}},
        )
        write_utt2num_samples(d)
        validate_data_dir(d)
        samples = sum(int(v) for v in read_scp(d / "utt2num_samples").values())
        info["splits"][split] = {  # type: ignore[index]
            "utterances": len(items), "hours": round(samples / 16000 / 3600, 3),
            "sentences": len({t for _, t in items}),
            "voices": sorted({r.voice for r, _ in items}),
            "oov_rate": round(oov_rate([t for _, t in items], s.vocabulary), 4),
        }
        out[split] = d
    lm_text = s.labelled + s.pool_only
    atomic_write_text(Path(data_dir) / "lm_text" / "text",
                      "".join(f"lm-{i:05d} {t}\n" for i, t in enumerate(lm_text)))
    info["lm_text"] = {"sentences": len(lm_text), "words": sum(len(t.split()) for t in lm_text)}
    atomic_write_text(Path(data_dir) / "corpus_info.json", json.dumps(info, indent=1) + "\n")
    return out

"""Paired bootstrap of the relative WER gain of one system over another (Bisani and Ney, 2004).

Both systems decoded the same utterances. The test set is resampled with replacement, utterances
being the unit (errors within an utterance are not independent); in every resample both WERs are
corpus-level (total errors over total reference words), and the relative gain is
``1 - WER_a / WER_b``. The percentile interval of the resampled gains is the 95% confidence
interval; it excludes zero when system a is better (or worse) beyond the test set's sampling
noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, Union

import jiwer
import numpy as np

from chunkssl_espnet.data.scoring import align_ref_hyp

PathLike = Union[str, os.PathLike]


def utterance_errors(refs: Sequence[str], hyps: Sequence[str]) -> np.ndarray:
    """Word errors (substitutions + deletions + insertions) per utterance: (N,) int."""
    out = []
    for r, h in zip(refs, hyps):
        o = jiwer.process_words(r, h) if h.strip() else None
        out.append(len(r.split()) if o is None else o.substitutions + o.deletions + o.insertions)
    return np.asarray(out, dtype=np.int64)


@dataclass
class RelativeGain:
    """WERs (%) of systems a and b, the relative gain of a over b and its 95% interval."""

    wer_a: float
    wer_b: float
    gain: float
    low: float
    high: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {"wer_a": self.wer_a, "wer_b": self.wer_b, "gain": self.gain, "ci95": [self.low,
                self.high], "resamples": self.resamples, "excludes_zero": self.excludes_zero}


def paired_bootstrap(
    words: np.ndarray,
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
) -> RelativeGain:
    """Relative gain ``1 - WER_a / WER_b`` with its 95% percentile interval.

    Args:
        words: (N,) reference words per utterance; errors_a, errors_b: (N,) word errors.
    """
    words, errors_a, errors_b = (np.asarray(x, dtype=np.float64) for x in
                                 (words, errors_a, errors_b))
    if not (words.shape == errors_a.shape == errors_b.shape) or words.ndim != 1:
        raise ValueError("words, errors_a and errors_b must be (N,) arrays of one length")
    if words.sum() <= 0 or errors_b.sum() <= 0:
        raise ValueError("the reference has no words, or system b makes no error: no gain to "
                         "measure")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(words), size=(resamples, len(words)))
    ea, eb = errors_a[idx].sum(1), errors_b[idx].sum(1)
    gains = 1.0 - ea / np.maximum(eb, 1e-12)
    low, high = np.percentile(gains, [2.5, 97.5])
    wa, wb = errors_a.sum() / words.sum(), errors_b.sum() / words.sum()
    return RelativeGain(float(100 * wa), float(100 * wb), float(1 - wa / wb), float(low),
                        float(high), resamples)


def bootstrap_files(
    ref_file: PathLike, hyp_a: PathLike, hyp_b: PathLike, resamples: int = 2000, seed: int = 0
) -> RelativeGain:
    """:func:`paired_bootstrap` of two Kaldi-style hypothesis files against one reference."""
    ids, refs, a, _, _ = align_ref_hyp(ref_file, hyp_a)
    _, _, b, _, _ = align_ref_hyp(ref_file, hyp_b)
    words = np.array([len(r.split()) for r in refs])
    return paired_bootstrap(words, utterance_errors(refs, a), utterance_errors(refs, b),
                            resamples, seed)


def format_gain(g: RelativeGain) -> str:
    """``-12.3% [-18.0, -6.1]``-style cell: the relative WER change of a against b (negative =
    a is better) with its 95% interval, the way result tables state it."""
    return f"{-100 * g.gain:+.1f}% [{-100 * g.high:+.1f}, {-100 * g.low:+.1f}]"


__all__: List[str] = ["RelativeGain", "paired_bootstrap", "bootstrap_files", "format_gain",
                      "utterance_errors"]

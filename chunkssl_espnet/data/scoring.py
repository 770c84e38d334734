"""Scoring without sclite or Moses: WER/CER (jiwer), BLEU (sacrebleu), average lagging.

Inputs are Kaldi-style ``<utt-id> <text>`` files. A reference utterance without a hypothesis is
scored as all deletions (an empty hypothesis) and listed in ``missing``, never dropped; a
hypothesis without a reference cannot be scored and is listed in ``extra``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import DataDirError, atomic_write_text, read_scp

PathLike = Union[str, os.PathLike]
Number = Union[int, float]
logger = logging.getLogger(__name__)


def align_ref_hyp(
    ref_file: PathLike, hyp_file: PathLike
) -> Tuple[List[str], List[str], List[str], List[str], List[str]]:
    """Pair references and hypotheses by utterance id (reference order).

    Returns:
        ``(ids, refs, hyps, missing, extra)``: a missing hypothesis becomes ``""``; ``extra`` are
        hypothesis ids without a reference.

    Raises:
        DataDirError: a reference is empty (it cannot be scored).
    """
    ref, hyp = read_scp(ref_file), read_scp(hyp_file)
    for utt, text in ref.items():
        if not text.strip():
            raise DataDirError(f"{ref_file}: empty reference for utterance '{utt}'")
    ids = list(ref)
    missing = [u for u in ids if u not in hyp]
    extra = [u for u in hyp if u not in ref]
    if missing:
        logger.warning("%s: %d reference utterances have no hypothesis (scored as deletions), "
                       "e.g. '%s'", hyp_file, len(missing), missing[0])
    if extra:
        logger.warning("%s: %d hypotheses have no reference (not scored), e.g. '%s'",
                       hyp_file, len(extra), extra[0])
    return ids, [ref[u] for u in ids], [hyp.get(u, "") for u in ids], missing, extra


def _tokens(text: str, unit: str) -> List[str]:
    """Words, or characters with each word boundary as a ``<space>`` token (as sclite ``-c``)."""
    words = text.split()
    if unit == "word":
        return words
    return ["<space>" if c == " " else c for c in " ".join(words)]


def score_wer(ref_file: PathLike, hyp_file: PathLike, unit: str = "word") -> Dict[str, object]:
    """Word (or character) error rate of ``hyp_file`` against ``ref_file`` with jiwer.

    Args:
        ref_file, hyp_file: Kaldi-style ``<utt-id> <text>`` files.
        unit: ``word`` (WER) or ``char`` (CER; spaces count as characters, like sclite ``-c``).

    Returns:
        ``{"wer": percent, "num_utts", "num_ref": reference tokens, "hits", "substitutions",
        "deletions", "insertions", "sentence_errors", "ser": percent, "missing": ids,
        "extra": ids}``.
    """
    import jiwer

    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', not {unit!r}")
    ids, refs, hyps, missing, extra = align_ref_hyp(ref_file, hyp_file)
    hits = sub = dele = ins = sent_err = 0
    for r, h in zip(refs, hyps):
        ref_toks, hyp_toks = _tokens(r, unit), _tokens(h, unit)
        if not hyp_toks:  # jiwer cannot align an empty hypothesis: it is all deletions
            s, d, i, c = 0, len(ref_toks), 0, 0
        else:
            # Join tokens with spaces so jiwer (which splits on whitespace) sees our units.
            out = jiwer.process_words(" ".join(ref_toks), " ".join(hyp_toks))
            s, d, i, c = out.substitutions, out.deletions, out.insertions, out.hits
        hits, sub, dele, ins = hits + c, sub + s, dele + d, ins + i
        sent_err += int(s + d + i > 0)
    num_ref = hits + sub + dele
    return {
        "wer": 100.0 * (sub + dele + ins) / num_ref,
        "num_utts": len(ids),
        "num_ref": num_ref,
        "hits": hits,
        "substitutions": sub,
        "deletions": dele,
        "insertions": ins,
        "sentence_errors": sent_err,
        "ser": 100.0 * sent_err / len(ids),
        "missing": missing,
        "extra": extra,
    }


def score_bleu(
    ref_file: PathLike, hyp_file: PathLike, tokenize: str = "13a", lowercase: bool = False
) -> Dict[str, object]:
    """Corpus BLEU and chrF of ``hyp_file`` against one reference per utterance, with sacrebleu.

    References come from the local file (no download). Missing hypotheses score as empty strings.

    Returns:
        ``{"bleu", "chrf", "signature", "num_utts", "missing", "extra"}``.
    """
    import sacrebleu

    _, refs, hyps, missing, extra = align_ref_hyp(ref_file, hyp_file)
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hyps, [refs])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "signature": str(bleu.get_signature()),
        "num_utts": len(refs),
        "missing": missing,
        "extra": extra,
    }


def average_lagging(
    delays: Sequence[Number], source_length: Number, target_length: Optional[Number] = None
) -> float:
    r"""Average lagging (AL) of one sentence, as SimulEval's ``ALScorer`` computes it.

    With delays :math:`d_i` (source consumed, e.g. in ms, when target token :math:`i` was
    written), source length :math:`|X|` and target length :math:`|Y|`:

    .. math::

        AL = \frac{1}{\tau} \sum_{i=1}^{\tau} \Big(d_i - \frac{i - 1}{\gamma}\Big),
        \quad \gamma = \frac{|Y|}{|X|},
        \quad \tau = \min\{i : d_i \ge |X|\}

    (:math:`\tau = |Y|` when no delay reaches :math:`|X|`). If the first delay exceeds
    :math:`|X|`, AL is that delay. Defined by Ma et al., STACL (arXiv 1810.08398); this follows
    SimulEval's implementation (facebookresearch/SimulEval,
    ``simuleval/evaluator/scorers/latency_scorer.py``), where :math:`|Y|` is the reference length
    when given (``target_length``) and the hypothesis length ``len(delays)`` otherwise. A corpus AL
    is the mean over sentences.
    """
    if not delays:
        raise ValueError("average_lagging: empty delays (no target token was written)")
    if source_length <= 0:
        raise ValueError(f"average_lagging: source_length must be > 0, not {source_length}")
    tgt_len = len(delays) if target_length is None else target_length
    if tgt_len <= 0:
        raise ValueError(f"average_lagging: target_length must be > 0, not {tgt_len}")
    if delays[0] > source_length:
        return float(delays[0])
    gamma = tgt_len / source_length
    total, tau = 0.0, 0
    for i_minus_1, d in enumerate(delays):
        total += d - i_minus_1 / gamma
        tau = i_minus_1 + 1
        if d >= source_length:
            break
    return total / tau


def word_delays(
    tokens: Sequence[str], delays: Sequence[Number], token_type: str = "bpe"
) -> List[float]:
    """Per-token delays merged into per-word delays, for a latency measured in words.

    A word's delay is that of its *last* token: once that token is committed the whole word is
    in the output, even though only the next word's first token (or the end) shows that it was
    the last. (A word-level agent that holds a word back until then would report later
    delays.) Words are counted as ESPnet's ``tokens2text`` writes them, so there are as many
    delays as ``text.split()`` has words; boundary-only tokens (a lone ``▁``, ``<space>``) carry
    no word.

    Args:
        tokens: (N,) committed tokens, e.g. ``["▁the", "▁ca", "t"]``.
        delays: (N,) source read (ms) when each token was committed; non-decreasing.
        token_type: ``bpe``, ``char`` or ``word`` (ESPnet's ``--token_type``).

    Returns:
        (W,) the delay of each word: ``[d("▁the"), d("t")]`` above.
    """
    if token_type not in ("bpe", "char", "word"):
        raise ValueError(f"word_delays: token_type {token_type!r} is not bpe, char or word")
    if len(tokens) != len(delays):
        raise ValueError(f"word_delays: {len(tokens)} tokens but {len(delays)} delays")
    out: List[float] = []
    new_word = True
    for tok, d in zip(tokens, delays):
        if token_type == "bpe":  # SentencePiece: "▁" starts a word
            starts, text = tok.startswith("▁"), tok.replace("▁", "")
        elif token_type == "char":  # ESPnet's char tokenizer: "<space>" between words
            starts, text = tok == "<space>", "" if tok == "<space>" else tok
        else:
            starts, text = True, tok
        new_word = new_word or starts
        if not text:
            continue  # a boundary only ("▁", "<space>"): the next token starts the word
        if new_word:
            out.append(float(d))
            new_word = False
        else:
            out[-1] = float(d)
    return out


def _cell(value: object) -> str:
    """Markdown cell: floats with two decimals, ``|`` escaped."""
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def write_results_table(
    rows: Sequence[Mapping[str, object]],
    path: PathLike,
    columns: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> Path:
    """Write ``rows`` as a markdown table (one column per key, first-seen order), atomically.

    Args:
        rows: one mapping per result line, e.g. ``{"model": "chunk ssl", "test WER": 12.3}``.
        path: output ``.md`` file.
        columns: column order (default: keys in order of first appearance).
        title: optional ``## title`` line above the table.
    """
    if not rows:
        raise ValueError(f"{path}: no result rows to write")
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"## {title}\n\n"] if title else []
    lines.append("| " + " | ".join(columns) + " |\n")
    lines.append("|" + "|".join("---" for _ in columns) + "|\n")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |\n")
    return atomic_write_text(path, "".join(lines))

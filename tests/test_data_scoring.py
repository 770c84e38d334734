"""Scoring against hand-computed values: WER with a missing hypothesis, AL, BLEU, results table."""

from pathlib import Path

import pytest

from chunkssl_espnet.data.datadir import DataDirError
from chunkssl_espnet.data.scoring import (
    average_lagging,
    score_bleu,
    score_wer,
    word_delays,
    write_results_table,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_wer_counts_missing_hypothesis_as_deletions(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref", "u1 A B C D\nu2 E F G\nu3 H I\n")
    hyp = write(tmp_path / "hyp", "u1 A X C D E\nu2 E G\nu9 Z\n")
    # u1: B->X substitution + inserted E; u2: F deleted; u3 missing: H, I deleted. N = 9.
    r = score_wer(ref, hyp)
    assert (r["substitutions"], r["deletions"], r["insertions"], r["hits"]) == (1, 3, 1, 5)
    assert r["num_ref"] == 9 and r["num_utts"] == 3
    assert r["wer"] == pytest.approx(100 * 5 / 9)
    assert r["missing"] == ["u3"] and r["extra"] == ["u9"]
    assert r["sentence_errors"] == 3


def test_cer_and_empty_reference(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref", "u1 AB C\n")
    r = score_wer(ref, write(tmp_path / "hyp", "u1 AB D\n"), unit="char")
    assert (r["num_ref"], r["substitutions"]) == (4, 1)  # "A", "B", " ", "C"
    with pytest.raises(DataDirError, match="empty reference for utterance 'u2'"):
        score_wer(write(tmp_path / "bad", "u1 A\nu2\n"), ref)


def test_average_lagging_by_hand() -> None:
    # |X| = 1000 ms, |Y| = 4, so (i - 1) / gamma = 0, 250, 500; tau = 3 (first d_i >= |X|).
    assert average_lagging([200, 400, 1000, 1000], 1000) == pytest.approx((200 + 150 + 500) / 3)
    # With the reference length |Y| = 2: (i - 1) / gamma = 0, 500, 1000.
    assert average_lagging([200, 400, 1000, 1000], 1000, 2) == pytest.approx((200 - 100 + 0) / 3)
    # wait-3 on 5 source and 5 target words has AL = 3.
    assert average_lagging([3, 4, 5, 5, 5], 5) == pytest.approx(3.0)
    assert average_lagging([1200, 1300], 1000) == 1200  # first delay beyond the source
    with pytest.raises(ValueError, match="empty delays"):
        average_lagging([], 1000)


def test_word_delays_by_hand() -> None:
    # SentencePiece: a word ends where the next "▁" piece starts; a lone "▁" carries no word.
    pieces = ["▁the", "▁ca", "t", "▁", "7", "▁sat"]
    assert word_delays(pieces, [10, 20, 30, 40, 50, 60], "bpe") == [10, 30, 50, 60]
    chars = ["t", "h", "e", "<space>", "c", "a", "t", "<space>"]
    assert word_delays(chars, [1, 2, 3, 4, 5, 6, 7, 8], "char") == [3, 7]
    assert word_delays(["the", "cat"], [5, 9], "word") == [5, 9]
    assert word_delays([], [], "bpe") == []
    with pytest.raises(ValueError, match="2 tokens but 1 delays"):
        word_delays(["▁a", "b"], [1], "bpe")
    with pytest.raises(ValueError, match="phn"):
        word_delays(["a"], [1], "phn")


def test_word_average_lagging_equals_simuleval(tmp_path: Path, librivox_dir: Path) -> None:
    """Word delays of real SentencePiece pieces, one per word, and the AL of those delays is
    SimulEval's own ALScorer's (latency unit word, with and without the reference length)."""
    import json
    import random

    import sentencepiece as spm
    from simuleval.evaluator.instance import LogInstance
    from simuleval.evaluator.scorers.latency_scorer import ALScorer

    lines = [ln.rsplit("(", 1)[0].replace("<s>", "").replace("</s>", "").strip()
             for ln in (librivox_dir / "transcription").read_text().splitlines()]
    (tmp_path / "text").write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "text"), model_prefix=str(tmp_path / "m"),
                                   vocab_size=60, model_type="unigram")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    rng = random.Random(0)
    for k, text in enumerate(lines):
        pieces = sp.encode(text, out_type=str)
        assert len(pieces) > len(text.split())  # sub-word units: the bug's mismatch
        source_ms = 1000.0 * (k + 2)
        delays = sorted(rng.uniform(0, source_ms * 1.1) for _ in pieces)
        words = word_delays(pieces, delays, "bpe")
        assert len(words) == len(sp.decode(pieces).split())
        for reference in (text, " ".join(text.split()[:-2])):
            ins = LogInstance(json.dumps({"index": k, "delays": words, "reference": reference,
                                          "source_length": source_ms, "prediction": text}))
            ref_len = len(reference.split())
            assert average_lagging(words, source_ms, ref_len) == pytest.approx(
                ALScorer().compute(ins))
            assert average_lagging(words, source_ms) == pytest.approx(
                ALScorer(use_ref_len=False).compute(ins))


def test_bleu(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref", "u1 the cat sat on the mat\nu2 a dog ran in the park\n")
    assert score_bleu(ref, ref)["bleu"] == pytest.approx(100.0)
    r = score_bleu(ref, write(tmp_path / "hyp", "u1 the cat sat on the mat\n"))
    assert r["missing"] == ["u2"] and 0 < r["bleu"] < 100
    assert "13a" in r["signature"]


def test_results_table(tmp_path: Path) -> None:
    rows = [{"model": "scratch", "WER": 12.345}, {"model": "ssl | fsq", "WER": 9.0, "AL": 320}]
    path = write_results_table(rows, tmp_path / "RESULTS.md", title="mini")
    assert path.read_text() == (
        "## mini\n\n| model | WER | AL |\n|---|---|---|\n| scratch | 12.35 |  |\n"
        "| ssl \\| fsq | 9.00 | 320 |\n"
    )

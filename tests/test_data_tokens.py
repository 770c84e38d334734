"""SentencePiece training and ESPnet token lists (<blank>, <unk>, ..., <sos/eos>)."""

from pathlib import Path

import pytest

from chunkssl_espnet.data.tokens import (
    train_sentencepiece,
    write_char_token_list,
    write_dummy_token_list,
    write_token_list,
)

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


def kaldi_text(tmp_path: Path) -> Path:
    lines = [f"utt{i:03d} " + " ".join(WORDS[i % 7: i % 7 + 6]).upper() for i in range(60)]
    path = tmp_path / "text"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sentencepiece_token_list(tmp_path: Path) -> None:
    model = train_sentencepiece(kaldi_text(tmp_path), tmp_path / "bpe", 25, has_uttids=True)
    assert model.is_file() and (tmp_path / "bpe.vocab").is_file()
    toks = write_token_list(model, tmp_path / "tokens.txt")
    assert toks[:2] == ["<blank>", "<unk>"] and toks[-1] == "<sos/eos>"
    assert len(toks) == 25 - 3 + 3  # minus <unk> <s> </s>, plus <blank> <unk> <sos/eos>
    assert (tmp_path / "tokens.txt").read_text().split("\n")[:-1] == toks
    assert "utt000" not in "".join(toks)  # the ids were stripped


def test_sentencepiece_vocab_too_large(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size=5000"):
        train_sentencepiece(kaldi_text(tmp_path), tmp_path / "bpe", 5000, has_uttids=True)


def test_char_and_dummy_lists(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_text("u1 AAB B\nu2 A\n")
    assert write_char_token_list(path, tmp_path / "c") == [
        "<blank>", "<unk>", "A", "B", "<space>", "<sos/eos>"]
    assert write_dummy_token_list(tmp_path / "d", 2) == [
        "<blank>", "<unk>", "tok0", "tok1", "<sos/eos>"]

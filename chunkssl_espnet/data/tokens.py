"""Token lists in ESPnet's format: SentencePiece (BPE/unigram), characters, and a dummy for SSL.

ESPnet's ``token_list`` is one token per line: ``<blank>`` (id 0, the CTC blank), ``<unk>`` (id 1),
the model's pieces, and ``<sos/eos>`` last, exactly what ``asr.sh`` stage 5 writes after
``spm_train``. Replaces ESPnet's ``utils/spm_train`` (which is not in the wheel).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

from chunkssl_espnet.data.datadir import atomic_path, atomic_write_text, read_scp_lines

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

BLANK, UNK, SOS_EOS, SPACE = "<blank>", "<unk>", "<sos/eos>", "<space>"


def read_sentences(text_file: PathLike, has_uttids: bool = False) -> List[str]:
    """Sentences of ``text_file``, one per line; with ``has_uttids`` drop the leading Kaldi id."""
    text_file = Path(text_file)
    if not text_file.is_file():
        raise FileNotFoundError(f"{text_file}: text file does not exist")
    if has_uttids:
        return [value for _, _, value in read_scp_lines(text_file)]
    return text_file.read_text(encoding="utf-8").splitlines()


def train_sentencepiece(
    text_file: PathLike,
    model_prefix: PathLike,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    input_sentence_size: int = 100_000_000,
    has_uttids: bool = False,
    user_defined_symbols: Sequence[str] = (),
) -> Path:
    """Train a SentencePiece model like ESPnet's ``spm_train`` call in ``asr.sh`` stage 5.

    Args:
        text_file: training text, one sentence per line (Kaldi ``text`` with ``has_uttids``).
        model_prefix: writes ``<prefix>.model`` and ``<prefix>.vocab``.
        vocab_size: number of pieces including ``<unk>``, ``<s>``, ``</s>``.
        model_type: ``unigram``, ``bpe``, ``char`` or ``word``.
        character_coverage: fraction of characters the model must cover (1.0 for English).
        input_sentence_size: maximum number of sentences sampled for training.
        has_uttids: the file is a Kaldi ``text`` file whose first field is the utterance id.
        user_defined_symbols: pieces that are never split.

    Returns:
        The path of ``<prefix>.model``.

    Raises:
        ValueError: ``vocab_size`` too large for the text (SentencePiece's message is kept).
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe", "char", "word"):
        raise ValueError(f"model_type must be unigram, bpe, char or word, not {model_type!r}")
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sentences = [s for s in read_sentences(text_file, has_uttids) if s.strip()]
    if not sentences:
        raise ValueError(f"{text_file}: no text to train SentencePiece on")
    with tempfile.TemporaryDirectory(dir=prefix.parent) as tmp:
        train_txt = Path(tmp) / "train.txt"
        train_txt.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        tmp_prefix = Path(tmp) / prefix.name
        try:
            spm.SentencePieceTrainer.train(
                input=str(train_txt),
                model_prefix=str(tmp_prefix),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=input_sentence_size,
                user_defined_symbols=list(user_defined_symbols),
                minloglevel=2,
            )
        except RuntimeError as e:
            raise ValueError(
                f"SentencePiece training on {text_file} (vocab_size={vocab_size}) failed: {e}"
            ) from e
        for ext in (".model", ".vocab"):  # SentencePiece names its outputs: move them in place
            with atomic_path(f"{prefix}{ext}") as out:
                shutil.move(f"{tmp_prefix}{ext}", out)
    logger.info("trained %s.model (%s, %d pieces)", prefix, model_type, vocab_size)
    return Path(f"{prefix}.model")


def sentencepiece_tokens(model: PathLike) -> List[str]:
    """The pieces of a SentencePiece model, without ``<unk>``, control pieces and unused ones."""
    import sentencepiece as spm

    if not Path(model).is_file():
        raise FileNotFoundError(f"{model}: SentencePiece model does not exist")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i) or sp.is_unused(i))
    ]


def _write_token_list(tokens: Sequence[str], out: PathLike) -> List[str]:
    """Write ``<blank> <unk> tokens... <sos/eos>``, one per line, checking uniqueness."""
    full = [BLANK, UNK, *tokens, SOS_EOS]
    seen = set()
    for tok in full:
        if tok in seen:
            raise ValueError(f"{out}: token {tok!r} would appear twice in the token list")
        if not tok or any(c.isspace() for c in tok):
            raise ValueError(f"{out}: token {tok!r} is empty or contains whitespace")
        seen.add(tok)
    atomic_write_text(out, "".join(t + "\n" for t in full))
    return full


def write_token_list(model: PathLike, out: PathLike) -> List[str]:
    """Write ESPnet's token list for a SentencePiece model and return it.

    The order is ``<blank>``, ``<unk>``, the model's pieces in id order, ``<sos/eos>``; the same
    as ``asr.sh``, which drops the first three lines of ``<prefix>.vocab``.
    """
    return _write_token_list(sentencepiece_tokens(model), out)


def write_char_token_list(
    text_file: PathLike, out: PathLike, has_uttids: bool = True, cutoff: int = 0
) -> List[str]:
    """Write a character token list (``token_type=char``), most frequent first, space ``<space>``.

    Ties are broken by character order so the list is deterministic; characters seen ``cutoff``
    times or fewer are left out (they map to ``<unk>``).
    """
    counts: collections.Counter = collections.Counter()
    for sentence in read_sentences(text_file, has_uttids):
        counts.update(SPACE if c == " " else c for c in " ".join(sentence.split()))
    chars = sorted((c for c, k in counts.items() if k > cutoff), key=lambda c: (-counts[c], c))
    return _write_token_list(chars, out)


def write_dummy_token_list(
    out: PathLike, num_tokens: int = 0, prefix: Optional[str] = None
) -> List[str]:
    """Write a token list for SSL pre-training, where targets come from the model, not from text.

    ESPnet's tasks still want a ``token_list``; this one holds ``<blank>``, ``<unk>``,
    ``num_tokens`` placeholders ``<prefix><i>`` (default prefix ``tok``) and ``<sos/eos>``.
    """
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, not {num_tokens}")
    stem = "tok" if prefix is None else prefix
    return _write_token_list([f"{stem}{i}" for i in range(num_tokens)], out)

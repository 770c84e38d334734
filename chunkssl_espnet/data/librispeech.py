"""LibriSpeech data preparation (ESPnet ``egs2/librispeech/asr1/local/data.sh`` stage, in Python).

Layout: ``<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` with one
``<spk>-<chapter>.trans.txt`` per chapter (``<utt-id> TRANSCRIPT`` lines). ``wav.scp`` points at the
flac files directly (soundfile reads flac). As in Kaldi, the speaker id is ``<spk>-<chapter>``,
which prefixes every utterance id, so ``utt2spk`` and ``spk2utt`` sort consistently.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Sequence, Union

from chunkssl_espnet.data.datadir import (
    DataDirError,
    read_scp_lines,
    validate_data_dir,
    write_data_dir,
    write_utt2num_samples,
)

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

SUBSETS = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)


def librispeech_dir(root: PathLike) -> Path:
    """``<root>/LibriSpeech`` if it exists, else ``root`` itself when it holds a known subset."""
    root = Path(root)
    if (root / "LibriSpeech").is_dir():
        return root / "LibriSpeech"
    if root.is_dir() and any((root / s).is_dir() for s in SUBSETS):
        return root
    raise FileNotFoundError(
        f"{root}: not a LibriSpeech root; expected {root}/LibriSpeech/<subset>/<spk>/<chapter>/ "
        f"with subsets among {', '.join(SUBSETS)}"
    )


def read_chapter(chapter_dir: Path) -> Dict[str, str]:
    """``{utt-id: transcript}`` of one chapter folder, checking that every flac has a line and
    every line a flac.

    Raises:
        FileNotFoundError: the transcript file or a flac file is missing.
        DataDirError: a flac file without a transcript line, or a malformed line.
    """
    spk, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{spk}-{chapter}.trans.txt"
    if not trans.is_file():
        raise FileNotFoundError(f"{trans}: transcript file is missing for chapter {chapter_dir}")
    texts = {}
    for lineno, utt, text in read_scp_lines(trans):
        if not utt.startswith(f"{spk}-{chapter}-"):
            raise DataDirError(
                f"{trans}:{lineno}: utterance '{utt}' does not belong to this chapter"
            )
        if not text:
            raise DataDirError(f"{trans}:{lineno}: empty transcript for utterance '{utt}'")
        if not (chapter_dir / f"{utt}.flac").is_file():
            raise FileNotFoundError(f"{chapter_dir / (utt + '.flac')}: audio of '{utt}' is missing")
        texts[utt] = text
    for flac in chapter_dir.glob("*.flac"):
        if flac.stem not in texts:
            raise DataDirError(f"{flac}: no transcript line in {trans} for utterance '{flac.stem}'")
    return texts


def prepare_librispeech_subset(
    root: PathLike, out_dir: PathLike, subset: str, num_samples: bool = False
) -> Path:
    """Prepare one subset into ``out_dir`` (``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``).

    Args:
        root: folder holding ``LibriSpeech/`` (or the ``LibriSpeech`` folder itself).
        out_dir: the data directory to write, e.g. ``data/dev_clean``.
        subset: e.g. ``dev-clean``.
        num_samples: also write ``utt2num_samples`` (reads every flac header).
    """
    subset_dir = librispeech_dir(root) / subset
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"{subset_dir}: LibriSpeech subset '{subset}' does not exist")
    wav: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    for chapter_dir in sorted(p for p in subset_dir.glob("*/*") if p.is_dir()):
        spk_id = f"{chapter_dir.parent.name}-{chapter_dir.name}"
        for utt, transcript in read_chapter(chapter_dir).items():
            wav[utt] = str((chapter_dir / f"{utt}.flac").resolve())
            text[utt] = transcript
            utt2spk[utt] = spk_id
    if not wav:
        raise FileNotFoundError(f"{subset_dir}: no <spk>/<chapter>/ folders with flac files")
    write_data_dir(out_dir, wav, utt2spk, texts={"text": text})
    if num_samples:
        write_utt2num_samples(out_dir)
    n = validate_data_dir(out_dir, need_text=True, check_audio=False)
    logger.info("LibriSpeech %s: %d utterances -> %s", subset, n, out_dir)
    return Path(out_dir)


def prepare_librispeech(
    root: PathLike, out_dir: PathLike, subsets: Sequence[str], num_samples: bool = False
) -> Dict[str, Path]:
    """Prepare several subsets into ``out_dir/<subset with '-' as '_'>`` (``data/train_clean_100``).

    A subset listed more than once is prepared once (a recipe lists its training, validation and
    test subsets, which may overlap: dev-clean validates and is decoded).

    Returns:
        ``{subset: data directory}``.
    """
    if isinstance(subsets, str):
        subsets = [subsets]
    return {
        s: prepare_librispeech_subset(root, Path(out_dir) / s.replace("-", "_"), s, num_samples)
        for s in dict.fromkeys(subsets)
    }

"""MuST-C (v1) speech translation data preparation, as ESPnet's ``egs2/must_c`` stage 1.

Layout: ``<root>/<src>-<tgt>/data/<split>/wav/<talk>.wav`` with ``txt/<split>.yaml`` listing the
segments (``- {duration: 3.5, offset: 12.3, rW: 9, uW: 0, speaker_id: spk.1, wav: ted_1.wav}``,
one per line) line-aligned with ``txt/<split>.<src>`` and ``txt/<split>.<tgt>``. Writes
``wav.scp`` (one line per talk), ``segments``, ``utt2spk``, ``spk2utt``, ``text.tc.<src>``,
``text.tc.<tgt>`` (true case, as distributed) and ``text.lc.rm.<src>`` into
``<out_dir>/<split>.<src>-<tgt>``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Sequence, Union

from chunkssl_espnet.data.datadir import DataDirError, validate_data_dir, write_data_dir
from chunkssl_espnet.data.textnorm import lowercase_remove_punct

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
_FLOW_ITEM = re.compile(r"^-\s*\{(.*)\}\s*$")


def read_segment_yaml(path: Path) -> List[Dict[str, str]]:
    """Segments of a MuST-C yaml file, one dict of strings per segment, in file order.

    The files are lists of one-line flow mappings; a fast line parser reads them (PyYAML on
    the 270k-line train list takes minutes). Other layouts fall back to ``yaml.safe_load``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: segment list (yaml) is missing")
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and not _FLOW_ITEM.match(lines[0]):
        import yaml

        return [{k: str(v) for k, v in item.items()} for item in yaml.safe_load("\n".join(lines))]
    out = []
    for lineno, line in enumerate(lines, 1):
        m = _FLOW_ITEM.match(line)
        if m is None:
            raise DataDirError(f"{path}:{lineno}: expected '- {{duration: ..., offset: ..., ...}}'")
        fields = dict(kv.split(":", 1) for kv in m.group(1).split(",") if ":" in kv)
        out.append({k.strip(): v.strip() for k, v in fields.items()})
    return out


def _read_lines(path: Path) -> List[str]:
    """Lines of a text file, stripped; raises naming the file when missing.

    Splits on ``\\n`` only: ``str.splitlines`` would also split on the Unicode line separators
    that occur inside some TED transcripts and break the alignment with the yaml.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: transcript file is missing")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line.strip() for line in lines]


def must_c_dir(root: PathLike, lang_pair: str) -> Path:
    """``<root>/<lang_pair>``, or ``root`` itself when it is already the language-pair folder."""
    root = Path(root)
    for cand in (root / lang_pair, root):
        if (cand / "data").is_dir():
            return cand
    raise FileNotFoundError(
        f"{root}: not a MuST-C root; expected {root}/{lang_pair}/data/<split>/{{wav,txt}}/"
    )


def prepare_must_c_split(root: PathLike, out_dir: PathLike, lang_pair: str, split: str) -> Path:
    """Prepare one split of one language pair into the data directory ``out_dir``."""
    src, tgt = lang_pair.split("-")
    split_dir = must_c_dir(root, lang_pair) / "data" / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: MuST-C split '{split}' does not exist")
    yaml_path = split_dir / "txt" / f"{split}.yaml"
    segs = read_segment_yaml(yaml_path)
    texts = {lang: _read_lines(split_dir / "txt" / f"{split}.{lang}") for lang in (src, tgt)}
    for lang, lines in texts.items():
        if len(lines) != len(segs):
            raise DataDirError(
                f"{split_dir / 'txt' / f'{split}.{lang}'} has {len(lines)} lines but {yaml_path} "
                f"lists {len(segs)} segments: they must be line-aligned"
            )
    wav: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    segments: Dict[str, str] = {}
    out_texts: Dict[str, Dict[str, str]] = {f"text.tc.{src}": {}, f"text.tc.{tgt}": {},
                                            f"text.lc.rm.{src}": {}}
    skipped: List[str] = []
    for i, seg in enumerate(segs):
        try:
            talk_wav, spk = seg["wav"], seg["speaker_id"]
            start, duration = float(seg["offset"]), float(seg["duration"])
        except (KeyError, ValueError) as e:
            raise DataDirError(f"{yaml_path}:{i + 1}: bad or missing field {e}") from None
        rec = Path(talk_wav).stem
        if rec not in wav:
            audio = split_dir / "wav" / talk_wav
            if not audio.is_file():
                raise FileNotFoundError(
                    f"{audio}: audio file listed at {yaml_path}:{i + 1} is missing"
                )
            wav[rec] = str(audio.resolve())
        utt = f"{spk}-{rec}-{round(start * 1000):08d}-{round((start + duration) * 1000):08d}"
        src_text, tgt_text = texts[src][i], texts[tgt][i]
        if duration <= 0 or not src_text or not tgt_text or not lowercase_remove_punct(src_text):
            skipped.append(utt)
            continue
        if utt in utt2spk:
            raise DataDirError(f"{yaml_path}:{i + 1}: duplicated segment '{utt}'")
        utt2spk[utt] = spk
        segments[utt] = f"{rec} {start:.3f} {start + duration:.3f}"
        out_texts[f"text.tc.{src}"][utt] = src_text
        out_texts[f"text.tc.{tgt}"][utt] = tgt_text
        out_texts[f"text.lc.rm.{src}"][utt] = lowercase_remove_punct(src_text)
    if skipped:
        logger.warning("MuST-C %s: skipped %d segments with empty text or duration, e.g. '%s'",
                       split, len(skipped), skipped[0])
    write_data_dir(out_dir, wav, utt2spk, texts=out_texts, segments=segments)
    n = validate_data_dir(out_dir, need_text=True, check_audio=False)
    logger.info("MuST-C %s %s: %d segments from %d talks -> %s", lang_pair, split, n, len(wav),
                out_dir)
    return Path(out_dir)


def prepare_must_c(
    root: PathLike, out_dir: PathLike, lang_pair: str = "en-de", splits: Sequence[str] = SPLITS
) -> Dict[str, Path]:
    """Prepare MuST-C splits into ``out_dir/<split>.<lang_pair>`` (ESPnet's naming).

    Args:
        root: folder holding ``<lang_pair>/`` (e.g. ``MUSTC_v1.0``), or the pair folder itself.
        out_dir: parent of the data directories.
        lang_pair: ``<src>-<tgt>``, e.g. ``en-de``.
        splits: among ``train``, ``dev``, ``tst-COMMON``, ``tst-HE``.

    Returns:
        ``{split: data directory}``.
    """
    if not re.fullmatch(r"[a-z]+-[a-z]+", lang_pair):
        raise ValueError(f"lang_pair must look like 'en-de', not {lang_pair!r}")
    if isinstance(splits, str):
        splits = [splits]
    return {
        s: prepare_must_c_split(root, Path(out_dir) / f"{s}.{lang_pair}", lang_pair, s)
        for s in splits
    }

"""Libri-Light (unlabelled) data preparation for SSL pre-training.

Layout: ``<root>/<subset>/<speaker>/<book>/<name>.flac``, each with a ``<name>.json`` sidecar
(``{"speaker": ..., "book_meta": ..., "snr": ..., "voice_activity": [[onset, offset], ...]}``,
times in seconds). No transcripts. By default one utterance per file (files are long: use a
``segments`` file to cut them); with ``max_segment_s``, consecutive voice-activity intervals are
packed into segments of at most ``max_segment_s`` (as Libri-Light's ``cut_by_vad.py`` does, but
as ``segments`` lines instead of new audio files), or fixed-length cuts without voice activity.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import (
    DataDirError,
    validate_data_dir,
    write_data_dir,
    write_utt2num_samples,
)

PathLike = Union[str, os.PathLike]
Interval = Tuple[float, float]
logger = logging.getLogger(__name__)


def _safe_id(text: str) -> str:
    """Kaldi ids cannot contain whitespace."""
    return re.sub(r"\s+", "_", text)


def fixed_segments(duration: float, max_len: float, min_len: float = 0.0) -> List[Interval]:
    """Cut ``[0, duration)`` into consecutive pieces of ``max_len`` seconds; drop a last piece
    shorter than ``min_len``."""
    if max_len <= 0:
        raise ValueError(f"max segment length must be > 0, not {max_len}")
    out, start = [], 0.0
    while start < duration:
        end = min(duration, start + max_len)
        if end - start >= min_len:
            out.append((start, end))
        start = end
    return out


def pack_voice_activity(
    vad: Sequence[Sequence[float]], duration: float, max_len: float, min_len: float = 0.0
) -> List[Interval]:
    """Greedily merge consecutive voice-activity intervals into segments of at most ``max_len``.

    An interval longer than ``max_len`` is cut into fixed pieces. Segments shorter than
    ``min_len`` are dropped. Times are clipped to ``[0, duration]``.
    """
    out: List[Interval] = []
    cur: Optional[Interval] = None
    for onset, offset in vad:
        onset, offset = max(0.0, float(onset)), min(duration, float(offset))
        if offset <= onset:
            continue
        if cur is not None and offset - cur[0] <= max_len:
            cur = (cur[0], offset)
            continue
        if cur is not None:
            out.append(cur)
        if offset - onset > max_len:
            pieces = fixed_segments(offset - onset, max_len)
            out.extend((onset + a, onset + b) for a, b in pieces[:-1])
            cur = (onset + pieces[-1][0], onset + pieces[-1][1])
        else:
            cur = (onset, offset)
    if cur is not None:
        out.append(cur)
    return [(a, b) for a, b in out if b - a >= min_len]


def read_sidecar(flac: Path) -> dict:
    """The ``<name>.json`` next to ``flac``.

    Raises:
        FileNotFoundError: the sidecar is missing.
        DataDirError: it is not valid JSON.
    """
    sidecar = flac.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar}: metadata (.json) file is missing for {flac}")
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataDirError(f"{sidecar}: invalid JSON: {e}") from e


def prepare_librilight(
    root: PathLike,
    out_dir: PathLike,
    subset: str = "small",
    max_segment_s: Optional[float] = None,
    min_segment_s: float = 1.0,
    use_vad: bool = True,
    num_samples: bool = False,
) -> Path:
    """Prepare a Libri-Light subset into one data directory (no ``text``).

    Args:
        root: folder holding the subsets (``small/``, ``medium/``, ...).
        out_dir: the data directory to write, e.g. ``data/librilight_small``.
        subset: ``small``, ``medium``, ``large`` or ``duplicate``.
        max_segment_s: cut each file into segments of at most this length (writes ``segments``).
        min_segment_s: drop segments shorter than this (only with ``max_segment_s``).
        use_vad: pack the sidecar's ``voice_activity`` rather than cut at fixed times.
        num_samples: also write ``utt2num_samples``.

    Raises:
        FileNotFoundError: wrong root or subset, a flac without its json, or a json without flac.
    """
    import soundfile

    subset_dir = Path(root) / subset
    if not subset_dir.is_dir():
        raise FileNotFoundError(
            f"{subset_dir}: Libri-Light subset '{subset}' not found; expected "
            f"{root}/{subset}/<speaker>/<book>/<name>.flac with <name>.json"
        )
    for sidecar in sorted(subset_dir.glob("*/*/*.json")):
        if not sidecar.with_suffix(".flac").is_file():
            raise FileNotFoundError(f"{sidecar.with_suffix('.flac')}: audio file is missing")
    wav: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    segments: Dict[str, str] = {}
    for flac in sorted(subset_dir.glob("*/*/*.flac")):
        speaker, book = flac.parent.parent.name, flac.parent.name
        meta = read_sidecar(flac)
        rec = _safe_id(f"{speaker}-{book}-{flac.stem}")
        wav[rec] = str(flac.resolve())
        if max_segment_s is None:
            utt2spk[rec] = speaker
            continue
        duration = soundfile.info(str(flac)).duration
        vad = meta.get("voice_activity")
        if use_vad and vad:
            pieces = pack_voice_activity(vad, duration, max_segment_s, min_segment_s)
        else:
            pieces = fixed_segments(duration, max_segment_s, min_segment_s)
        for k, (start, end) in enumerate(pieces):
            utt = f"{rec}-{k:05d}"
            segments[utt] = f"{rec} {start:.2f} {end:.2f}"
            utt2spk[utt] = speaker
    if not wav:
        raise FileNotFoundError(f"{subset_dir}: no <speaker>/<book>/<name>.flac files")
    if max_segment_s is not None:
        used = {v.split()[0] for v in segments.values()}
        wav = {r: p for r, p in wav.items() if r in used}
    write_data_dir(out_dir, wav, utt2spk, segments=segments if max_segment_s else None)
    if num_samples:
        write_utt2num_samples(out_dir)
    n = validate_data_dir(out_dir, need_text=False, check_audio=False)
    logger.info("Libri-Light %s: %d utterances from %d files -> %s", subset, n, len(wav), out_dir)
    return Path(out_dir)

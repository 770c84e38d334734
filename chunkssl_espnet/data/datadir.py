"""Kaldi-style data directories: read, write, validate, fix, split and subset.

A data directory (``data/<set>/``) holds ``wav.scp`` (``<rec-id> <path>`` or ``<rec-id> <cmd> |``),
an optional ``segments`` (``<utt-id> <rec-id> <start-s> <end-s>``), ``text`` or
``text.<case>.<lang>`` (``<utt-id> <transcript>``), ``utt2spk`` and ``spk2utt``. Every file is
sorted in C-locale (byte) order with unique ids, which for UTF-8 text is Python's code-point
order. This module replaces Kaldi's ``validate_data_dir.sh``, ``fix_data_dir.sh``,
``split_scp.pl``, ``subset_data_dir.sh`` and ``utt2spk_to_spk2utt.pl``; every writer is atomic
(temporary file, then ``os.replace``). ``atomic_write_text`` and ``atomic_path`` are the package's
one way of writing a file that must not be torn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

#: Per-recording files (keyed by ``<rec-id>`` when ``segments`` exists, else by ``<utt-id>``).
RECORDING_FILES: Tuple[str, ...] = ("wav.scp", "reco2dur", "reco2file_and_channel")
#: Per-speaker files.
SPEAKER_FILES: Tuple[str, ...] = ("spk2utt", "spk2gender")


class DataDirError(ValueError):
    """A data directory or one of its files is malformed; the message names file, line and id."""


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` when the block ends
    without an error, remove it when the block raises.

    For writers that take a file name (``torch.save``, ``np.savez``, ``soundfile.write``,
    ``savefig``, external tools): a reader never sees a half-written file, and an interrupted or
    failed write leaves the old file intact and no temporary file behind. The temporary file does
    not exist yet (the writer creates it, with the usual permissions), and its name ends with
    ``path``'s suffix, so writers that choose the format by the suffix write the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically (see :func:`atomic_path`).

    A reader never sees a half-written file, and an interrupted stage leaves the old file intact.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)


def read_scp_lines(path: PathLike) -> List[Tuple[int, str, str]]:
    """Read ``<id> <value>`` lines as ``(line_number, id, value)``, in file order.

    The value is the rest of the line after the first run of whitespace (it may be empty). Blank
    lines and lines with leading whitespace are errors, as in Kaldi.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8", newline="\n") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line[0].isspace():
                raise DataDirError(f"{path}:{lineno}: empty line or line starting with whitespace")
            parts = line.split(maxsplit=1)
            rows.append((lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return rows


def read_scp(path: PathLike, check_sorted: bool = False) -> Dict[str, str]:
    """Read a Kaldi scp-like file into an ordered ``{id: value}`` dict; ids must be unique.

    Args:
        path: the file (``wav.scp``, ``text``, ``utt2spk``, ...).
        check_sorted: also require C-locale sorted ids.

    Raises:
        DataDirError: on a duplicated (or, with ``check_sorted``, out-of-order) id, naming the line.
    """
    out: Dict[str, str] = {}
    prev: Optional[str] = None
    for lineno, key, value in read_scp_lines(path):
        if key in out:
            raise DataDirError(f"{path}:{lineno}: duplicated id '{key}'")
        if check_sorted and prev is not None and key < prev:
            raise DataDirError(
                f"{path}:{lineno}: id '{key}' comes after '{prev}': not sorted in C-locale order "
                "(run fix_data_dir)"
            )
        out[key] = value
        prev = key
    return out


def write_scp(path: PathLike, mapping: Mapping[str, object]) -> Path:
    """Write ``{id: value}`` sorted by id (C-locale order), one ``<id> <value>`` a line, atomically.

    List or tuple values are joined by spaces (``spk2utt``). Ids must be non-empty, no whitespace.
    """
    lines = []
    for key in sorted(mapping):
        if not key or any(c.isspace() for c in key):
            raise DataDirError(f"{path}: invalid id {key!r} (empty or containing whitespace)")
        value = mapping[key]
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        lines.append(f"{key} {value}".rstrip() + "\n")
    return atomic_write_text(path, "".join(lines))


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """Invert ``utt2spk`` into ``spk2utt``: speakers sorted, each with its sorted utterance ids."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: spk2utt[spk] for spk in sorted(spk2utt)}


def utterance_files(data_dir: PathLike) -> List[Path]:
    """Per-utterance files in ``data_dir``: ``utt2spk``, ``segments``, ``text*``, ``utt2*``."""
    data_dir = Path(data_dir)
    names = [
        p.name
        for p in data_dir.iterdir()
        if p.is_file()
        and (p.name in ("segments", "text") or p.name.startswith(("text.", "utt2")))
        and not p.name.endswith((".tmp", ".bak"))
    ]
    return [data_dir / n for n in sorted(names)]


def text_files(data_dir: PathLike) -> List[Path]:
    """The transcript files present: ``text`` and ``text.<case>.<lang>`` (ESPnet ST)."""
    return [p for p in utterance_files(data_dir) if p.name == "text" or p.name.startswith("text.")]


def audio_path(value: str) -> Optional[Path]:
    """The file a ``wav.scp`` value points to, or None for a pipe command (``... |``)."""
    if value.endswith("|"):
        return None
    # ESPnet's "path:channel" and Kaldi ark offsets ("ark:path:123") are not used by our recipes.
    return Path(value)


def validate_data_dir(
    data_dir: PathLike,
    need_text: bool = True,
    check_audio: bool = True,
) -> int:
    """Check a data directory the way Kaldi's ``validate_data_dir.sh`` does, in pure Python.

    Checks: ``wav.scp``, ``utt2spk`` and ``spk2utt`` exist; every file is sorted with unique ids;
    ``spk2utt`` is the inverse of ``utt2spk``; every transcript file (``text``, ``text.*``) covers
    exactly the utterances of ``utt2spk`` with non-empty text; ``segments`` refer to recordings in
    ``wav.scp`` with ``0 <= start < end``; without ``segments``, ``wav.scp`` has the same ids as
    ``utt2spk``; every audio file exists (pipe commands are not checked).

    Args:
        data_dir: the directory.
        need_text: require at least one transcript file (False for unlabelled SSL data).
        check_audio: check that every audio file exists.

    Returns:
        The number of utterances.

    Raises:
        FileNotFoundError: the directory or a required file is missing.
        DataDirError: the first inconsistency, naming the file, the line and the id.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data directory does not exist")
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name}: required file is missing")
    utt2spk = read_scp(data_dir / "utt2spk", check_sorted=True)
    if not utt2spk:
        raise DataDirError(f"{data_dir / 'utt2spk'}: no utterances")
    for lineno, utt, spk in read_scp_lines(data_dir / "utt2spk"):
        if not spk or len(spk.split()) != 1:
            raise DataDirError(
                f"{data_dir / 'utt2spk'}:{lineno}: utterance '{utt}' needs exactly one speaker"
            )
    _check_spk2utt(data_dir / "spk2utt", utt2spk)
    wav = read_scp(data_dir / "wav.scp", check_sorted=True)
    if (data_dir / "segments").is_file():
        _check_segments(data_dir / "segments", utt2spk, wav)
    else:
        _check_same_ids(data_dir / "wav.scp", wav, utt2spk)
    texts = text_files(data_dir)
    if need_text and not texts:
        raise FileNotFoundError(f"{data_dir / 'text'}: transcript file is missing")
    for path in texts:
        text = read_scp(path, check_sorted=True)
        _check_same_ids(path, text, utt2spk)
        for lineno, utt, value in read_scp_lines(path):
            if not value:
                raise DataDirError(f"{path}:{lineno}: empty transcript for utterance '{utt}'")
    for path in utterance_files(data_dir):
        if path.name not in ("segments",) and path not in texts:
            _check_same_ids(path, read_scp(path, check_sorted=True), utt2spk)
    if check_audio:
        for rec, value in wav.items():
            audio = audio_path(value)
            if audio is not None and not audio.is_file():
                raise DataDirError(
                    f"{data_dir / 'wav.scp'}: audio file for '{rec}' does not exist: {audio}"
                )
    return len(utt2spk)


def _check_same_ids(path: Path, got: Mapping[str, str], utt2spk: Mapping[str, str]) -> None:
    """Raise naming the first id in one of ``got``/``utt2spk`` but not the other."""
    for utt in got:
        if utt not in utt2spk:
            raise DataDirError(f"{path}: id '{utt}' is not in utt2spk (run fix_data_dir)")
    for utt in utt2spk:
        if utt not in got:
            raise DataDirError(
                f"{path}: utterance '{utt}' of utt2spk is missing (run fix_data_dir)"
            )


def _check_spk2utt(path: Path, utt2spk: Mapping[str, str]) -> None:
    """``spk2utt`` must be sorted and exactly the inverse of ``utt2spk``."""
    spk2utt = read_scp(path, check_sorted=True)
    want = utt2spk_to_spk2utt(utt2spk)
    for lineno, spk, utts in read_scp_lines(path):
        if spk not in want:
            raise DataDirError(f"{path}:{lineno}: speaker '{spk}' has no utterance in utt2spk")
        if utts.split() != want[spk]:
            raise DataDirError(
                f"{path}:{lineno}: utterances of speaker '{spk}' disagree with utt2spk "
                "(regenerate spk2utt with fix_data_dir)"
            )
    for spk in want:
        if spk not in spk2utt:
            raise DataDirError(f"{path}: speaker '{spk}' of utt2spk is missing")


def _check_segments(path: Path, utt2spk: Mapping[str, str], wav: Mapping[str, str]) -> None:
    """Segments: same utterances as utt2spk, known recordings, ``0 <= start < end``."""
    segments = read_scp(path, check_sorted=True)
    _check_same_ids(path, segments, utt2spk)
    for lineno, utt, value in read_scp_lines(path):
        fields = value.split()
        try:
            rec, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise DataDirError(
                f"{path}:{lineno}: utterance '{utt}': expected '<utt> <rec> <start> <end>'"
            ) from None
        if rec not in wav:
            raise DataDirError(f"{path}:{lineno}: recording '{rec}' of '{utt}' is not in wav.scp")
        if not 0 <= start < end:
            raise DataDirError(f"{path}:{lineno}: utterance '{utt}' has start {start} >= end {end}")


def write_data_dir(
    out_dir: PathLike,
    wav: Mapping[str, str],
    utt2spk: Mapping[str, str],
    texts: Optional[Mapping[str, Mapping[str, str]]] = None,
    segments: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write a whole data directory: ``wav.scp``, ``utt2spk``, ``spk2utt``, transcripts, segments.

    Args:
        out_dir: created if needed.
        wav: ``{rec-id: path}`` (``{utt-id: path}`` without segments).
        utt2spk: ``{utt-id: speaker}``.
        texts: ``{file name: {utt-id: text}}``, e.g. ``{"text.tc.en": ..., "text.tc.de": ...}``.
        segments: ``{utt-id: "<rec-id> <start> <end>"}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scp(out_dir / "wav.scp", wav)
    write_scp(out_dir / "utt2spk", utt2spk)
    write_scp(out_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    for name, table in (texts or {}).items():
        write_scp(out_dir / name, table)
    if segments is not None:
        write_scp(out_dir / "segments", segments)
    return out_dir


def fix_data_dir(data_dir: PathLike) -> int:
    """Keep the utterances present in every per-utterance file, sort everything, rebuild spk2utt.

    Utterances with an empty transcript are dropped. With ``segments``, recordings that no kept
    segment uses are dropped from ``wav.scp`` and segments whose recording is missing are dropped.
    Like Kaldi's ``fix_data_dir.sh``; the number of dropped utterances is logged.

    Returns:
        The number of utterances kept.
    """
    data_dir = Path(data_dir)
    for name in ("wav.scp", "utt2spk"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name}: required file is missing")
    files = {p.name: read_scp(p) for p in utterance_files(data_dir)}
    wav = read_scp(data_dir / "wav.scp")
    keep = set(files["utt2spk"])
    for name, table in files.items():
        keep &= set(table)
        if name == "text" or name.startswith("text."):
            keep -= {u for u, t in table.items() if not t}
    segments = files.get("segments")
    if segments is not None:
        keep = {u for u in keep if segments[u].split()[0] in wav}
        used = {segments[u].split()[0] for u in keep}
        wav = {r: v for r, v in wav.items() if r in used}
    else:
        keep &= set(wav)
        wav = {r: v for r, v in wav.items() if r in keep}
    dropped = len(files["utt2spk"]) - len(keep)
    if dropped:
        logger.warning("fix_data_dir %s: dropped %d of %d utterances", data_dir, dropped,
                       len(files["utt2spk"]))
    for name, table in files.items():
        write_scp(data_dir / name, {u: v for u, v in table.items() if u in keep})
    write_scp(data_dir / "wav.scp", wav)
    utt2spk = {u: files["utt2spk"][u] for u in keep}
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    return len(keep)


def split_scp_files(scp: PathLike, outputs: Sequence[PathLike]) -> List[Path]:
    """Split ``scp`` into ``len(outputs)`` contiguous, nearly equal parts (Kaldi ``split_scp.pl``).

    Raises:
        DataDirError: more parts than lines, or an empty file.
    """
    rows = read_scp_lines(scp)
    n = len(outputs)
    if n < 1:
        raise ValueError("split_scp: need at least one output")
    if len(rows) < n:
        raise DataDirError(f"{scp}: cannot split {len(rows)} lines into {n} parts")
    with open(scp, encoding="utf-8") as f:
        lines = f.readlines()
    out = []
    for i, path in enumerate(outputs):
        lo, hi = len(lines) * i // n, len(lines) * (i + 1) // n
        out.append(atomic_write_text(path, "".join(lines[lo:hi])))
    return out


def split_scp(scp: PathLike, n: int, out_dir: PathLike) -> List[Path]:
    """Split ``scp`` into ``n`` parts named like ESPnet's job files: ``wav.scp`` -> ``wav.1.scp``.

    Returns:
        The ``n`` output paths ``out_dir/<stem>.<i><suffix>`` for i = 1..n.
    """
    scp = Path(scp)
    stem, suffix = (scp.stem, scp.suffix) if scp.suffix == ".scp" else (scp.name, "")
    outputs = [Path(out_dir) / f"{stem}.{i}{suffix}" for i in range(1, n + 1)]
    return split_scp_files(scp, outputs)


def subset_data_dir(
    src: PathLike,
    dst: PathLike,
    ids: Optional[Iterable[str]] = None,
    n: Optional[int] = None,
) -> int:
    """Copy the utterances ``ids`` (or ``n`` evenly spaced ones) of ``src`` into ``dst``.

    Every per-utterance file is filtered, ``wav.scp`` keeps the recordings still used and
    ``spk2utt`` is rebuilt; other files (``feats_type``, ...) are copied unchanged. Exactly one of
    ``ids`` and ``n`` must be given.

    Returns:
        The number of utterances in ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if (ids is None) == (n is None):
        raise ValueError("subset_data_dir: give exactly one of ids and n")
    if src.resolve() == dst.resolve():
        raise ValueError(f"subset_data_dir: source and destination are the same: {src}")
    utt2spk = read_scp(src / "utt2spk")
    all_ids = sorted(utt2spk)
    if n is not None:
        if not 0 < n <= len(all_ids):
            raise ValueError(f"subset_data_dir: n={n} but {src} has {len(all_ids)} utterances")
        keep = {all_ids[i * len(all_ids) // n] for i in range(n)}
    else:
        keep = set(ids)  # type: ignore[arg-type]
        unknown = sorted(keep - set(all_ids))
        if unknown:
            raise DataDirError(f"{src / 'utt2spk'}: unknown utterance ids, e.g. '{unknown[0]}'")
    dst.mkdir(parents=True, exist_ok=True)
    segments = None
    for path in utterance_files(src):
        table = {u: v for u, v in read_scp(path).items() if u in keep}
        write_scp(dst / path.name, table)
        if path.name == "segments":
            segments = table
    wav = read_scp(src / "wav.scp")
    used = {v.split()[0] for v in segments.values()} if segments is not None else keep
    write_scp(dst / "wav.scp", {r: v for r, v in wav.items() if r in used})
    write_scp(dst / "spk2utt", utt2spk_to_spk2utt({u: utt2spk[u] for u in keep}))
    # Copy what is not keyed by utterance, recording or speaker (feats_type, ...) unchanged.
    keyed = {p.name for p in utterance_files(src)} | set(RECORDING_FILES) | set(SPEAKER_FILES)
    for path in sorted(src.iterdir()):
        if path.is_file() and path.name not in keyed:
            atomic_write_text(dst / path.name, path.read_text(encoding="utf-8"))
    return len(keep)


def read_audio_headers(wav_scp: PathLike) -> Dict[str, Tuple[Path, int, int]]:
    """``{id: (audio file, frames, sample rate)}`` for every entry of ``wav_scp``, from the file
    headers (``soundfile.info``, about 0.1 ms a file), without decoding the audio.

    Raises:
        DataDirError: a pipe entry (no header to read), or a missing or unreadable file, naming
            ``wav_scp``, the id and the file.
    """
    import soundfile  # imported here: the rest of the module needs no audio library

    info: Dict[str, Tuple[Path, int, int]] = {}
    for rec, value in read_scp(wav_scp).items():
        audio = audio_path(value)
        if audio is None:
            raise DataDirError(f"{wav_scp}: utterance '{rec}' is a pipe; cannot read a header "
                               "(write the audio to files first)")
        if not audio.is_file():
            raise DataDirError(f"{wav_scp}: audio file of utterance '{rec}' not found: {audio}")
        try:
            meta = soundfile.info(str(audio))
        except Exception as e:  # soundfile raises RuntimeError or LibsndfileError
            raise DataDirError(
                f"{wav_scp}: cannot read audio of utterance '{rec}' ({audio}): {e}; replace "
                "or remove the file"
            ) from e
        info[rec] = (audio, meta.frames, meta.samplerate)
    return info


def check_sample_rates(wav_scp: PathLike, fs: int) -> int:
    """Every audio file of ``wav_scp`` is readable and sampled at ``fs`` Hz (the model's
    ``frontend_conf.fs``); only the headers are read. Returns the number of files.

    Raises:
        DataDirError: naming ``wav_scp``, the id and the file of the first one that is not.
    """
    headers = read_audio_headers(wav_scp)
    for rec, (audio, _, rate) in headers.items():
        if rate != fs:
            raise DataDirError(
                f"{wav_scp}: utterance '{rec}' ({audio}) is sampled at {rate} Hz, but the "
                f"model expects {fs} Hz (frontend_conf.fs): resample it (sox in.wav -r {fs} "
                "out.wav)"
            )
    return len(headers)


def write_utt2num_samples(data_dir: PathLike, out: Optional[PathLike] = None) -> Path:
    """Write ``utt2num_samples`` from the audio headers (``soundfile.info``), without decoding.

    With ``segments``, the count is ``round((end - start) * sample_rate)`` clipped to the file.

    Raises:
        DataDirError: as :func:`read_audio_headers`.
    """
    data_dir = Path(data_dir)
    info = {rec: (frames, rate)
            for rec, (_, frames, rate) in read_audio_headers(data_dir / "wav.scp").items()}
    counts: Dict[str, int] = {}
    if (data_dir / "segments").is_file():
        for utt, value in read_scp(data_dir / "segments").items():
            rec, start, end = value.split()[:3]
            frames, rate = info[rec]
            lo, hi = round(float(start) * rate), min(frames, round(float(end) * rate))
            counts[utt] = max(0, hi - lo)
    else:
        counts = {rec: frames for rec, (frames, _) in info.items()}
    return write_scp(out if out is not None else data_dir / "utt2num_samples", counts)

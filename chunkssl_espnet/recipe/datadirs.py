"""Data stages of the recipes beyond corpus preparation: checking, and cutting segments to files.

``check_data_dirs`` validates prepared data directories (sorted, unique ids, every audio file
present, readable and at the models' sample rate, non-empty text) and writes
``utt2num_samples``. ``dump_segments`` turns a directory with
``segments`` (MuST-C talks, long Libri-Light files) into one with an audio file per utterance,
which is what ESPnet's ``sound`` reader needs (``asr.sh`` stage 3 does the same with
``format_wav_scp.py``).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from chunkssl_espnet.data.datadir import (
    DataDirError,
    atomic_path,
    audio_path,
    check_sample_rates,
    read_scp,
    utterance_files,
    validate_data_dir,
    write_scp,
    write_utt2num_samples,
)
from chunkssl_espnet.recipe.provenance import StageRecord, fresh_tmp_dir, replace_dir

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


def check_data_dirs(
    data_dirs: Sequence[PathLike],
    need_text: bool = True,
    num_samples: bool = True,
    fs: Optional[int] = 16000,
) -> Dict[str, int]:
    """Validate each directory (and write its ``utt2num_samples``); ``{dir: utterances}``.

    ``fs``: every audio file must be readable and sampled at this rate (the models'
    ``frontend_conf.fs``; headers only); None skips the check.

    Raises:
        FileNotFoundError, DataDirError: the first problem, naming the file and the utterance.
    """
    out = {}
    for d in data_dirs:
        out[str(d)] = validate_data_dir(d, need_text=need_text, check_audio=True)
        if fs is not None:
            check_sample_rates(Path(d) / "wav.scp", fs)
        if num_samples:
            write_utt2num_samples(d)
        logger.info("%s: OK, %d utterances", d, out[str(d)])
    return out


Job = Tuple[str, str, List[Tuple[str, float, float, str]]]


def _cut_recording(job: Job) -> int:
    """Worker: read one recording once, write each of its segments as a 16-bit file."""
    import soundfile

    rec, path, pieces = job
    try:
        audio, rate = soundfile.read(path, dtype="int16", always_2d=True)
    except Exception as e:  # soundfile raises several types
        raise DataDirError(f"cannot read audio of recording '{rec}' ({path}): {e}") from e
    audio = audio[:, 0]
    for utt, start, end, out in pieces:
        lo, hi = round(start * rate), min(len(audio), round(end * rate))
        if hi <= lo:
            raise DataDirError(f"segment '{utt}' ({start}-{end} s) is empty in {path}")
        with atomic_path(out) as tmp:
            soundfile.write(tmp, audio[lo:hi], rate, subtype="PCM_16", format="FLAC")
    return len(pieces)


def dump_segments(
    src: PathLike,
    dst: PathLike,
    nj: int = 1,
    need_text: bool = True,
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
) -> Path:
    """Write ``dst`` with one flac per utterance (``dst/audio/``) and the same other files.

    A directory without ``segments`` is copied with its ``wav.scp`` unchanged (the audio files
    are already one per utterance). ``dst`` gets ``utt2num_samples`` and is validated.
    """
    src, dst = Path(src), Path(dst)
    rec = StageRecord(dst, "dump", {"src": str(src), "need_text": need_text, "nj": nj,
                                    "force": force}, argv)
    if rec.is_done():
        return dst
    validate_data_dir(src, need_text=need_text, check_audio=True)
    tmp = fresh_tmp_dir(dst)
    rec.start()
    wav = read_scp(src / "wav.scp")
    if (src / "segments").is_file():
        audio_dir = dst.resolve() / "audio"  # final location: the files are written via tmp
        (tmp / "audio").mkdir()
        per_rec: Dict[str, List[Tuple[str, float, float, str]]] = {}
        new_wav = {}
        for utt, value in read_scp(src / "segments").items():
            rec_id, start, end = value.split()[:3]
            per_rec.setdefault(rec_id, []).append(
                (utt, float(start), float(end), str(tmp / "audio" / f"{utt}.flac")))
            new_wav[utt] = str(audio_dir / f"{utt}.flac")
        jobs = []
        for rec_id, pieces in per_rec.items():
            path = audio_path(wav[rec_id])
            if path is None:
                raise DataDirError(f"{src / 'wav.scp'}: recording '{rec_id}' is a pipe; "
                                   "segments need audio files")
            jobs.append((rec_id, str(path), pieces))
        if nj > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=nj) as pool:
                n = sum(pool.map(_cut_recording, jobs, chunksize=4))
        else:
            n = sum(map(_cut_recording, jobs))
        logger.info("%s: %d segments of %d recordings -> %s", src, n, len(jobs), dst)
        wav = new_wav
    for path in utterance_files(src):
        if path.name != "segments":
            write_scp(tmp / path.name, read_scp(path))
    write_scp(tmp / "wav.scp", wav)
    write_scp(tmp / "spk2utt", read_scp(src / "spk2utt"))
    replace_dir(tmp, dst)
    write_utt2num_samples(dst)
    n_utts = validate_data_dir(dst, need_text=need_text, check_audio=True)
    rec.finish({"utterances": n_utts})
    return dst


def combine_data_dirs(srcs: Sequence[PathLike], dst: PathLike, need_text: bool = True) -> Path:
    """Concatenate data directories into ``dst`` (Kaldi ``combine_data.sh``), validated, with
    ``utt2num_samples``. Files present in every source are combined; others are left out.

    Raises:
        DataDirError: an utterance or recording id appears in two sources.
    """
    if not srcs:
        raise ValueError("combine: no source directories")
    srcs = [Path(s) for s in srcs]
    for s in srcs:
        validate_data_dir(s, need_text=need_text, check_audio=False)
    names = set.intersection(*({p.name for p in utterance_files(s)} for s in srcs))
    names = (names | {"wav.scp"}) - {"utt2num_samples"}
    dst = Path(dst)
    tmp = fresh_tmp_dir(dst)
    for name in sorted(names):
        merged: Dict[str, str] = {}
        for s in srcs:
            for key, value in read_scp(s / name).items():
                if key in merged:
                    raise DataDirError(f"combine: '{key}' is in both {s / name} and an earlier "
                                       "source; ids must be unique across the sources")
                merged[key] = value
        write_scp(tmp / name, merged)
    spk2utt: Dict[str, List[str]] = {}
    for utt, spk in sorted(read_scp(tmp / "utt2spk").items()):
        spk2utt.setdefault(spk, []).append(utt)
    write_scp(tmp / "spk2utt", spk2utt)
    replace_dir(tmp, dst)
    write_utt2num_samples(dst)
    validate_data_dir(dst, need_text=need_text, check_audio=True)
    return dst


def holdout(
    src: PathLike, train_dst: PathLike, valid_dst: PathLike, n: int, need_text: bool = True
) -> Tuple[Path, Path]:
    """Split ``src`` into a validation set of ``n`` evenly spaced utterances and the rest."""
    from chunkssl_espnet.data.datadir import subset_data_dir

    ids = sorted(read_scp(Path(src) / "utt2spk"))
    if not 0 < n < len(ids):
        raise ValueError(f"holdout: n={n} but {src} has {len(ids)} utterances")
    valid = {ids[i * len(ids) // n] for i in range(n)}
    for dst, keep in ((valid_dst, valid), (train_dst, set(ids) - valid)):
        tmp = fresh_tmp_dir(dst)
        subset_data_dir(src, tmp, ids=sorted(keep))
        replace_dir(tmp, dst)
        validate_data_dir(dst, need_text=need_text, check_audio=False)
    return Path(train_dst), Path(valid_dst)

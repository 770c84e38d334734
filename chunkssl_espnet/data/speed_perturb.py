"""Speed perturbation of a labelled data directory (Kaldi's ``perturb_data_dir_speed.sh``).

Each factor ``f`` other than 1 adds a copy of every utterance resampled by sox ``speed f``: tempo,
pitch and formants change together, like another speaker's vocal tract, and the transcript stays
the same. The copies are ``sp<f>-<utt-id>`` by speaker ``sp<f>-<speaker>``, as in Kaldi and
ESPnet's ``asr.sh --speed_perturb_factors``; factor 1 keeps the utterances as they are. ESPnet
pipes sox in ``wav.scp``; we write the copies as wav files (``<audio_dir>/sp<f>/<utt-id>.wav``),
once: a copy newer than its source is kept, so a re-run costs nothing.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from tqdm import tqdm

from chunkssl_espnet.data.datadir import (
    audio_path,
    read_scp,
    validate_data_dir,
    write_data_dir,
    write_utt2num_samples,
)
from chunkssl_espnet.data.voices import run_sox

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


def perturbed_id(factor: float, name: str) -> str:
    """Kaldi's prefix: ``sp0.9-<name>``; factor 1 keeps ``name``."""
    return name if factor == 1.0 else f"sp{factor:g}-{name}"


def speed_perturb_data_dir(
    src: PathLike, dst: PathLike, factors: Sequence[float], audio_dir: PathLike, n_jobs: int = 2
) -> Path:
    """Write ``dst``: the utterances of ``src`` at each speed of ``factors``.

    Args:
        src: a data directory with ``wav.scp`` (file paths, no segments), ``utt2spk`` and
            ``text``.
        dst: the perturbed data directory (``utt2num_samples`` included).
        factors: e.g. ``[0.9, 1.0, 1.1]``; 1 keeps the originals, leave it out to drop them.
        audio_dir: where the perturbed wav files go.
        n_jobs: sox processes at once.
    """
    src, dst = Path(src), Path(dst)
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors):
        raise ValueError(f"speed factors must be distinct and positive, got {list(factors)}")
    if (src / "segments").exists():
        raise ValueError(f"{src}/segments: speed perturbation of segmented recordings is not "
                         "supported; write one wav file per utterance")
    validate_data_dir(src)
    wav, utt2spk, text = (read_scp(src / n) for n in ("wav.scp", "utt2spk", "text"))
    jobs: List[Tuple[Path, Path, float]] = []
    out_wav: Dict[str, str] = {}
    out_spk: Dict[str, str] = {}
    out_text: Dict[str, str] = {}
    for factor in factors:
        for utt, value in wav.items():
            new = perturbed_id(factor, utt)
            if factor == 1.0:
                out_wav[new] = value
            else:
                path = audio_path(value)
                if path is None:
                    raise ValueError(f"{src}/wav.scp: utterance {utt} is a pipe command; speed "
                                     "perturbation needs a file path")
                target = (Path(audio_dir) / f"sp{factor:g}" / f"{new}.wav").resolve()
                jobs.append((path, target, factor))
                out_wav[new] = str(target)
            out_spk[new] = perturbed_id(factor, utt2spk[utt])
            out_text[new] = text[utt]
    todo = [j for j in jobs if not (j[1].exists() and j[1].stat().st_mtime >= j[0].stat().st_mtime)]
    for target in {t.parent for _, t, _ in todo}:
        target.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, n_jobs)) as pool:
        for _ in tqdm(pool.map(lambda j: run_sox(j[0], j[1], ["speed", f"{j[2]:g}"]), todo),
                      total=len(todo), desc=f"speed perturbation of {src.name}", unit="utt",
                      disable=not todo):
            pass
    logger.info("%s: %d utterances at speeds %s (%d files written)", dst, len(out_wav),
                " ".join(f"{f:g}" for f in factors), len(todo))
    write_data_dir(dst, out_wav, out_spk, texts={"text": out_text})
    write_utt2num_samples(dst)
    validate_data_dir(dst)
    return dst

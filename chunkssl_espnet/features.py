"""Input features of Chunk SSL (docs/method.md, section 2; stacking: section 3).

* 80-dim Kaldi-compatible log-mel filter-banks, 25 ms window, 10 ms shift, 16 kHz audio. No dither
  and ``snip_edges=True``: fbank frame ``t`` depends only on samples ``[160 t, 160 t + 400)``, so
  the features of a growing audio prefix can be computed incrementally and equal the full
  computation.
* Global mean/variance normalisation with statistics from the training set, stored in ESPnet's
  ``feats_stats.npz`` format (``count``, ``sum``, ``sum_square``) so that ESPnet's ``global_mvn``
  can read the same file.
* Stacking of ``SUBSAMPLING`` = 4 consecutive fbank frames (40 ms, 320 values): one FSQ target per
  encoder frame.

The sample rate, window, hop and sub-sampling factor are defined in ``chunkssl_espnet.frames``.
"""

from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple, Union

import numpy as np
import soundfile
import torch
import torchaudio.compliance.kaldi as kaldi

from chunkssl_espnet.data.datadir import atomic_path
from chunkssl_espnet.frames import HOP_SAMPLES, SAMPLE_RATE, SUBSAMPLING, WINDOW_SAMPLES

NUM_MEL_BINS = 80
FRAME_LENGTH_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE  # 25.0
FRAME_SHIFT_MS = HOP_SAMPLES * 1000 / SAMPLE_RATE  # 10.0

PathLike = Union[str, Path]


def load_wav(path: PathLike, expected_rate: Optional[int] = None) -> Tuple[torch.Tensor, int]:
    """Read an audio file with soundfile.

    Args:
        path: audio file (any format libsndfile reads: wav, flac, ...).
        expected_rate: refuse another sample rate (Hz), e.g. ``SAMPLE_RATE`` for the features.

    Returns:
        waveform: (N,) float32 in [-1, 1]; multi-channel audio keeps its first channel
            (Kaldi's default).
        sample_rate: in Hz.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded, holds no samples or is not at ``expected_rate``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for undecodable input
        raise ValueError(f"cannot read audio file {path}: {e}") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"audio file {path} is empty (0 samples)")
    if expected_rate is not None and sample_rate != expected_rate:
        raise ValueError(
            f"audio file {path} is sampled at {sample_rate} Hz, but the model expects "
            f"{expected_rate} Hz: resample it (sox in.wav -r {expected_rate} out.wav)"
        )
    return torch.from_numpy(np.ascontiguousarray(data[:, 0])), int(sample_rate)


def kaldi_fbank(
    waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS
) -> torch.Tensor:
    """Kaldi-compatible log-mel filter-banks (25 ms / 10 ms, no dither, ``snip_edges``).

    Args:
        waveform: (N,) float in [-1, 1]; scaled by 32768 to Kaldi's 16-bit range.
        sample_rate: must be 16000 (the method's rate); resample beforehand otherwise.
        num_mel_bins: number of mel bins.

    Returns:
        feats: (T, num_mel_bins) float32 with ``T = 1 + (N - 400) // 160`` (0 if N < 400).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"sample rate {sample_rate} Hz is not supported: the features are defined at "
            f"{SAMPLE_RATE} Hz; resample the audio first (e.g. sox in.wav -r {SAMPLE_RATE} out.wav)"
        )
    if waveform.dim() != 1:
        raise ValueError(f"waveform must be 1-D (N,), got shape {tuple(waveform.shape)}")
    if waveform.shape[0] < WINDOW_SAMPLES:
        # torchaudio refuses windows longer than the signal; Kaldi gives zero frames.
        return torch.zeros(0, num_mel_bins)
    with torch.autocast(device_type=waveform.device.type, enabled=False):
        return kaldi.fbank(
            waveform.float().unsqueeze(0) * 32768.0,
            num_mel_bins=num_mel_bins,
            frame_length=FRAME_LENGTH_MS,
            frame_shift=FRAME_SHIFT_MS,
            dither=0.0,
            snip_edges=True,
            sample_frequency=float(sample_rate),
        )


def stack_frames(
    feats: torch.Tensor, lens: torch.Tensor, factor: int = SUBSAMPLING
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``factor`` consecutive frames; a trailing partial group is dropped.

    Args:
        feats: (B, T, F).
        lens: (B,) valid frames per utterance.
        factor: frames per stacked frame.

    Returns:
        stacked: (B, T // factor, F * factor); stacked frame ``j`` is frames
            ``[factor j, factor j + factor)`` in order.
        out_lens: (B,) ``lens // factor``.
    """
    if feats.dim() != 3:
        raise ValueError(f"feats must be (B, T, F), got shape {tuple(feats.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    b, t, f = feats.shape
    t_out = t // factor
    stacked = feats[:, : t_out * factor].reshape(b, t_out, f * factor)
    return stacked, torch.div(lens, factor, rounding_mode="floor")


# --------------------------------------------------------------------------------------------
# Global mean/variance normalisation (ESPnet feats_stats.npz format)


def compute_mvn_stats(feats_iter: Iterable[torch.Tensor]) -> Dict[str, np.ndarray]:
    """Accumulate ESPnet-style statistics over utterances.

    Args:
        feats_iter: (T_i, F) feature matrices (unnormalised).

    Returns:
        ``{"count": int64 array (), "sum": float64 (F,), "sum_square": float64 (F,)}``.
    """
    count, total, total_sq = 0, None, None
    for feats in feats_iter:
        x = feats.detach().to(torch.float64).cpu().numpy()
        if total is None:
            total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        count += x.shape[0]
        total += x.sum(0)
        total_sq += (x * x).sum(0)
    if total is None or count == 0:
        raise ValueError("cannot compute mean/variance statistics: no feature frames were given")
    return {"count": np.array(count, dtype=np.int64), "sum": total, "sum_square": total_sq}


def load_mvn_stats(path: PathLike) -> Dict[str, np.ndarray]:
    """Read an ESPnet ``feats_stats.npz`` (keys ``count``, ``sum``, ``sum_square``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    try:
        with np.load(path) as npz:
            stats = {k: np.asarray(npz[k]) for k in ("count", "sum", "sum_square")}
    except KeyError as e:
        raise ValueError(
            f"statistics file {path} lacks key {e}; expected count, sum, sum_square"
        ) from e
    except Exception as e:
        raise ValueError(f"cannot read statistics file {path}: {e}") from e
    if float(stats["count"]) <= 0:
        raise ValueError(f"statistics file {path} has count {stats['count']} (must be > 0)")
    return stats


def save_mvn_stats(stats: Dict[str, np.ndarray], path: PathLike) -> None:
    """Write statistics as an ESPnet ``feats_stats.npz``, atomically, to ``path`` exactly."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, count=stats["count"], sum=stats["sum"], sum_square=stats["sum_square"])


def mvn_mean_std(stats: Dict[str, np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (F,) float32 exactly as ESPnet's ``GlobalMVN`` derives them."""
    count = float(stats["count"])
    mean = np.asarray(stats["sum"], dtype=np.float64) / count
    var = np.asarray(stats["sum_square"], dtype=np.float64) / count - mean * mean
    std = np.sqrt(np.maximum(var, 1.0e-20))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def apply_mvn(feats: torch.Tensor, stats: Dict[str, np.ndarray]) -> torch.Tensor:
    """Normalise features (..., F) to zero mean, unit variance with global statistics."""
    mean, std = mvn_mean_std(stats)
    if feats.shape[-1] != mean.shape[0]:
        raise ValueError(
            f"features have dimension {feats.shape[-1]} but the statistics have {mean.shape[0]}"
        )
    return (feats.float() - mean.to(feats.device)) / std.to(feats.device)

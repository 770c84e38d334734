"""Kaldi-compatible fbank, stacking and global MVN (docs/method.md §2, §3)."""

import numpy as np
import pytest
import soundfile
import torch

from chunkssl_espnet.features import (
    apply_mvn,
    compute_mvn_stats,
    kaldi_fbank,
    load_mvn_stats,
    load_wav,
    save_mvn_stats,
    stack_frames,
)


@pytest.fixture(scope="module")
def wav(librivox_dir):
    return load_wav(sorted(librivox_dir.glob("*.wav"))[1])


def test_load_wav(wav):
    waveform, sr = wav
    assert sr == 16000 and waveform.dtype == torch.float32 and waveform.dim() == 1
    assert 0.05 < waveform.abs().max() <= 1.0
    assert waveform.shape[0] == 95724 // 2 - 22  # 16-bit mono file of 95724 bytes, 44-byte header


def test_fbank_shape_and_values(wav):
    waveform, sr = wav
    feats = kaldi_fbank(waveform, sr)
    assert feats.shape == (1 + (waveform.shape[0] - 400) // 160, 80)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # log mel energies of 16-bit-scaled speech: roughly 0 .. 25 (natural log)
    assert 5.0 < feats.mean() < 20.0 and feats.max() < 30.0
    assert feats.std(0).min() > 0.5  # every bin moves with the speech


def test_fbank_is_frame_local_and_incremental(wav):
    waveform, sr = wav
    full = kaldi_fbank(waveform, sr)
    # A prefix gives the first frames exactly (streaming computes features incrementally).
    prefix = kaldi_fbank(waveform[: 400 + 160 * 99 + 37], sr)
    assert prefix.shape[0] == 100
    assert torch.allclose(prefix, full[:100], atol=1e-4)
    # A window starting at frame 123 gives frames 123.. : no state crosses frames.
    seg = kaldi_fbank(waveform[160 * 123 : 160 * 123 + 400 + 160 * 19], sr)
    assert torch.allclose(seg, full[123:143], atol=1e-4)


def test_fbank_errors_and_short_input():
    with pytest.raises(ValueError, match="8000 Hz.*16000"):
        kaldi_fbank(torch.zeros(16000), 8000)
    with pytest.raises(ValueError, match="1-D"):
        kaldi_fbank(torch.zeros(2, 16000))
    assert kaldi_fbank(torch.zeros(399)).shape == (0, 80)
    assert kaldi_fbank(torch.zeros(400)).shape == (1, 80)


def test_load_wav_errors(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_wav(missing)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio\n")
    with pytest.raises(ValueError, match="junk.wav"):
        load_wav(junk)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(ValueError, match="empty.wav.*empty"):
        load_wav(empty)
    narrow = tmp_path / "narrow.wav"
    soundfile.write(str(narrow), np.zeros(800, dtype=np.int16), 8000)
    assert load_wav(narrow)[1] == 8000  # no rate asked for: read as it is
    with pytest.raises(ValueError, match="narrow.wav is sampled at 8000 Hz, but the model "
                                         "expects 16000 Hz: resample it"):
        load_wav(narrow, 16000)


def test_stack_frames():
    feats = torch.arange(2 * 11 * 3, dtype=torch.float32).reshape(2, 11, 3)
    stacked, lens = stack_frames(feats, torch.tensor([11, 7]), 4)
    assert stacked.shape == (2, 2, 12) and lens.tolist() == [2, 1]
    assert torch.equal(stacked[1, 1], feats[1, 4:8].reshape(-1))


def test_mvn_round_trip(tmp_path, wav):
    feats = kaldi_fbank(*wav)
    stats = compute_mvn_stats([feats[:100], feats[100:]])
    assert int(stats["count"]) == feats.shape[0]
    normed = apply_mvn(feats, stats)
    assert normed.mean(0).abs().max() < 1e-3
    assert (normed.std(0, unbiased=False) - 1).abs().max() < 1e-3
    save_mvn_stats(stats, tmp_path / "feats_stats.npz")
    loaded = load_mvn_stats(tmp_path / "feats_stats.npz")
    assert torch.equal(apply_mvn(feats, loaded), normed)
    np.savez(tmp_path / "bad.npz", count=1, sum=np.zeros(80))
    with pytest.raises(ValueError, match="bad.npz.*sum_square"):
        load_mvn_stats(tmp_path / "bad.npz")

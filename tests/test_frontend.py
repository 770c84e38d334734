"""``KaldiFbankFrontend`` on a padded batch equals per-utterance Kaldi fbank (docs/method.md §2)."""

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from chunkssl_espnet.features import load_wav
from chunkssl_espnet.frontend import KaldiFbankFrontend

# samples: an arbitrary length, a whole number of hops past the window, one window, too short
LENGTHS = [23457, 16000 + 400 - 160, 400, 399]


def _kaldi_reference(wave: torch.Tensor) -> torch.Tensor:
    """torchaudio's Kaldi fbank of one utterance, the options of docs/method.md §2: (T, 80)."""
    if wave.numel() < 400:
        return torch.zeros(0, 80)
    return kaldi.fbank(wave[None] * 32768.0, num_mel_bins=80, frame_length=25.0,
                       frame_shift=10.0, dither=0.0, snip_edges=True, sample_frequency=16000.0)


@pytest.fixture(scope="module")
def waves(librivox_dir):
    wavs = sorted(librivox_dir.glob("*.wav"))
    return [load_wav(wavs[i % len(wavs)])[0][1000 : 1000 + n] for i, n in enumerate(LENGTHS)]


def test_padded_batch_equals_each_utterance(waves):
    front = KaldiFbankFrontend()
    lens = torch.tensor(LENGTHS)
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    noisy = batch.clone()  # what lies in the padding must not matter
    for i, n in enumerate(LENGTHS):
        noisy[i, n:] = torch.rand(batch.shape[1] - n) * 2 - 1
    feats, flens = front(batch, lens)
    feats_noisy, flens_noisy = front(noisy, lens)
    assert flens.tolist() == [1 + (n - 400) // 160 if n >= 400 else 0 for n in LENGTHS]
    assert flens.tolist() == [145, 100, 1, 0] and torch.equal(flens, flens_noisy)
    assert feats.shape == (4, 145, 80) and feats.dtype == torch.float32
    for i, w in enumerate(waves):
        ref = _kaldi_reference(w)
        n = ref.shape[0]
        assert n == flens[i]
        assert torch.allclose(feats[i, :n], ref, atol=1e-4), i
        assert (feats[i, n:] == 0).all(), i
    assert torch.equal(feats, feats_noisy)
    assert feats[0, :145].std() > 1.0  # real speech, not silence


def test_frame_count_edges():
    front = KaldiFbankFrontend()
    feats, lens = front(torch.zeros(2, 399), torch.tensor([399, 10]))
    assert lens.tolist() == [0, 0] and feats.shape == (2, 1, 80) and (feats == 0).all()
    assert front.output_size() == 80

"""Invariants of the chunked Conformer: streaming equals the masked full forward, no leaks."""

import pytest
import torch

from chunkssl_espnet.chunk_mask import plain_chunk_mask, sample_chunk_config
from chunkssl_espnet.encoder import ENCODER_PRESETS, ChunkConformerEncoder

TOL = 1e-5


def tiny_encoder(**kw) -> ChunkConformerEncoder:
    """d 16, 2 blocks; attention blocks of 8 query frames, so that the block-sparse attention
    runs several blocks on the tests' 50-frame utterances (the default, 64, would be dense)."""
    torch.manual_seed(0)
    conf = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
                cnn_module_kernel=5, dropout_rate=0.0, attention_block_frames=8)
    conf.update(kw)
    return ChunkConformerEncoder(80, **conf).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(3, 203, 80, generator=g)
    ilens = torch.tensor([203, 150, 77])
    xs[1, 150:] = 0.0
    xs[2, 77:] = 0.0
    return xs, ilens


def valid_mask(olens: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < olens[:, None]


@pytest.mark.parametrize("chunk", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("left", [-1, 1, 3])
def test_streaming_equals_masked_full_forward(batch, chunk, left):
    enc = tiny_encoder()
    xs, ilens = batch
    with torch.no_grad():
        full, olens, _ = enc.forward_masked(xs, ilens, chunk, left)
        stream, s_olens = enc.forward_chunk_by_chunk(xs, ilens, chunk, left)
    assert torch.equal(olens, s_olens)
    assert stream.shape == full.shape
    v = valid_mask(olens, full.shape[1])
    assert (stream - full).abs()[v].max() < TOL


def test_limited_left_context_matters(batch):
    """Guard against a vacuous streaming test: the left-chunk limit must change the output."""
    enc = tiny_encoder()
    xs, ilens = batch
    with torch.no_grad():
        a, olens, _ = enc.forward_masked(xs, ilens, 2, -1)
        b, _, _ = enc.forward_masked(xs, ilens, 2, 1)
    assert (a - b).abs()[valid_mask(olens, a.shape[1])].max() > 1e-3


def test_eval_forward_uses_decoding_chunk(batch):
    enc = tiny_encoder()
    xs, ilens = batch
    enc.set_decoding_chunk(4, 2)
    with torch.no_grad():
        out, olens, _ = enc(xs, ilens)
        ref, _, _ = enc.forward_masked(xs, ilens, 4, 2)
    assert torch.equal(out, ref)
    assert torch.equal(olens, ilens // 4)


def test_forward_contract_return_all_hs(batch):
    enc = tiny_encoder()
    xs, ilens = batch
    (out, hs), olens, states = enc(xs, ilens, return_all_hs=True)
    assert out.shape == (3, 50, 16) and len(hs) == 2 and states is None
    assert all(h.shape == out.shape for h in hs)


@pytest.mark.parametrize("chunk", [2, 4])
def test_future_chunk_does_not_leak(batch, chunk):
    enc = tiny_encoder()
    xs, ilens = batch
    i = 3  # perturb the fbank of chunk i + 1
    ys = xs.clone()
    lo, hi = 4 * chunk * (i + 1), 4 * chunk * (i + 2)
    ys[:, lo:hi] += torch.randn_like(ys[:, lo:hi])
    with torch.no_grad():
        a, _, _ = enc.forward_masked(xs, ilens, chunk, -1)
        b, _, _ = enc.forward_masked(ys, ilens, chunk, -1)
    past = (i + 1) * chunk
    assert (a[:, :past] - b[:, :past]).abs().max() < TOL
    assert (a[:, past:] - b[:, past:]).abs().max() > 1e-3  # the perturbation is seen later


def test_padding_never_changes_valid_frames(batch):
    enc = tiny_encoder()
    xs, ilens = batch
    ys = xs.clone()
    ys[1, 150:] = 100.0
    ys[2, 77:] = -50.0
    for chunk in (-1, 4):
        with torch.no_grad():
            a, olens, _ = enc.forward_masked(xs, ilens, chunk, -1)
            b, _, _ = enc.forward_masked(ys, ilens, chunk, -1)
        v = valid_mask(olens, a.shape[1])
        assert (a - b).abs()[v].max() < TOL
    # a padded utterance equals the same utterance alone
    with torch.no_grad():
        alone, _, _ = enc.forward_masked(xs[2:3, :77], ilens[2:3], 4, -1)
        batched, _, _ = enc.forward_masked(xs, ilens, 4, -1)
    assert (alone[0] - batched[2, : alone.shape[1]]).abs().max() < TOL


def test_short_inputs():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="at least 4 fbank frames"):
        enc.forward_masked(torch.randn(1, 3, 80), torch.tensor([3]), 4, -1)
    # shorter than one chunk: correct output (one partial chunk), streaming agrees
    xs = torch.randn(2, 9, 80)
    ilens = torch.tensor([9, 2])  # the second has no whole encoder frame
    with torch.no_grad():
        full, olens, _ = enc.forward_masked(xs, ilens, 16, -1)
        st, _ = enc.forward_chunk_by_chunk(xs, ilens, 16, -1)
    assert olens.tolist() == [2, 0]
    assert (full[0] - st[0]).abs().max() < TOL


def test_chunk_mask_is_additive_and_causal():
    m = plain_chunk_mask(6, 2)[0, 0]
    assert m.dtype == torch.float32
    assert (m[:2, :2] == 0).all() and (m[:2, 2:] < -1e30).all()
    assert (m[5, :] == 0).all()
    m_left = plain_chunk_mask(6, 2, num_left_chunks=1)[0, 0]
    assert (m_left[4, :2] < -1e30).all() and (m_left[4, 2:] == 0).all()


def test_dynamic_chunk_sampling_frequencies():
    g = torch.Generator().manual_seed(0)
    draws = [sample_chunk_config([4, 8, 16, 32], 0.3, [1, 2], g) for _ in range(4000)]
    full = sum(c == -1 for c, _ in draws) / len(draws)
    assert abs(full - 0.3) < 0.03
    sizes = {c for c, _ in draws if c > 0}
    assert sizes == {4, 8, 16, 32}
    assert {left for c, left in draws if c > 0} == {1, 2}


def test_training_mode_draws_chunks(batch):
    enc = tiny_encoder(chunk_sizes=[4, 8], full_context_prob=0.5)
    enc.train()
    torch.manual_seed(0)
    seen = {enc.chunk_config()[0] for _ in range(200)}
    assert seen == {-1, 4, 8}


def test_presets_sizes():
    tiny = ChunkConformerEncoder(80, preset="tiny")
    n = sum(p.numel() for p in tiny.parameters())
    assert 4e6 < n < 6e6, n
    assert ENCODER_PRESETS["base"]["output_size"] == 512
    with pytest.raises(ValueError, match="unknown encoder preset"):
        ChunkConformerEncoder(80, preset="huge")


@pytest.mark.parametrize("chunk", [-1, 4])
def test_bf16_autocast_close_to_fp32(batch, chunk):
    """Under CPU bf16 autocast (what ``--use_amp`` gives on bf16 hardware) the masked forward and
    the chunk-by-chunk streaming stay finite and close to fp32: per-frame cosine >= 0.999 on
    valid frames (the additive mask's most negative fp32 value becomes -inf in bf16)."""
    enc = tiny_encoder()
    xs, ilens = batch
    with torch.no_grad():
        ref, olens, _ = enc.forward_masked(xs, ilens, chunk, -1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _, _ = enc.forward_masked(xs, ilens, chunk, -1)
            outs = [low]
            if chunk > 0:
                outs.append(enc.forward_chunk_by_chunk(xs, ilens, chunk, -1)[0])
    v = valid_mask(olens, ref.shape[1])
    assert low.dtype in (torch.bfloat16, torch.float32)
    for out in outs:
        out = out.float()
        assert torch.isfinite(out).all()
        cos = torch.nn.functional.cosine_similarity(out, ref, dim=-1)[v]
        assert cos.min() >= 0.999, cos.min()  # measured 0.99995
        assert (out - ref)[v].abs().max() > 0  # it did run in lower precision

"""Copy-and-append equals the naive N-1 passes; nothing leaks between chunks or streams."""

import pytest
import torch

from chunkssl_espnet import copy_append_forward, naive_chunk_forward
from chunkssl_espnet.masking import apply_fbank_mask, chunk_span_mask
from tests.test_chunk_encoder import TOL, tiny_encoder


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(3, 203, 80, generator=g)  # 50 encoder frames, not a multiple of the chunks
    ilens = torch.tensor([203, 150, 77])
    return xs, ilens, g


def draw(xs, ilens, chunk, g):
    frame_mask = torch.rand(xs.shape[0], xs.shape[1] // 4, generator=g) < 0.5
    frame_mask &= torch.arange(frame_mask.shape[1])[None] < (ilens // 4)[:, None]
    return frame_mask, apply_fbank_mask(xs, frame_mask, generator=g)


def max_diff(a, b, valid):
    return (a - b).abs()[valid].max().item()


@pytest.mark.parametrize("chunk", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("left", [-1, 2])
def test_copy_append_equals_naive_at_every_layer(inputs, chunk, left):
    enc = tiny_encoder()
    xs, ilens, g = inputs
    fm, masked = draw(xs, ilens, chunk, g)
    with torch.no_grad():
        ours = copy_append_forward(enc, xs, ilens, chunk, fm, left, masked_feats=masked)
        ref = naive_chunk_forward(enc, xs, ilens, chunk, fm, left, masked_feats=masked)
    base_valid = torch.arange(ours.base.shape[1])[None] < ours.olens[:, None]
    assert torch.equal(ours.copies_valid, ref.copies_valid)
    assert ours.copies_valid.sum() > 0
    assert max_diff(ours.copies, ref.copies, ours.copies_valid) < TOL
    assert max_diff(ours.base, ref.base, base_valid) < TOL
    for a, b in zip(ours.copies_hs, ref.copies_hs):
        assert max_diff(a, b, ours.copies_valid) < TOL
    for a, b in zip(ours.base_hs, ref.base_hs):
        assert max_diff(a, b, base_valid) < TOL


def test_copies_differ_from_base(inputs):
    """The copies really see the masked input (guards against comparing base with base)."""
    enc = tiny_encoder()
    xs, ilens, g = inputs
    fm, masked = draw(xs, ilens, 4, g)
    with torch.no_grad():
        out = copy_append_forward(enc, xs, ilens, 4, fm, -1, masked_feats=masked)
    assert max_diff(out.copies, out.base, out.copies_valid) > 1e-2


def test_offline_batch_has_no_copies(inputs):
    enc = tiny_encoder()
    xs, ilens, g = inputs
    fm, masked = draw(xs, ilens, -1, g)
    with torch.no_grad():
        out = copy_append_forward(enc, xs, ilens, -1, fm, masked_feats=masked)
        ref, olens, _ = enc.forward_masked(masked, ilens, -1, -1)
    assert torch.equal(out.copies, ref)
    assert out.copies_valid.sum() == olens.sum()


@pytest.mark.parametrize("chunk", [2, 4])
def test_perturbing_next_chunk_leaks_nowhere_earlier(inputs, chunk):
    enc = tiny_encoder()
    xs, ilens, g = inputs
    fm, masked = draw(xs, ilens, chunk, g)
    i = 3  # chunk index (0-based) of B(i+1) in the paper's 1-based naming
    lo, hi = 4 * chunk * i, 4 * chunk * (i + 1)
    xs2, masked2 = xs.clone(), masked.clone()
    noise = torch.randn(xs.shape[0], hi - lo, 80, generator=g)
    xs2[:, lo:hi] += noise
    masked2[:, lo:hi] += noise
    with torch.no_grad():
        a = copy_append_forward(enc, xs, ilens, chunk, fm, masked_feats=masked)
        b = copy_append_forward(enc, xs2, ilens, chunk, fm, masked_feats=masked2)
    p = chunk * i
    assert (a.base[:, :p] - b.base[:, :p]).abs().max() < TOL  # B(<=i) unchanged
    assert (a.copies[:, :p] - b.copies[:, :p]).abs().max() < TOL  # copies of earlier chunks too
    assert (a.base[:, p:] - b.base[:, p:]).abs().max() > 1e-3


def test_perturbing_a_copy_changes_no_base_frame(inputs):
    enc = tiny_encoder()
    xs, ilens, g = inputs
    fm, masked = draw(xs, ilens, 4, g)
    masked2 = masked.clone()
    masked2[:, 64:80] += 5.0  # only the masked copy of chunk 4 changes
    with torch.no_grad():
        a = copy_append_forward(enc, xs, ilens, 4, fm, masked_feats=masked)
        b = copy_append_forward(enc, xs, ilens, 4, fm, masked_feats=masked2)
    assert (a.base - b.base).abs().max() < TOL
    other = torch.ones(50, dtype=torch.bool)
    other[16:20] = False
    assert (a.copies[:, other] - b.copies[:, other]).abs().max() < TOL
    assert (a.copies[:, 16:20] - b.copies[:, 16:20]).abs().max() > 1e-3


def test_backward_runs_and_reaches_all_parameters(inputs):
    enc = tiny_encoder()
    enc.train()
    xs, ilens, g = inputs
    fm = chunk_span_mask(ilens // 4, 50, 4, generator=g)
    out = copy_append_forward(enc, xs, ilens, 4, fm)
    loss = out.copies[out.copies_valid].pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in enc.parameters())

"""Block-sparse chunk attention equals dense masked attention, forward and gradients.

The plan (chunkssl_espnet/encoder/block_sparse.py) computes only the query/key pairs the chunk mask
can let through. Compared here against the dense plan of the same pass (every pair, chunk mask):
the attention module on copy-and-append and plain layouts, then whole encoders, then the
copy-and-append pass with its gradients. Padded queries are free in both (their outputs are never
used), so comparisons are on valid frames.
"""

import pytest
import torch

from chunkssl_espnet import copy_append_forward
from chunkssl_espnet.encoder.attention import RelPositionMultiHeadAttention
from chunkssl_espnet.encoder.block_sparse import chunk_attention_plan
from chunkssl_espnet.encoder.subsampling import Conv2dSubsampling4
from chunkssl_espnet.masking import apply_fbank_mask
from tests.test_chunk_encoder import tiny_encoder

D, H = 16, 2


def copy_append_layout(n_chunks: int, c: int):
    """(pos, copy_id) of ``[B1..BN, E1..E(N-1)]``: copies of chunks 1..N-1 at their positions."""
    base = torch.arange(n_chunks * c)
    copies = torch.arange(c, n_chunks * c)
    return torch.cat([base, copies]), torch.cat([torch.zeros_like(base), copies // c])


def plain_layout(t: int):
    pos = torch.arange(t)
    return pos, torch.zeros_like(pos)


def attention_pair(pos, copy_id, chunk, left, lens, block_frames):
    """Outputs and input gradients of one attention module under the block and dense plans."""
    torch.manual_seed(0)
    attn = RelPositionMultiHeadAttention(H, D).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    key_valid = pos[None, :] < lens[:, None]  # (B, L)
    x = torch.randn(lens.shape[0], pos.shape[0], D, generator=torch.Generator().manual_seed(1))
    results = []
    for frames in (block_frames, 0):
        plan = chunk_attention_plan(pos, copy_id, chunk, left, key_valid, D, frames)
        xi = x.clone().requires_grad_(True)
        out, _ = attn(xi, plan)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
        (out * weight * key_valid[..., None]).sum().backward()
        grads = {n: p.grad.clone() for n, p in attn.named_parameters()}
        attn.zero_grad()
        results.append((plan, out.detach(), xi.grad, grads))
    return results, key_valid


@pytest.mark.parametrize("layout", ["copy_append", "plain"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("left", [-1, 0, 2])
def test_block_attention_equals_dense_forward_and_gradients(layout, chunk, left):
    n_chunks = max(2, 48 // chunk)
    if layout == "copy_append":
        pos, copy_id = copy_append_layout(n_chunks, chunk)
    else:
        pos, copy_id = plain_layout(n_chunks * chunk - 1)  # last chunk not whole
    lens = torch.tensor([n_chunks * chunk, n_chunks * chunk * 2 // 3, chunk + 1])
    (blocks, dense), valid = attention_pair(pos, copy_id, chunk, left, lens, 8)
    assert len(blocks[0].blocks) > 1 and len(dense[0].blocks) == 1
    assert (blocks[1] - dense[1]).abs()[valid].max() < 1e-5
    assert (blocks[2] - dense[2]).abs().max() < 1e-5  # gradient w.r.t. the input
    for name, g in dense[3].items():
        assert (blocks[3][name] - g).abs().max() < 1e-4 * max(1.0, g.abs().max()), name


def visited_pairs(plan) -> int:
    return sum(b.mask.shape[-2] * b.mask.shape[-1] for b in plan.blocks)


def test_benchmark_pass_visits_fewer_pairs():
    """The chunk step of the throughput benchmark (375 frames, chunk 16, all left chunks) and a
    limited left context: block plans visit a fraction of the (2T)^2 pairs, still every visible
    one (the dense mask's visible pairs all lie in blocks)."""
    pos, copy_id = copy_append_layout(24, 16)
    dense_pairs = pos.numel() ** 2
    for left, most in ((-1, 0.45), (2, 0.25)):
        plan = chunk_attention_plan(pos, copy_id, 16, left, None, D)
        dense = chunk_attention_plan(pos, copy_id, 16, left, None, D, 0)
        assert visited_pairs(plan) <= most * dense_pairs, (left, visited_pairs(plan) / dense_pairs)
        in_blocks = sum(int((b.mask == 0).sum()) for b in plan.blocks)
        assert in_blocks == int((dense.blocks[0].mask == 0).sum())


@pytest.mark.parametrize("chunk, left", [(2, -1), (4, 1), (8, -1)])
def test_encoder_blocks_equal_dense(chunk, left):
    """Whole encoders (attention, convolutions, every layer): the plain chunked forward and the
    copy-and-append pass give the same outputs and parameter gradients with and without blocks."""
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(2, 203, 80, generator=g)
    ilens = torch.tensor([203, 131])
    frame_mask = torch.rand(2, 50, generator=g) < 0.5
    masked = apply_fbank_mask(xs, frame_mask, generator=g)
    runs = []
    for frames in (8, 0):
        enc = tiny_encoder(attention_block_frames=frames)
        plain, olens, _ = enc.forward_masked(xs, ilens, chunk, left)
        out = copy_append_forward(enc, xs, ilens, chunk, frame_mask, left, masked_feats=masked)
        valid = torch.arange(50)[None] < olens[:, None]
        loss = (plain[valid].square().sum() + out.copies[out.copies_valid].square().sum()
                + out.base[valid].sum())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in enc.named_parameters()}
        runs.append((plain.detach(), out, valid, grads))
    (p1, o1, v, g1), (p0, o0, _, g0) = runs
    assert (p1 - p0).abs()[v].max() < 1e-5
    assert (o1.copies - o0.copies).abs()[o1.copies_valid].max() < 1e-5
    for name, g in g0.items():
        assert (g1[name] - g).abs().max() < 1e-4 * max(1.0, g.abs().max()), name


def test_one_subsampling_call_for_base_and_copies():
    """The base stream as the head of the copies' image sub-samples as it does alone, and each
    copy as it does alone after its 4 frames of clean left context."""
    torch.manual_seed(0)
    sub = Conv2dSubsampling4(80, 16).eval()
    g = torch.Generator().manual_seed(4)
    clean = torch.randn(2, 96, 80, generator=g)  # 3 chunks of 8 encoder frames
    segs = torch.randn(2, 2, 32, 80, generator=g)
    ctx = clean.view(2, 3, 32, 80)[:, :-1, -4:]
    with torch.no_grad():
        joint = sub.forward_segments(ctx, segs, head=clean)
        alone = torch.cat([sub(clean)] + [sub.forward_segment(ctx[:, m], segs[:, m])
                                          for m in range(2)], dim=1)
    assert joint.shape == (2, 24 + 16, 16)
    assert (joint - alone).abs().max() < 1e-5
    with pytest.raises(ValueError, match="head must be a multiple"):
        sub.forward_segments(ctx, segs, head=clean[:, :95])

"""Group masked prediction loss: exact product-model NLL at sum_g V_g logits (docs/method.md §4)."""

import math

import pytest
import torch
import torch.nn.functional as F
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from typeguard import TypeCheckError

from chunkssl_espnet.fsq import FSQ
from chunkssl_espnet.group_loss import GroupMaskedPredictionLoss


def _batch(levels, d_model: int = 16, seed: int = 0, b: int = 3, t: int = 40):
    """Random encoder output (B, L, D), group targets (B, L, G) with padding, loss mask (B, L)."""
    g = torch.Generator().manual_seed(seed)
    fsq = FSQ(levels)
    x = torch.randn(b, t, d_model, generator=g)
    idx = torch.randint(0, fsq.codebook_size, (b, t), generator=g)
    targets = fsq.group_indices(fsq.indices_to_codes(idx), 3)
    targets[1, 30:] = -1  # padding
    mask = torch.rand(b, t, generator=g) < 0.5
    mask[0, :3] = True
    return x, targets, mask, idx


def _product_full_head(group: GroupMaskedPredictionLoss, full: GroupMaskedPredictionLoss) -> None:
    """Set the full-softmax head to the product of the group distributions:
    logit[k] = sum_g logit_g[k_g] is linear in x (the per-group normalisers cancel)."""
    sizes = group.group_vocab_sizes
    w_groups = group.head.weight.split(sizes, 0)
    b_groups = group.head.bias.split(sizes, 0)
    k = torch.arange(math.prod(sizes))
    radix = [math.prod(sizes[:g]) for g in range(len(sizes))]
    with torch.no_grad():
        full.head.weight.zero_()
        full.head.bias.zero_()
        for g in range(len(sizes)):
            k_g = (k // radix[g]) % sizes[g]
            full.head.weight += w_groups[g][k_g]
            full.head.bias += b_groups[g][k_g]


def test_head_has_sum_not_product_outputs():
    loss = GroupMaskedPredictionLoss(16, levels="2M", group_size=3)
    assert loss.group_vocab_sizes == [125, 125, 125]
    assert loss.head.out_features == 375 and sum(p.numel() for p in loss.parameters()) == 375 * 17
    assert GroupMaskedPredictionLoss(16, levels="1k").head.out_features == 200 + 5
    assert GroupMaskedPredictionLoss(16, levels="1k", full_softmax=True).head.out_features == 1000


def test_espnet_contract():
    loss = GroupMaskedPredictionLoss(16, levels=[8, 5, 5, 5])
    assert isinstance(loss, AbsSSLLoss)
    assert loss.util_attributes == []
    assert loss.required_inputs == ["encoder_output", "fsq_targets", "loss_mask"]


def test_group_loss_equals_full_softmax_of_product_model():
    group = GroupMaskedPredictionLoss(16, levels="1k", group_size=3)
    full = GroupMaskedPredictionLoss(16, levels="1k", group_size=3, full_softmax=True)
    _product_full_head(group, full)
    x, targets, mask, idx = _batch([8, 5, 5, 5])
    loss_g, stats_g = group([x], targets, mask)
    loss_f, stats_f = full([x], targets, mask)

    # Written out: full logits = sum of the group log-probabilities at each code's digits.
    scored = mask & (targets >= 0).all(-1)
    logp = [F.log_softmax(z, -1) for z in group.head(x[scored]).split([200, 5], -1)]
    k = torch.arange(1000)
    full_logits = logp[0][:, k % 200] + logp[1][:, k // 200]
    expected = F.cross_entropy(full_logits, idx[scored])

    assert torch.allclose(loss_g, expected, atol=1e-5)
    assert torch.allclose(loss_f, expected, atol=1e-5)
    assert float(stats_g["num_masked"]) == int(scored.sum()) > 0
    for key in ("acc_g0", "acc_g1", "acc_joint"):
        assert torch.allclose(stats_g[key], stats_f[key])


def test_stats_and_gradient():
    loss_fn = GroupMaskedPredictionLoss(16, levels="2M")
    x, targets, mask, _ = _batch([5] * 9)
    x.requires_grad_(True)
    # Make group 1 trivially predictable so the accuracies are distinguishable.
    with torch.no_grad():
        loss_fn.head.bias[125 + 7] = 1e4
    targets[..., 1] = torch.where(targets[..., 1] >= 0, 7, -1)
    loss, stats = loss_fn([x.detach() * 0, x], targets, mask)  # layer -1 is the last entry
    loss.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert stats["acc_g1"] == 1.0 and stats["acc_g0"] < 0.2 and stats["acc_joint"] < 0.2
    assert set(stats) == {"loss", "acc_g0", "acc_g1", "acc_g2", "acc_joint", "num_masked",
                          "sample_size"}
    assert float(stats["sample_size"]) == float(stats["num_masked"]) == int(
        (mask & (targets >= 0).all(-1)).sum())
    assert not any(v.requires_grad for v in stats.values())
    assert (x.grad[~mask].abs().sum() == 0) and x.grad[mask].abs().sum() > 0
    first = GroupMaskedPredictionLoss(16, levels="2M", layer=0)
    with torch.no_grad():
        first.head.load_state_dict(loss_fn.head.state_dict())
    assert torch.allclose(first([x, x * 0], targets, mask)[0], loss)


def test_no_scored_frame_gives_connected_zero():
    loss_fn = GroupMaskedPredictionLoss(16, levels="1k")
    x, targets, mask, _ = _batch([8, 5, 5, 5])
    x.requires_grad_(True)
    loss, stats = loss_fn([x], targets, torch.zeros_like(mask))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert loss_fn.head.weight.grad is not None and torch.all(loss_fn.head.weight.grad == 0)
    assert x.grad is not None
    # the same keys as a scoring batch, all tensors (ESPnet all-reduces them key by key), with
    # accuracies that vanish under a near-zero weight
    _, scoring = loss_fn([x], targets, mask)
    assert set(stats) == set(scoring)
    assert all(isinstance(v, torch.Tensor) and torch.isfinite(v) for v in stats.values())
    assert float(stats["acc_g0"]) == float(stats["acc_joint"]) == 0.0
    assert float(stats["num_masked"]) == 0
    assert 0 < float(stats["sample_size"]) <= 1e-6


def test_bf16_autocast_loss_is_fp32():
    loss_fn = GroupMaskedPredictionLoss(16, levels="1k")
    x, targets, mask, _ = _batch([8, 5, 5, 5])
    ref, _ = loss_fn([x], targets, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = loss_fn([x], targets, mask)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, rtol=2e-2)


def test_clear_errors():
    with pytest.raises(ValueError, match="full_softmax.*1953125"):
        GroupMaskedPredictionLoss(16, levels="2M", full_softmax=True)
    with pytest.raises(ValueError, match="level"):
        GroupMaskedPredictionLoss(16, levels=[5, 1])
    with pytest.raises(TypeCheckError):
        GroupMaskedPredictionLoss(16, levels=3.5)
    loss_fn = GroupMaskedPredictionLoss(16, levels="1k")
    x, targets, mask, _ = _batch([8, 5, 5, 5])
    with pytest.raises(ValueError, match="fsq_targets must be"):
        loss_fn([x], targets[:, :-1], mask)
    with pytest.raises(ValueError, match="loss_mask must be"):
        loss_fn([x], targets, mask[:, :-1])
    with pytest.raises(ValueError, match="exceed the group vocabularies"):
        loss_fn([x], targets + 200, mask)

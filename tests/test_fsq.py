"""FSQ: implicit codebook, mixed-radix indices, straight-through rounding (docs/method.md §3)."""

import math

import pytest
import torch

from chunkssl_espnet.fsq import FSQ, LEVEL_PRESETS, resolve_levels


def _inverse_bound(fsq: FSQ, codes: torch.Tensor) -> torch.Tensor:
    """A pre-quantisation z whose bounded value is exactly the code's grid point."""
    levels = torch.tensor(fsq.levels, dtype=torch.float32)
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(torch.tensor(fsq.levels) % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    grid = codes * torch.tensor([lv // 2 for lv in fsq.levels], dtype=torch.float32)
    return torch.atanh((grid + offset) / half_l) - shift


def test_every_code_of_1k_round_trips_and_is_unique():
    fsq = FSQ([8, 5, 5, 5])
    assert fsq.codebook_size == 1000 and isinstance(fsq.codebook_size, int)
    indices = torch.arange(1000)
    codes = fsq.indices_to_codes(indices)
    assert codes.shape == (1000, 4) and codes.dtype == torch.float32
    assert torch.unique(codes, dim=0).shape[0] == 1000
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    # Every code is reachable by quantize and maps back to itself.
    assert torch.equal(fsq.quantize(_inverse_bound(fsq, codes)), codes)
    # The mixed-radix definition, written out.
    digits = fsq.codes_to_digits(codes)
    expected = digits[:, 0] + 8 * digits[:, 1] + 40 * digits[:, 2] + 200 * digits[:, 3]
    assert torch.equal(fsq.codes_to_indices(codes), expected)
    # Grid: channel 0 (L=8) takes k/4, k=-4..3; the others (L=5) k/2, k=-2..2.
    assert sorted(set(codes[:, 0].tolist())) == [k / 4 for k in range(-4, 4)]
    assert sorted(set(codes[:, 1].tolist())) == [k / 2 for k in range(-2, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_244m_random_codes_range_and_round_trip(dtype):
    fsq = FSQ(LEVEL_PRESETS["244M"])
    assert fsq.codebook_size == 5**12 == 244_140_625
    z = (torch.randn(64, 50, 12, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    codes = fsq.quantize(z)
    assert codes.dtype == torch.float32 and codes.shape == (64, 50, 12)
    assert codes.abs().max() <= 1.0
    assert torch.equal(codes * 2, (codes * 2).round())  # on the 5-level grid
    idx = fsq.codes_to_indices(codes)
    assert idx.dtype == torch.int64 and idx.shape == (64, 50)
    assert idx.min() >= 0 and idx.max() < fsq.codebook_size
    assert torch.equal(fsq.indices_to_codes(idx), codes)
    assert torch.unique(idx).numel() > 3000  # spread over the codebook, not a few codes


def test_quantize_is_fp32_under_autocast():
    fsq = FSQ([5] * 9)
    z = torch.randn(20, 9, generator=torch.Generator().manual_seed(1))
    ref = fsq.quantize(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fsq.quantize(z)
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_codebook_is_never_materialised():
    fsq = FSQ([5] * 12)
    assert list(fsq.parameters()) == [] and fsq.state_dict() == {}
    assert sum(b.numel() for b in fsq.buffers()) == 3 * 12


def test_straight_through_gradient():
    fsq = FSQ([8, 5, 5, 5])
    z = torch.randn(32, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    (fsq.quantize(z) * torch.arange(1.0, 5.0)).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    half_width = torch.tensor([4.0, 2.0, 2.0, 2.0])
    (fsq.bound(z2) / half_width * torch.arange(1.0, 5.0)).sum().backward()
    assert torch.allclose(z.grad, z2.grad)  # rounding passes the gradient through unchanged
    assert (z.grad.abs() > 0).all()


@pytest.mark.parametrize("num_levels", [2, 3, 4, 5, 6, 7, 8])
def test_each_level_count_is_used_exactly(num_levels):
    fsq = FSQ([num_levels])
    codes = fsq.quantize(torch.linspace(-6, 6, 2001).unsqueeze(-1))
    assert torch.unique(codes).numel() == num_levels
    assert torch.equal(torch.unique(fsq.codes_to_indices(codes)), torch.arange(num_levels))


def test_presets_and_names():
    sizes = {name: math.prod(resolve_levels(name)) for name in LEVEL_PRESETS}
    assert sizes == {
        "1k": 1000,
        "64k": 64000,
        "2M": 1_953_125,
        "10M": 9_765_625,
        "244M": 244_140_625,
    }
    assert resolve_levels("8,5,5,5") == [8, 5, 5, 5]
    assert FSQ(resolve_levels("2M")).dim == 9


def test_group_indices_join_to_full_index():
    for levels, sizes in (([5] * 9, [125, 125, 125]), ([8, 5, 5, 5], [200, 5])):
        fsq = FSQ(levels)
        assert fsq.group_sizes(3) == sizes
        idx = torch.randint(0, fsq.codebook_size, (7, 33), generator=torch.Generator())
        groups = fsq.group_indices(fsq.indices_to_codes(idx), 3)
        assert groups.shape == (7, 33, len(sizes)) and groups.dtype == torch.int64
        for g, v in enumerate(sizes):
            assert groups[..., g].min() >= 0 and groups[..., g].max() < v
        radix = [math.prod(sizes[:g]) for g in range(len(sizes))]
        assert torch.equal((groups * torch.tensor(radix)).sum(-1), idx)


@pytest.mark.parametrize("levels", [[], [1], [5, 1], [5, 0], [2.5]])
def test_bad_levels_raise(levels):
    with pytest.raises(ValueError, match="level"):
        FSQ(levels)


def test_bad_inputs_raise():
    fsq = FSQ([5, 5, 5])
    with pytest.raises(ValueError, match="last dimension 3"):
        fsq.quantize(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="last dimension 3"):
        fsq.codes_to_indices(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="group_size"):
        fsq.group_sizes(0)
    with pytest.raises(ValueError, match="unknown FSQ levels"):
        resolve_levels("3M")


@pytest.mark.parametrize("levels", [[5] * 9, [8, 5, 5, 5], [8, 6, 5], [2] * 10])
@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
def test_group_indices_of_z_equal_the_codes_path(levels, group_size):
    """The labelling shortcut (bound, round, one radix product) gives exactly the indices of
    quantize then group_indices, on values spread over and beyond every level, and on the
    level boundaries themselves (z exactly halfway between two grid points)."""
    fsq = FSQ(levels)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, fsq.dim, generator=g) * 3
    idx = torch.randint(0, fsq.codebook_size, (500,), generator=g)
    grid = fsq.indices_to_codes(idx)
    half = 1.0 / torch.tensor([max(1, lv // 2) for lv in levels], dtype=torch.float32)
    halfway = _inverse_bound(fsq, (grid + 0.5 * half).clamp(-1, 1))
    z = torch.cat([z, halfway[torch.isfinite(halfway).all(-1)]])  # the top edge has no halfway
    ref = fsq.group_indices(fsq.quantize(z), group_size)
    got = fsq.group_indices_of(z, group_size)
    assert got.dtype == torch.int64 and torch.equal(got, ref)
    assert torch.equal(fsq.group_indices_of(z.to(torch.bfloat16), group_size),
                       fsq.group_indices(fsq.quantize(z.to(torch.bfloat16)), group_size))


def test_group_indices_of_z_exact_for_groups_beyond_fp32_integers():
    """One group over the whole 244M codebook: indices above 2^24, which fp32 sums would round."""
    fsq = FSQ(resolve_levels("244M"))
    assert fsq.codebook_size > 2**24
    z = torch.randn(20000, fsq.dim, generator=torch.Generator().manual_seed(3)) * 3
    ref = fsq.group_indices(fsq.quantize(z), fsq.dim)
    assert ref.max() > 2**24
    assert torch.equal(fsq.group_indices_of(z, fsq.dim), ref)

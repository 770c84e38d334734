"""Span masking inside chunks follows docs/method.md section 5."""

import pytest
import torch

from chunkssl_espnet.masking import apply_fbank_mask, chunk_span_mask


@pytest.mark.parametrize("chunk", [4, 8, 16, 32, -1])
def test_ratio_and_one_unmasked_frame_per_chunk(chunk):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([250, 173, 96, 61])
    total_masked, total = 0, 0
    for _ in range(200):
        m = chunk_span_mask(lengths, 250, chunk, ratio=0.45, generator=g)
        valid = torch.arange(250)[None] < lengths[:, None]
        assert not (m & ~valid).any()
        c = 250 if chunk <= 0 else chunk
        for b, n in enumerate(lengths.tolist()):
            for s in range(0, n, c):
                e = min(s + c, n)
                if e - s >= 2:
                    assert not m[b, s:e].all()
        total_masked += m.sum().item()
        total += valid.sum().item()
    assert abs(total_masked / total - 0.45) < 0.02


def test_spans_are_contiguous_runs_of_four():
    g = torch.Generator().manual_seed(0)
    m = chunk_span_mask(torch.tensor([320]), 320, 32, generator=g)[0].int()
    runs, cur = [], 0
    for v in m.tolist() + [0]:
        if v:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    assert sum(r >= 4 for r in runs) >= len(runs) * 0.6, runs


def test_fbank_mask_fills_with_small_noise():
    g = torch.Generator().manual_seed(0)
    feats = torch.full((1, 40, 80), 7.0)
    fm = torch.zeros(1, 10, dtype=torch.bool)
    fm[0, 2:4] = True
    out = apply_fbank_mask(feats, fm, generator=g)
    assert torch.equal(out[0, :8], feats[0, :8]) and torch.equal(out[0, 16:], feats[0, 16:])
    assert abs(out[0, 8:16].std().item() - 0.1) < 0.02


def test_bad_ratio():
    with pytest.raises(ValueError, match="mask ratio"):
        chunk_span_mask(torch.tensor([10]), 10, 4, ratio=1.5)

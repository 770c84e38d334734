"""Our relative-position attention equals ESPnet's on contiguous positions (docs/method.md §8).

Reference: ESPnet's ``RelPositionMultiHeadedAttention`` with its ``RelPositionalEncoding``, the
pair that ESPnet's Conformer uses with ``rel_pos_type: latest`` (espnet/nets/pytorch_backend/
transformer/attention.py and embedding.py; ESPnet computes the positional term with its
``rel_shift`` trick, we gather it per query/key pair). Our weights are copied onto ESPnet's module
by name; then outputs agree with and without a chunk mask and with padded keys, d 16, 2 heads.
"""

import pytest
import torch
from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding

from chunkssl_espnet.chunk_mask import plain_chunk_mask
from chunkssl_espnet.encoder.attention import (
    AttentionPlan,
    RelativePositions,
    RelPositionMultiHeadAttention,
    sinusoid,
)

D, H, T = 16, 2, 13
TOL = 1e-5
# our parameter -> ESPnet's parameter (same shapes: Linear (D, D) weights, biases (H, d_k))
WEIGHT_MAP = {
    "linear_q.weight": "linear_q.weight", "linear_q.bias": "linear_q.bias",
    "linear_k.weight": "linear_k.weight", "linear_k.bias": "linear_k.bias",
    "linear_v.weight": "linear_v.weight", "linear_v.bias": "linear_v.bias",
    "linear_out.weight": "linear_out.weight", "linear_out.bias": "linear_out.bias",
    "linear_pos.weight": "linear_pos.weight",
    "pos_bias_u": "pos_bias_u", "pos_bias_v": "pos_bias_v",
}  # fmt: skip


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ours = RelPositionMultiHeadAttention(H, D).eval()
    for p in ours.parameters():  # biases are zero at init; make every term matter
        torch.nn.init.normal_(p, std=0.3)
    ref = RelPositionMultiHeadedAttention(H, D, 0.0).eval()
    assert set(WEIGHT_MAP) == set(ours.state_dict())
    assert set(WEIGHT_MAP.values()) == set(ref.state_dict())
    ref.load_state_dict({WEIGHT_MAP[k]: v for k, v in ours.state_dict().items()})
    x = torch.randn(3, T, D, generator=torch.Generator().manual_seed(1))
    return ours, ref, x


def _espnet(ref, x, mask):
    """mask: (B or 1, T, T) bool, True = attend, or None."""
    _, pos_emb = RelPositionalEncoding(D, 0.0)(x)  # (1, 2T - 1, D), distances T-1 .. -(T-1)
    with torch.no_grad():
        return ref(x, x, x, pos_emb, mask)


def _ours(ours, x, additive, pos=None):
    pos = torch.arange(T) if pos is None else pos
    with torch.no_grad():
        return ours(x, AttentionPlan.dense(RelativePositions(pos, pos, D), additive))[0]


def test_sinusoid_table_is_espnets_reversed():
    """Same sinusoid of the signed distance i - j (sin at even, cos at odd channels); ESPnet
    lists distances from T-1 down to -(T-1), our table from -(T-1) up to T-1."""
    _, pos_emb = RelPositionalEncoding(D, 0.0)(torch.zeros(1, T, D))
    table = RelativePositions(torch.arange(T), torch.arange(T), D).table
    assert torch.allclose(table, pos_emb[0].flip(0), atol=1e-6)
    assert torch.allclose(sinusoid(torch.tensor([T - 1]), D), pos_emb[0, :1], atol=1e-6)


@pytest.mark.parametrize("chunk", [-1, 1, 3])
def test_equals_espnet_with_chunk_mask_and_padding(pair, chunk):
    ours, ref, x = pair
    valid = torch.arange(T)[None, :] < torch.tensor([T, 9, 4])[:, None]  # (B, T) keys
    additive = plain_chunk_mask(T, chunk, key_valid=valid)  # (B, 1, T, T)
    out = _ours(ours, x, additive)
    expected = _espnet(ref, x, additive[:, 0] == 0)
    q_valid = valid  # padded queries are free (they see every key); their outputs are unused
    assert (out - expected)[q_valid].abs().max() < TOL
    if chunk == -1:  # no mask at all on the unpadded utterance
        plain = _espnet(ref, x[:1], None)
        assert (_ours(ours, x[:1], torch.zeros(1, 1, T, T)) - plain).abs().max() < TOL


def test_only_distances_matter_and_the_sign_is_espnets(pair):
    """Shifting every position changes nothing; flipping the sign of the distances (keys to the
    right taken as to the left) no longer matches ESPnet, so the comparison sees the sign."""
    ours, ref, x = pair
    additive = plain_chunk_mask(T, 3)
    expected = _espnet(ref, x, additive[:, 0] == 0)
    shifted = _ours(ours, x, additive, torch.arange(T) + 37)
    assert (shifted - expected).abs().max() < TOL
    flipped = _ours(ours, x, additive, -torch.arange(T))
    assert (flipped - expected).abs().max() > 1e-2

"""bf16 autocast of the Chunk SSL model (``model_conf.autocast_dtype: bfloat16``) on CPU.

The same tiny model and real LibriVox batch as tests/test_ssl_model.py. What must hold: the
encoder's matrix products run in bf16 (seen by hooks on every encoder Linear and Conv), the FSQ
targets and the loss stay fp32 and the targets equal fp32's, the encoder outputs stay close to
fp32's, and 20 training steps from the same initialisation end at about the same loss. A tokenizer
cast whole to another dtype keeps fp32 and its codes.
"""

import copy

import pytest
import torch

from chunkssl_espnet.ssl_model import ChunkSSLModel
from chunkssl_espnet.tokenizer import build_tokenizer
from tests.test_ssl_model import setup  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bf16_copy(model: ChunkSSLModel) -> ChunkSSLModel:
    low = copy.deepcopy(model)
    low.autocast_dtype = torch.bfloat16
    return low


def product_dtypes(model: ChunkSSLModel):
    """Output dtypes of the encoder's and the loss's Linear/Conv modules, recorded by hooks."""
    seen = {"encoder": set(), "loss": set()}
    handles = []
    for part, root in (("encoder", model.encoder), ("loss", model.losses)):
        for mod in root.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                handles.append(mod.register_forward_hook(
                    lambda m, i, o, part=part: seen[part].add(o.dtype)))
    return seen, handles


def loss_of(model, speech, lens):
    loss, stats, _ = model(speech, lens)
    return loss


def test_encoder_products_run_in_bf16_targets_and_loss_in_fp32(setup):  # noqa: F811
    model, speech, lens = setup["model"], setup["speech"], setup["lens"]
    low = bf16_copy(model)
    model.eval(), low.eval()
    seen, handles = product_dtypes(low)
    try:
        with torch.no_grad():
            ref = model.encode(speech, lens)
            out = low.encode(speech, lens)
            loss = loss_of(low, speech, lens)
    finally:
        for h in handles:
            h.remove()
    assert seen["encoder"] == {torch.bfloat16}
    assert seen["loss"] == {torch.float32} and loss.dtype == torch.float32
    assert torch.equal(out["fsq_targets"], ref["fsq_targets"])
    assert torch.equal(out["loss_mask"], ref["loss_mask"])
    valid = torch.arange(ref["loss_mask"].shape[1])[None] < ref["encoder_output_lengths"][:, None]
    for a, b in zip(out["encoder_output"], ref["encoder_output"]):
        assert a.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)[valid & (valid.cumsum(1) > 8)]
        assert cos.min() >= 0.99, cos.min()
        assert (a - b).abs().max() > 0  # it did run in lower precision


def test_twenty_training_steps_in_bf16_end_near_fp32(setup):  # noqa: F811
    """Adam at lr 2e-3 on the same batch, the same masks (same seeds), from the same weights."""
    speech, lens = setup["speech"], setup["lens"]
    finals = []
    for dtype in (None, torch.bfloat16):
        model = copy.deepcopy(setup["model"]).train()
        model.autocast_dtype = dtype
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
        torch.manual_seed(5)
        losses = []
        for _ in range(20):
            loss = loss_of(model, speech, lens)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(p.dtype == torch.float32 for p in model.parameters())
        finals.append(losses)
    fp32, bf16 = finals
    assert fp32[-1] < 0.9 * fp32[0]  # it trained
    assert abs(bf16[-1] - fp32[-1]) <= 0.02 * fp32[-1], (fp32[-1], bf16[-1])


def test_model_rejects_unknown_autocast_dtype(setup):  # noqa: F811
    model = setup["model"]
    with pytest.raises(ValueError, match="autocast_dtype must be one of"):
        ChunkSSLModel(model.frontend, None, model.normalize, None, model.encoder,
                      list(model.losses), set(), set(), torch.nn.ModuleDict(),
                      autocast_dtype="float8")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_tokenizer_cast_whole_keeps_fp32_and_its_codes(setup, dtype):  # noqa: F811
    """A model cast to another dtype (``model.to(dtype)``, as ESPnet's ``--train_dtype`` does)
    once cast the random projection while its input stayed fp32: a dtype error, or other codes."""
    tok = build_tokenizer("random").fit(
        [(f[None], torch.tensor([f.shape[0]])) for f in setup["normed"]])
    feats = setup["normed"][0][None]
    lens = torch.tensor([feats.shape[1]])
    ref, _ = tok(feats, lens)
    cast = copy.deepcopy(tok).to(dtype)
    assert all(b.dtype == torch.float32 for b in cast.buffers() if b.is_floating_point())
    codes, _ = cast(feats, lens)
    assert torch.equal(codes, ref)
    low, _ = cast(feats.to(dtype), lens)  # features in that dtype are taken up to fp32
    assert low.shape == ref.shape and (low >= 0).all()

"""Conv2dSubsampling4: windowed images and the padded convolution give the reference outputs.

The reference is written out here as the module computed it before these optimisations: one
image per utterance, a zero frame padded on the left in time before each convolution.
"""

import pytest
import torch
import torch.nn.functional as F

from chunkssl_espnet.encoder.subsampling import Conv2dSubsampling4


def reference(sub: Conv2dSubsampling4, xs: torch.Tensor) -> torch.Tensor:
    """(B, T, F) -> (B, T // 4, D): left pad, conv, relu, twice; then the linear layer."""
    x = xs.unsqueeze(1)
    x = torch.relu(sub.conv1(F.pad(x, (0, 0, 1, 0))))
    x = torch.relu(sub.conv2(F.pad(x, (0, 0, 1, 0))))
    b, c, t, f = x.shape
    return sub.out(x.transpose(1, 2).reshape(b, t, c * f))


def outputs_and_grads(sub, xs, fn):
    xi = xs.clone().requires_grad_(True)
    y = fn(xi)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(9))
    (y * weight).sum().backward()
    grads = [p.grad.clone() for p in sub.parameters()]
    sub.zero_grad()
    return y.detach(), xi.grad, grads


@pytest.mark.parametrize("window", [0, 8, 32])
@pytest.mark.parametrize("t", [4, 7, 15, 16, 17, 63, 64, 65, 66, 67, 100, 131])
def test_windowed_forward_equals_one_image(window, t):
    """Any length (shorter than two windows, whole windows, a tail of 1 to 3 frames or more):
    the same outputs, input gradients and parameter gradients as one image per utterance."""
    torch.manual_seed(0)
    sub = Conv2dSubsampling4(23, 12, channels=6, window_frames=window).eval()
    xs = torch.randn(3, t, 23, generator=torch.Generator().manual_seed(t))
    got = outputs_and_grads(sub, xs, sub)
    want = outputs_and_grads(sub, xs, lambda x: reference(sub, x))
    assert got[0].shape == (3, t // 4, 12)
    assert (got[0] - want[0]).abs().max() < 1e-5
    assert (got[1] - want[1]).abs().max() < 1e-5
    for g, w in zip(got[2], want[2]):
        assert (g - w).abs().max() < 1e-4 * max(1.0, w.abs().max().item())


def test_window_must_be_whole_encoder_frames():
    with pytest.raises(ValueError, match="multiple of 4"):
        Conv2dSubsampling4(23, 12, window_frames=30)


def test_dropout_is_drawn_once_over_the_windows():
    """In train mode the windowed forward drops as one image does: one mask over the output."""
    sub = Conv2dSubsampling4(23, 12, dropout_rate=0.5, window_frames=8).train()
    xs = torch.randn(2, 80, 23, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    windowed = sub(xs)
    sub.window_frames = 0
    torch.manual_seed(5)
    whole = sub(xs)
    assert (windowed - whole).abs().max() < 1e-5

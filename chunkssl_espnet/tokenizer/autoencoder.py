"""The ``trained`` FSQ tokenizer (docs/method.md, section 3): a small FSQ auto-encoder.

MLP encoder (320 -> hidden -> hidden -> d), FSQ, MLP decoder (d -> hidden -> hidden -> 320), trained
to reconstruct the stacked normalised fbank with L1 + L2 loss (``train_autoencoder``), then frozen.
Only the encoder and the FSQ produce targets; the decoder is kept for the reconstruction error.
"""

import math
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from tqdm import tqdm

from chunkssl_espnet.features import NUM_MEL_BINS
from chunkssl_espnet.frames import SUBSAMPLING
from chunkssl_espnet.fsq import DEFAULT_LEVELS
from chunkssl_espnet.tokenizer.base import FSQTokenizer


def _mlp(sizes: Sequence[int]) -> torch.nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.GELU())
    return torch.nn.Sequential(*layers)


class TrainedFSQTokenizer(FSQTokenizer):
    """FSQ auto-encoder tokenizer.

    Args:
        levels: FSQ levels or preset name.
        input_dim: fbank dimension (80).
        stack: fbank frames per target (4).
        hidden: width of the hidden layers.
        seed: seed of the weight initialisation.
    """

    kind = "trained"

    def __init__(
        self,
        levels: Union[str, Sequence[int]] = DEFAULT_LEVELS,
        input_dim: int = NUM_MEL_BINS,
        stack: int = SUBSAMPLING,
        hidden: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(levels, input_dim, stack)
        self.hidden = int(hidden)
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.encoder = _mlp([self.frame_dim, self.hidden, self.hidden, self.fsq.dim])
            self.decoder = _mlp([self.fsq.dim, self.hidden, self.hidden, self.frame_dim])
        self.freeze()

    def config(self) -> Dict[str, Any]:
        return {**super().config(), "hidden": self.hidden, "seed": self.seed}

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., frame_dim) -> pre-quantisation values (..., d)."""
        return self.encoder(x.float())

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., frame_dim) -> reconstruction (..., frame_dim) through the quantised codes
        (straight-through gradient)."""
        return self.decoder(self.fsq.quantize(self.project(x)))


def _collect_frames(
    tokenizer: FSQTokenizer, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    frames = []
    for feats, lens in batches:
        x, _, valid = tokenizer.stack_input(feats, lens)
        frames.append(x[valid].cpu())
    if not frames or sum(f.shape[0] for f in frames) == 0:
        raise ValueError(
            "cannot train the tokenizer: no stacked frames in the data "
            f"(each needs {tokenizer.stack} fbank frames)"
        )
    return torch.cat(frames)


def train_autoencoder(
    tokenizer: TrainedFSQTokenizer,
    batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 2.0e-3,
    seed: int = 0,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> float:
    """Train the auto-encoder to reconstruct stacked frames (L1 + L2), then freeze it.

    All valid stacked frames of ``batches`` are pooled in memory (limit the data, e.g. with the
    CLI's ``--max_utts``) and visited in a seeded random order each epoch.

    Args:
        tokenizer: the tokenizer to train in place.
        batches: iterable of ``(feats (B, T, input_dim), lens (B,))`` normalised fbank.
        epochs: passes over the frames.
        batch_size: stacked frames per step.
        lr: peak learning rate of Adam (cosine decay to 0).
        seed: seed of the frame order.
        device: where to train (default: where the tokenizer is).
        progress: show a tqdm progress bar over steps.

    Returns:
        Final reconstruction error: mean squared error per value over all frames, in normalised
        fbank units (1.0 is the error of predicting the mean).
    """
    if not isinstance(tokenizer, TrainedFSQTokenizer):
        raise TypeError(f"train_autoencoder needs a TrainedFSQTokenizer, got {type(tokenizer)}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    frames = _collect_frames(tokenizer, batches)
    device = torch.device(device) if device is not None else tokenizer.device
    tokenizer.to(device)
    params = list(tokenizer.encoder.parameters()) + list(tokenizer.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    tokenizer.train()
    optim = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = math.ceil(frames.shape[0] / batch_size)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
    )
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=epochs * steps_per_epoch, desc="train FSQ auto-encoder", disable=not progress)
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            for _ in range(epochs):
                order = torch.randperm(frames.shape[0], generator=gen)
                for start in range(0, frames.shape[0], batch_size):
                    x = frames[order[start : start + batch_size]].to(device)
                    diff = tokenizer.reconstruct(x) - x
                    loss = diff.abs().mean() + diff.pow(2).mean()
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    optim.step()
                    sched.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        bar.close()
        tokenizer.freeze()
    return reconstruction_error(tokenizer, frames, batch_size=4096)


@torch.no_grad()
def reconstruction_error(
    tokenizer: TrainedFSQTokenizer, frames: torch.Tensor, batch_size: int = 4096
) -> float:
    """Mean squared error per value of reconstructing frames (N, frame_dim)."""
    device = tokenizer.device
    sq, n = 0.0, 0
    for start in range(0, frames.shape[0], batch_size):
        x = frames[start : start + batch_size].to(device).float()
        sq += float((tokenizer.reconstruct(x) - x).pow(2).sum())
        n += x.numel()
    return sq / max(n, 1)

"""Span masking inside chunks (docs/method.md section 5).

Spans of ``span`` encoder frames (4 = 16 fbank frames = 160 ms) are masked on the normalised fbank
before sub-sampling and filled with N(0, 0.1^2) noise. In each predicted chunk of ``n`` valid
frames, ``m = floor(ratio * n + u)`` frames are masked (u ~ U(0, 1): stochastic rounding keeps the
expected ratio exact for small chunks), capped at ``n - 1`` so that at least one frame stays
unmasked. Frames of a chunk are grouped into spans at a random phase, the spans are ranked at
random, and the first ``m`` frames in that order are masked, so masks are whole spans
except the last one.
"""

from typing import Optional, Sequence, Tuple

import torch

from chunkssl_espnet.frames import SUBSAMPLING


def chunk_span_mask(
    lengths: torch.Tensor,
    num_frames: int,
    chunk_size: int,
    ratio: float = 0.45,
    span: int = 4,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draw the encoder-frame mask of every chunk.

    Args:
        lengths: (B,) valid encoder frames per utterance.
        num_frames: T', the padded number of encoder frames.
        chunk_size: encoder frames per chunk; <= 0 treats each utterance as one chunk (offline).
        ratio: expected fraction of masked frames per chunk.
        span: span length in encoder frames.
    Returns:
        (B, T') bool, True for masked frames; never True on padding.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if span < 1:
        raise ValueError(f"mask span must be >= 1, got {span}")
    device = lengths.device
    bsz = lengths.shape[0]
    c = num_frames if chunk_size <= 0 else chunk_size
    c = max(c, 1)
    n_chunks = -(-num_frames // c)
    padded = n_chunks * c
    lengths = lengths.to(device=device, dtype=torch.long).clamp(max=num_frames)

    r = torch.arange(c, device=device)  # position inside the chunk
    starts = torch.arange(n_chunks, device=device) * c
    # valid frames of each chunk: (B, N)
    n_valid = (lengths[:, None] - starts[None, :]).clamp(min=0, max=c)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device="cpu").to(device)

    n_mask = torch.floor(ratio * n_valid + rand(bsz, n_chunks)).long()
    n_mask = torch.minimum(n_mask, (n_valid - 1).clamp(min=0))

    phase = torch.randint(span, (bsz, n_chunks), generator=generator).to(device)
    group = torch.div(r[None, None, :] + phase[..., None], span, rounding_mode="floor")
    n_groups = (c + span - 1) // span + 1
    group_key = rand(bsz, n_chunks, n_groups)
    key = torch.gather(group_key, 2, group) + r[None, None, :] * 1e-6  # spans stay contiguous
    key = key.masked_fill(r[None, None, :] >= n_valid[..., None], float("inf"))
    rank = key.argsort(dim=-1).argsort(dim=-1)
    mask = rank < n_mask[..., None]
    return mask.reshape(bsz, padded)[:, :num_frames]


def apply_fbank_mask(
    feats: torch.Tensor,
    frame_mask: torch.Tensor,
    subsampling: int = SUBSAMPLING,
    noise_std: float = 0.1,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Fill the fbank frames under masked encoder frames with N(0, noise_std^2) noise.

    Args:
        feats: (B, T, F) normalised fbank.
        frame_mask: (B, T') bool encoder-frame mask, T' = T // subsampling.
    Returns:
        (B, T, F) masked copy of ``feats``.
    """
    fb_mask = frame_mask.repeat_interleave(subsampling, dim=1)
    t = min(fb_mask.shape[1], feats.shape[1])
    full = torch.zeros(feats.shape[:2], dtype=torch.bool, device=feats.device)
    full[:, :t] = fb_mask[:, :t]
    noise = torch.randn(feats.shape, generator=generator, dtype=torch.float32, device="cpu")
    noise = noise.to(device=feats.device, dtype=feats.dtype) * noise_std
    return torch.where(full[..., None], noise, feats)


def utterance_masks(
    feats: torch.Tensor,
    feats_lens: torch.Tensor,
    enc_lens: torch.Tensor,
    chunk_size: int,
    seeds: Sequence[int],
    ratio: float = 0.45,
    span: int = 4,
    noise_std: float = 0.1,
    subsampling: int = SUBSAMPLING,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masks and masked fbank of a batch, each utterance drawn from its own seed.

    An utterance's mask and noise depend only on its seed and its own length, never on the
    batch it sits in or the padding, so that a DDP rank's shard of a global batch gets exactly
    the masks the single-process run gives the same utterances (see ``ChunkSSLModel``).

    Args:
        feats: (B, T, F) normalised fbank; feats_lens: (B,) valid fbank frames.
        enc_lens: (B,) valid encoder frames.
        chunk_size: encoder frames per chunk (<= 0: the utterance is one chunk).
        seeds: B seeds.
    Returns:
        frame_mask (B, T // subsampling) bool and the masked fbank (B, T, F).
    """
    b, t, _ = feats.shape
    t_enc = t // subsampling
    if len(seeds) != b:
        raise ValueError(f"{len(seeds)} mask seeds for a batch of {b}")
    frame_mask = torch.zeros(b, t_enc, dtype=torch.bool, device=feats.device)
    masked = feats.clone()
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        n_enc = int(enc_lens[i].clamp(max=t_enc))
        n_fb = int(feats_lens[i].clamp(max=t))
        if n_enc == 0:
            continue
        m = chunk_span_mask(enc_lens[i : i + 1].clamp(max=t_enc), n_enc, chunk_size, ratio,
                            span, gen)
        frame_mask[i, :n_enc] = m[0]
        masked[i : i + 1, :n_fb] = apply_fbank_mask(
            feats[i : i + 1, :n_fb], m, subsampling, noise_std, gen
        )
    return frame_mask, masked

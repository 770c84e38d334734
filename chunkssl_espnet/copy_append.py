"""Copy-and-append: chunk pre-training in one encoder pass (docs/method.md section 7).

With base chunks ``B1..BN`` of ``chunk_size`` encoder frames, the pass runs the encoder once on
``X' = [B1..BN, E1..E(N-1)]`` where ``Ei`` is the masked copy of ``B(i+1)``. The attention mask lets
``Bj`` see ``Bk`` for ``k <= j`` and ``Ei`` see ``Bk`` for ``k <= i`` and itself; copies keep the
positions of the frames they copy; the sub-sampling of ``Ei`` takes its left context from the clean
fbank of ``Bi`` and its convolutions from the base stream. This equals the naive algorithm
(:func:`naive_chunk_forward`), N-1 passes over ``[B1..Bi, masked B(i+1)]``.

Outputs are returned aligned to original positions: ``copies[:, p]`` is the output of the copy that
holds frame ``p`` (frames of the first chunk have no copy and are invalid).
Offline batches (``chunk_size <= 0``) have no copies: the masked utterance itself is encoded and
predicted.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from chunkssl_espnet.encoder.conformer import ChunkConformerEncoder
from chunkssl_espnet.encoder.layers import StreamLayout
from chunkssl_espnet.encoder.subsampling import LEFT_CONTEXT
from chunkssl_espnet.frames import SUBSAMPLING
from chunkssl_espnet.masking import apply_fbank_mask


@dataclass
class ChunkPassOutput:
    """Outputs of a chunk pre-training pass, aligned to original encoder-frame positions.

    Attributes:
        base: (B, T', D) outputs of the clean base stream (for offline batches: the masked input).
        copies: (B, T', D) outputs of the masked copies at the positions they copy.
        copies_valid: (B, T') bool, True where ``copies`` holds a real predicted frame.
        olens: (B,) valid encoder frames.
        base_hs, copies_hs: per-layer versions of ``base`` and ``copies`` (before the final norm).
    """

    base: torch.Tensor
    copies: torch.Tensor
    copies_valid: torch.Tensor
    olens: torch.Tensor
    base_hs: List[torch.Tensor]
    copies_hs: List[torch.Tensor]


def _offline_pass(encoder, masked_feats, feats_lens, num_left_chunks) -> ChunkPassOutput:
    out, olens, hs = encoder.forward_masked(masked_feats, feats_lens, -1, num_left_chunks)
    valid = torch.arange(out.shape[1], device=out.device)[None, :] < olens[:, None]
    return ChunkPassOutput(out, out, valid, olens, hs, hs)


def copy_append_forward(
    encoder: ChunkConformerEncoder,
    feats: torch.Tensor,
    feats_lens: torch.Tensor,
    chunk_size: int,
    frame_mask: torch.Tensor,
    num_left_chunks: int = -1,
    masked_feats: Optional[torch.Tensor] = None,
) -> ChunkPassOutput:
    """One encoder pass over the base stream and its appended masked copies.

    Args:
        encoder: the chunked Conformer.
        feats: (B, T, F) clean normalised fbank.
        feats_lens: (B,) valid fbank frames.
        chunk_size: encoder frames per chunk; <= 0 for an offline batch.
        frame_mask: (B, T // 4) bool encoder-frame mask of the predicted frames.
        num_left_chunks: left chunks each chunk may attend to (< 0: all).
        masked_feats: (B, T, F) the masked fbank; drawn from ``frame_mask`` when None.
    Returns:
        :class:`ChunkPassOutput`.
    """
    encoder.check_input(feats)
    if masked_feats is None:
        masked_feats = apply_fbank_mask(feats, frame_mask, SUBSAMPLING)
    if chunk_size <= 0:
        return _offline_pass(encoder, masked_feats, feats_lens, num_left_chunks)

    b, t, f = feats.shape
    c = chunk_size
    t_enc = t // SUBSAMPLING
    n = -(-t_enc // c)
    olens = encoder.embed_lengths(feats_lens).clamp(max=t_enc)
    fb = SUBSAMPLING * c  # fbank frames per chunk
    pad = n * fb - t
    clean = torch.nn.functional.pad(feats, (0, 0, 0, pad))
    masked = torch.nn.functional.pad(masked_feats, (0, 0, 0, pad))

    if n > 1:  # base stream and copies sub-sampled in one convolution call
        ctx = clean.view(b, n, fb, f)[:, :-1, fb - LEFT_CONTEXT :]  # (B, N-1, 4, F) clean
        seg = masked.view(b, n, fb, f)[:, 1:]  # (B, N-1, fb, F) masked copies
        x = encoder.embed.forward_segments(ctx, seg, head=clean)  # (B, N*c + (N-1)*c, D)
    else:
        x = encoder.embed(clean)  # (B, c, D)

    device = x.device
    base_pos = torch.arange(n * c, device=device)
    copy_start = torch.arange(1, n, device=device) * c
    copy_pos = torch.arange(c, n * c, device=device)
    layout = StreamLayout(
        pos=torch.cat([base_pos, copy_pos]),
        copy_id=torch.cat([torch.zeros_like(base_pos), copy_pos // c]),
        num_base=n * c,
        copy_len=c,
        copy_start=copy_start,
    )
    key_valid = layout.pos[None, :] < olens[:, None]
    out, hs = encoder.forward_layout(x, layout, c, num_left_chunks, key_valid)

    def split(y: torch.Tensor):
        base_y = y[:, :t_enc]
        copies_y = torch.cat([torch.zeros_like(y[:, :c]), y[:, n * c :]], dim=1)[:, :t_enc]
        return base_y, copies_y

    base_out, copies_out = split(out)
    per_layer = [split(h) for h in hs]
    pos = torch.arange(t_enc, device=device)[None, :]
    copies_valid = (pos >= c) & (pos < olens[:, None])
    return ChunkPassOutput(
        base_out, copies_out, copies_valid, olens,
        [h[0] for h in per_layer], [h[1] for h in per_layer],
    )


def naive_chunk_forward(
    encoder: ChunkConformerEncoder,
    feats: torch.Tensor,
    feats_lens: torch.Tensor,
    chunk_size: int,
    frame_mask: torch.Tensor,
    num_left_chunks: int = -1,
    masked_feats: Optional[torch.Tensor] = None,
) -> ChunkPassOutput:
    """The naive chunk algorithm, for clarity, not speed: the reference of tests and benchmarks.

    For each chunk ``i + 1 >= 2`` it runs the encoder on ``[B1..Bi, masked B(i+1)]`` under the
    chunk-causal mask and keeps the outputs of the masked chunk; the base stream is the clean
    utterance under the same mask. Same arguments and outputs as :func:`copy_append_forward`.
    """
    encoder.check_input(feats)
    if masked_feats is None:
        masked_feats = apply_fbank_mask(feats, frame_mask, SUBSAMPLING)
    if chunk_size <= 0:
        return _offline_pass(encoder, masked_feats, feats_lens, num_left_chunks)
    c = chunk_size
    t_enc = feats.shape[1] // SUBSAMPLING
    base, olens, base_hs = encoder.forward_masked(feats, feats_lens, c, num_left_chunks)
    copies = torch.zeros_like(base)
    copies_hs = [torch.zeros_like(h) for h in base_hs]
    for start in range(c, t_enc, c):
        end = min(start + c, t_enc)
        x, lens = naive_pass_input(feats, feats_lens, masked_feats, start, c)
        out, _, hs = encoder.forward_masked(x, lens, c, num_left_chunks)
        copies[:, start:end] = out[:, start:end]
        for h_all, h in zip(copies_hs, hs):
            h_all[:, start:end] = h[:, start:end]
    pos = torch.arange(t_enc, device=feats.device)[None, :]
    copies_valid = (pos >= c) & (pos < olens[:, None])
    return ChunkPassOutput(base, copies, copies_valid, olens, base_hs, copies_hs)


def naive_pass_input(
    feats: torch.Tensor,
    feats_lens: torch.Tensor,
    masked_feats: torch.Tensor,
    start: int,
    chunk_size: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The input of the naive pass that predicts the chunk starting at encoder frame ``start``:
    the clean fbank of ``B1..Bi`` followed by the masked fbank of ``B(i+1)``.

    Args:
        feats, masked_feats: (B, T, F) clean and masked fbank; feats_lens: (B,).
    Returns:
        x: (B, T_x, F) with ``T_x <= SUBSAMPLING * (start + chunk_size)``; lens: (B,) valid
        frames of ``x``.
    """
    lo = SUBSAMPLING * start
    x = torch.cat([feats[:, :lo], masked_feats[:, lo : lo + SUBSAMPLING * chunk_size]], dim=1)
    return x, torch.clamp(feats_lens, max=x.shape[1])

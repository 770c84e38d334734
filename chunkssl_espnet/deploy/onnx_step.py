"""One streaming step of a Chunk SSL CTC model as an ONNX graph for sherpa-onnx (docs/deploy.md).

``StreamingStep`` wraps a fine-tuned ESPnet ASR model (``kaldi_fbank`` frontend, ``global_mvn``,
``chunk_conformer`` encoder, CTC head) in the calling convention of sherpa-onnx's online WeNet CTC
model. (Its online NeMo CTC model, which batches streams, was the first choice; sherpa-onnx 2.0.1
computes NeMo's features for it: Hann window, librosa mel banks, no DC removal, low frequency 0,
whatever ``FeatureExtractorConfig`` says, measured max difference 8 to 17 to our Kaldi fbank, which
no graph can undo. Its WeNet CTC model takes Kaldi fbank with our settings.)

Inputs (bound by position):

* ``x`` (1, W, 80): W = 4 * chunk_size raw fbank frames (the runtime's own Kaldi fbank, set to
  ours); W = (chunk_size - 1) * 4 + right_context + 1 with ``right_context`` 3 in the metadata;
* ``offset`` (1,) int64: the runtime's counter, ``Tc`` at the start, plus the frames emitted;
* ``required_cache_size`` (1,) int64: ``Tc`` = chunk_size * num_left_chunks;
* ``att_cache`` (layers + 1, H, Tc, 2 * d_k): the attention caches of
  :meth:`ChunkConformerEncoder.forward_chunk`, oldest frame first, then one more block whose first
  4 * 80 values are the 4 normalised fbank frames before the window: the causal sub-sampling's
  left context (``LEFT_CONTEXT``), which the runtime's windows do not carry;
* ``cnn_cache`` (layers + 1, 1, D, K - 1): the convolution caches (the last block unused);
* ``att_mask`` (1, 1, Tc + chunk_size) bool, built by the runtime: False for cache slots before
  the start of the stream.

Outputs: ``log_probs`` (1, chunk_size, V) CTC log-probabilities, ``next_att_cache``,
``next_cnn_cache``.

The step equals ``forward_chunk`` with ``required_cache_size = Tc`` (tests/test_deploy_onnx.py):
relative positions depend only on query - key distances, which the shapes fix, and a cache slot
not yet filled is masked. At the first chunk the sub-sampling sees zero padding, as the full
forward does: the first convolution's rows of the (zero) context are zeroed.
"""

from typing import Tuple

import torch
import torch.nn.functional as F

from chunkssl_espnet.chunk_mask import neg_inf
from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.encoder.attention import AttentionPlan, RelativePositions
from chunkssl_espnet.encoder.layers import StreamLayout
from chunkssl_espnet.encoder.subsampling import LEFT_CONTEXT
from chunkssl_espnet.frames import SUBSAMPLING

INPUT_NAMES = ("x", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask")
OUTPUT_NAMES = ("log_probs", "next_att_cache", "next_cnn_cache")
#: ``right_context`` of the metadata: the runtime's window is (chunk - 1) * 4 + this + 1 frames.
RIGHT_CONTEXT = SUBSAMPLING - 1


class StreamingStep(torch.nn.Module):
    """Global MVN, the chunked encoder with its caches and the CTC log-softmax, for one chunk.

    Args:
        model: an ESPnet ASR model in eval mode whose encoder is a ``ChunkConformerEncoder``.
        chunk_size: encoder frames per step (40 ms each).
        num_left_chunks: chunks of attention left context (> 0: states have fixed shapes).
    """

    def __init__(self, model, chunk_size: int, num_left_chunks: int):
        super().__init__()
        enc = model.encoder
        if not isinstance(enc, ChunkConformerEncoder):
            raise ValueError("the ONNX step needs encoder: chunk_conformer")
        if chunk_size < 1 or num_left_chunks < 1:
            raise ValueError(f"chunk_size and num_left_chunks must be >= 1 (states have fixed "
                             f"shapes), got {chunk_size} and {num_left_chunks}")
        self.encoder, self.ctc = enc, model.ctc
        self.chunk_size = chunk_size
        self.num_left_chunks = num_left_chunks
        self.cache_frames = chunk_size * num_left_chunks
        d, h = enc.output_size(), enc.num_heads
        self.layers, self.heads, self.d_k, self.dim = len(enc.encoders), h, d // h, d
        self.kernel_context = enc.sizes["cnn_module_kernel"] - 1
        self.feat_dim = model.frontend.output_size()
        mean = torch.zeros(self.feat_dim)
        std = torch.ones(self.feat_dim)
        norm = model.normalize
        if norm is not None:
            if norm.norm_means:
                mean = norm.mean.detach().float().clone()
            if norm.norm_vars:
                std = norm.std.detach().float().clone()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        tc, c = self.cache_frames, chunk_size
        # queries are the chunk's frames, keys the cache slots then the chunk: positions in the
        # window [offset - Tc, offset + C); only their differences matter
        self.rel = RelativePositions(torch.arange(tc, tc + c), torch.arange(tc + c), d)
        self.layout = StreamLayout.plain(c)
        if tc * 2 * d < LEFT_CONTEXT * self.feat_dim:
            raise ValueError(f"the context block of chunk_size * num_left_chunks * 2 * d = "
                             f"{tc * 2 * d} values cannot hold the {LEFT_CONTEXT} x "
                             f"{self.feat_dim} fbank context: export with more left chunks")

    # ------------------------------------------------------------------ state shapes
    def state_shapes(self) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """Shapes of ``att_cache`` and ``cnn_cache`` (one block more than layers)."""
        n = self.layers + 1
        return ((n, self.heads, self.cache_frames, 2 * self.d_k),
                (n, 1, self.dim, self.kernel_context))

    def init_states(self):
        """Zero caches and the counter, as the runtime starts a stream."""
        att, cnn = self.state_shapes()
        return (torch.zeros(att), torch.zeros(cnn),
                torch.tensor([self.cache_frames], dtype=torch.long))

    def att_mask(self, offset: torch.Tensor) -> torch.Tensor:
        """(1, 1, Tc + C) bool, the runtime's mask for its ``offset``: the slots of frames
        before the stream's start are False."""
        slots = torch.arange(self.cache_frames + self.chunk_size)
        return (slots >= 2 * self.cache_frames - offset)[None, None]

    @property
    def window(self) -> int:
        """Fbank frames per step (and the shift between steps)."""
        return SUBSAMPLING * self.chunk_size

    # ------------------------------------------------------------------ the step
    def subsample(self, ctx: torch.Tensor, x: torch.Tensor, started: torch.Tensor) -> torch.Tensor:
        """Causal 4x sub-sampling of a window with its 4 frames of left context.

        Equal to ``embed.forward_segment(ctx, x)`` for a started stream and to ``embed(x)`` at
        offset 0, where the model's padding is a zero row of the first convolution's output
        and a zero fbank frame (the zero context state) before the window.

        Args:
            ctx: (B, 4, F) normalised frames before the window; x: (B, W, F); started: (B,) bool.
        Returns:
            (B, W // 4, D).
        """
        emb = self.encoder.embed
        h = torch.relu(emb.conv1(F.pad(torch.cat([ctx, x], 1).unsqueeze(1), (0, 0, 1, 0))))
        keep = started.to(h.dtype)[:, None, None, None]
        h = torch.cat([h[:, :, :2] * keep, h[:, :, 2:]], dim=2)  # rows 0, 1: the context's
        h = torch.relu(emb.conv2(F.pad(h, (0, 0, 1, 0))))
        b, c, t, f = h.shape
        return emb.out(h.transpose(1, 2).reshape(b, t, c * f))[:, 1:]

    def forward(
        self,
        x: torch.Tensor,
        offset: torch.Tensor,
        required_cache_size: torch.Tensor,
        att_cache: torch.Tensor,
        cnn_cache: torch.Tensor,
        att_mask: torch.Tensor,
    ):
        """See the module docstring for the shapes."""
        n_ctx = LEFT_CONTEXT * self.feat_dim
        feats = (x - self.mean) / self.std  # (1, W, F)
        ctx = att_cache[-1].reshape(-1)[:n_ctx].reshape(1, LEFT_CONTEXT, self.feat_dim)
        h = self.subsample(ctx, feats, (offset > required_cache_size).reshape(1))
        mask = torch.zeros(att_mask.shape, dtype=torch.float32, device=x.device)
        mask = mask.masked_fill(~att_mask, neg_inf(torch.float32))[:, None]  # (1, 1, 1, Tc+C)
        plan = AttentionPlan.dense(self.rel, mask)
        att_out, cnn_out = [], []
        for i, layer in enumerate(self.encoder.encoders):
            h, att_i, cnn_i = layer(h, self.layout, plan, att_cache[i][None], cnn_cache[i])
            att_out.append(att_i[0, :, self.chunk_size :])
            cnn_out.append(cnn_i)
        log_probs = self.ctc.log_softmax(self.encoder.after_norm(h))
        ctx_block = torch.cat([feats[0, -LEFT_CONTEXT:].reshape(-1),
                               att_cache[-1].reshape(-1)[n_ctx:]])
        att_out.append(ctx_block.reshape(att_cache.shape[1:]))
        cnn_out.append(cnn_cache[-1])
        return log_probs, torch.stack(att_out), torch.stack(cnn_out)

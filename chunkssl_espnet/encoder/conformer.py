"""ChunkConformerEncoder: an ESPnet ``AbsEncoder`` for chunk-based training and streaming.

Causal 4x sub-sampling, relative positional self-attention under chunk masks, causal depthwise
convolution (docs/method.md section 8). The chunk size is drawn per batch in training (dynamic chunk
training, section 6) and fixed by ``set_decoding_chunk`` for evaluation. ``forward_chunk`` runs one
chunk with batched attention and convolution caches; ``forward_chunk_by_chunk`` is the reference
streaming simulator and equals ``forward`` under the same chunk mask.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from typeguard import typechecked

from chunkssl_espnet.chunk_mask import (
    additive_mask,
    chunk_visibility,
    sample_chunk_config,
    validate_chunk_sizes,
)
from chunkssl_espnet.encoder.attention import AttentionPlan, RelativePositions
from chunkssl_espnet.encoder.block_sparse import BLOCK_QUERY_FRAMES, chunk_attention_plan
from chunkssl_espnet.encoder.layers import ConformerLayer, StreamLayout
from chunkssl_espnet.encoder.subsampling import LEFT_CONTEXT, Conv2dSubsampling4
from chunkssl_espnet.frames import ENCODER_FRAME_MS, SUBSAMPLING

ENCODER_PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(output_size=144, attention_heads=4, linear_units=1024, num_blocks=6,
                 cnn_module_kernel=15),
    "base": dict(output_size=512, attention_heads=8, linear_units=2048, num_blocks=12,
                 cnn_module_kernel=15),
    "large": dict(output_size=768, attention_heads=12, linear_units=3072, num_blocks=24,
                  cnn_module_kernel=15),
}


class ChunkConformerEncoder(AbsEncoder):
    """Chunked Conformer.

    Args:
        input_size: fbank dimension (80).
        preset: ``tiny``, ``base`` or ``large``; explicit sizes override it.
        chunk_sizes: chunk sizes (encoder frames) drawn in dynamic chunk training.
        full_context_prob: probability of a full-context (offline) batch in training.
        left_chunks_choices: left chunks drawn per batch in training; None for all.
        dynamic_chunk_training: False trains with ``static_chunk_size`` only.
        static_chunk_size: chunk size when not dynamic (-1 = full context).
        decoding_chunk_size, num_decoding_left_chunks: used in eval mode (-1 = full / all).
        subsampling_channels: channels of the sub-sampling convolutions (default: the model
            dimension).
        attention_block_frames: base query frames per block of the block-sparse chunk attention
            (``encoder/block_sparse.py``); 0 computes the dense masked attention. Equal results.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        preset: Optional[str] = "tiny",
        output_size: Optional[int] = None,
        attention_heads: Optional[int] = None,
        linear_units: Optional[int] = None,
        num_blocks: Optional[int] = None,
        cnn_module_kernel: Optional[int] = None,
        dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        dynamic_chunk_training: bool = True,
        chunk_sizes: Sequence[int] = (4, 8, 16, 32),
        full_context_prob: float = 0.3,
        left_chunks_choices: Optional[Sequence[int]] = None,
        static_chunk_size: int = -1,
        decoding_chunk_size: int = -1,
        num_decoding_left_chunks: int = -1,
        subsampling_channels: Optional[int] = None,
        attention_block_frames: int = BLOCK_QUERY_FRAMES,
    ):
        super().__init__()
        if preset is not None and preset not in ENCODER_PRESETS:
            raise ValueError(
                f"unknown encoder preset {preset!r}; choose from {list(ENCODER_PRESETS)}"
            )
        sizes = dict(ENCODER_PRESETS[preset or "tiny"])
        given = dict(output_size=output_size, attention_heads=attention_heads,
                     linear_units=linear_units, num_blocks=num_blocks,
                     cnn_module_kernel=cnn_module_kernel)
        sizes.update({k: v for k, v in given.items() if v is not None})
        if not 0.0 <= full_context_prob <= 1.0:
            raise ValueError(f"full_context_prob must be in [0, 1], got {full_context_prob}")
        d = sizes["output_size"]
        self._output_size = d
        self.sizes = sizes
        self.embed = Conv2dSubsampling4(input_size, d, dropout_rate, subsampling_channels)
        self.encoders = torch.nn.ModuleList(
            ConformerLayer(d, sizes["attention_heads"], sizes["linear_units"],
                           sizes["cnn_module_kernel"], dropout_rate, attention_dropout_rate)
            for _ in range(sizes["num_blocks"])
        )
        self.after_norm = torch.nn.LayerNorm(d)
        self.dynamic_chunk_training = dynamic_chunk_training
        self.chunk_sizes = validate_chunk_sizes(list(chunk_sizes))
        self.full_context_prob = full_context_prob
        self.left_chunks_choices = list(left_chunks_choices) if left_chunks_choices else None
        self.static_chunk_size = static_chunk_size
        self.attention_block_frames = attention_block_frames
        self.set_decoding_chunk(decoding_chunk_size, num_decoding_left_chunks)

    # ------------------------------------------------------------------ configuration
    def output_size(self) -> int:
        return self._output_size

    @property
    def num_heads(self) -> int:
        return self.sizes["attention_heads"]

    def set_decoding_chunk(self, chunk_size: int, num_left_chunks: int = -1) -> None:
        """Chunk size (encoder frames, <= 0 = full context) and left chunks used in eval mode."""
        self.decoding_chunk_size = int(chunk_size)
        self.num_decoding_left_chunks = int(num_left_chunks)

    def chunk_config(self) -> Tuple[int, int]:
        """(chunk_size, num_left_chunks) of the next forward: drawn in training, fixed in eval."""
        if not self.training:
            return self.decoding_chunk_size, self.num_decoding_left_chunks
        if self.dynamic_chunk_training:
            return sample_chunk_config(self.chunk_sizes, self.full_context_prob,
                                       self.left_chunks_choices)
        return self.static_chunk_size, -1

    # ------------------------------------------------------------------ full forward
    def embed_lengths(self, ilens: torch.Tensor) -> torch.Tensor:
        return torch.div(ilens, SUBSAMPLING, rounding_mode="floor")

    def check_input(self, xs_pad: torch.Tensor) -> None:
        if xs_pad.dim() != 3:
            raise ValueError(f"encoder input must be (B, T, F), got shape {tuple(xs_pad.shape)}")
        if xs_pad.shape[1] < SUBSAMPLING:
            raise ValueError(
                f"encoder input has {xs_pad.shape[1]} frames; at least {SUBSAMPLING} fbank frames "
                f"({ENCODER_FRAME_MS} ms) are needed for one encoder frame"
            )

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        return_all_hs: bool = False,
    ):
        """Encode a padded batch under the chunk mask of :meth:`chunk_config`.

        Args:
            xs_pad: (B, T, F) fbank.
            ilens: (B,) valid fbank frames.
            prev_states: unused (ESPnet's contract).
            masks: unused; padding comes from ``ilens`` (ESPnet's SSL model passes a pad mask).
            return_all_hs: also return the per-layer outputs.
        Returns:
            ``((out, hiddens) if return_all_hs else out, olens, None)`` with out (B, T // 4, D),
            hiddens a list of (B, T // 4, D) per layer, olens (B,).
        """
        chunk_size, left = self.chunk_config()
        out, olens, hs = self.forward_masked(xs_pad, ilens, chunk_size, left)
        return ((out, hs) if return_all_hs else out), olens, None

    def forward_masked(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, chunk_size: int, num_left_chunks: int
    ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """Full forward under an explicit chunk mask. Returns (out, olens, hiddens)."""
        self.check_input(xs_pad)
        x = self.embed(xs_pad)
        olens = self.embed_lengths(ilens).clamp(max=x.shape[1])
        layout = StreamLayout.plain(x.shape[1], device=x.device)
        valid = layout.pos[None, :] < olens[:, None]
        out, hs = self.forward_layout(x, layout, chunk_size, num_left_chunks, valid)
        return out, olens, hs

    def forward_layout(
        self,
        x: torch.Tensor,
        layout: StreamLayout,
        chunk_size: int,
        num_left_chunks: int,
        key_valid: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the Conformer layers over embedded frames laid out by ``layout``.

        Args:
            x: (B, L, D) embedded frames; key_valid: (B, L) bool.
        Returns:
            out (B, L, D) after the final LayerNorm, and the per-layer outputs.
        """
        plan = chunk_attention_plan(layout.pos, layout.copy_id, chunk_size, num_left_chunks,
                                    key_valid, self._output_size, self.attention_block_frames)
        hs = []
        for layer in self.encoders:
            x, _, _ = layer(x, layout, plan)
            hs.append(x)
        return self.after_norm(x), hs

    # ------------------------------------------------------------------ streaming
    def init_cache(self, batch_size: int, device=None, dtype=torch.float32):
        """Empty caches: att (B, layers, H, 0, 2 * d_k) and cnn (B, layers, D, kernel - 1)."""
        d, h, n = self._output_size, self.num_heads, len(self.encoders)
        att = torch.zeros(batch_size, n, h, 0, 2 * (d // h), device=device, dtype=dtype)
        cnn = torch.zeros(batch_size, n, d, self.sizes["cnn_module_kernel"] - 1, device=device,
                          dtype=dtype)
        return att, cnn

    def forward_chunk(
        self,
        xs: torch.Tensor,
        offset: int,
        required_cache_size: int,
        att_cache: torch.Tensor,
        cnn_cache: torch.Tensor,
        chunk_lens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode one chunk given the caches of the earlier ones.

        Args:
            xs: (B, T_in, F) fbank of the chunk. When ``offset > 0`` the first
                ``LEFT_CONTEXT`` (4) frames are the fbank frames just before the chunk (sub-sampling
                context) and T_in = 4 + 4 * L; at ``offset == 0``, T_in = 4 * L.
            offset: encoder frames already emitted (position of the chunk's first frame).
            required_cache_size: attention frames to keep for the next chunk (left chunks times
                chunk size); < 0 keeps all, 0 keeps none.
            att_cache: (B, layers, H, Tc, 2 * d_k).
            cnn_cache: (B, layers, D, kernel - 1).
            chunk_lens: (B,) valid encoder frames of this chunk per stream (default: all L).
        Returns:
            ys (B, L, D), new att_cache (B, layers, H, Tc', 2 * d_k), new cnn_cache.
        """
        if offset > 0:
            if xs.shape[1] < LEFT_CONTEXT + SUBSAMPLING:
                raise ValueError(
                    f"forward_chunk at offset {offset} needs {LEFT_CONTEXT} context frames plus at "
                    f"least {SUBSAMPLING} new fbank frames, got {xs.shape[1]}"
                )
            x = self.embed.forward_segment(xs[:, :LEFT_CONTEXT], xs[:, LEFT_CONTEXT:])
        else:
            self.check_input(xs)
            x = self.embed(xs)
        b, n = x.shape[0], x.shape[1]
        tc = att_cache.shape[3]
        layout = StreamLayout.plain(n, offset=offset, device=x.device)
        k_pos = torch.arange(offset - tc, offset + n, device=x.device)
        # the cache holds exactly the allowed left context: one chunk of cache keys, one new chunk
        q_chunk = torch.ones(n, dtype=torch.long, device=x.device)
        k_chunk = (k_pos >= offset).long()
        zeros_q, zeros_k = torch.zeros_like(q_chunk), torch.zeros_like(k_chunk)
        vis = chunk_visibility(q_chunk, zeros_q, k_chunk, zeros_k)
        key_valid = None
        if chunk_lens is not None:
            new_valid = torch.arange(n, device=x.device)[None, :] < chunk_lens[:, None]
            key_valid = torch.cat([new_valid.new_ones(b, tc), new_valid], dim=1)
        plan = AttentionPlan.dense(RelativePositions(layout.pos, k_pos, self._output_size),
                                   additive_mask(vis, key_valid, torch.float32))
        att_out, cnn_out = [], []
        for i, layer in enumerate(self.encoders):
            x, att_i, cnn_i = layer(x, layout, plan, att_cache[:, i], cnn_cache[:, i])
            keep = att_i.shape[2]
            if required_cache_size >= 0:
                keep = min(keep, required_cache_size)
            att_out.append(att_i[:, :, att_i.shape[2] - keep :])
            cnn_out.append(cnn_i)
        return self.after_norm(x), torch.stack(att_out, dim=1), torch.stack(cnn_out, dim=1)

    @torch.no_grad()
    def forward_chunk_by_chunk(
        self,
        xs: torch.Tensor,
        ilens: torch.Tensor,
        decoding_chunk_size: int,
        num_decoding_left_chunks: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reference streaming simulator: feed fbank frames chunk by chunk, as a live stream would.

        Args:
            xs: (B, T, F) fbank; ilens: (B,).
            decoding_chunk_size: encoder frames per chunk (>= 1).
            num_decoding_left_chunks: left chunks kept in the cache (< 0: all).
        Returns:
            ys (B, T // 4, D) and olens (B,), equal to ``forward_masked`` with the same chunk mask.
        """
        if decoding_chunk_size < 1:
            raise ValueError(f"decoding_chunk_size must be >= 1, got {decoding_chunk_size}")
        self.check_input(xs)
        c = decoding_chunk_size
        required = c * num_decoding_left_chunks if num_decoding_left_chunks >= 0 else -1
        olens = self.embed_lengths(ilens)
        total = xs.shape[1] // SUBSAMPLING
        att_cache, cnn_cache = self.init_cache(xs.shape[0], xs.device, xs.dtype)
        ys = []
        for start in range(0, total, c):
            end = min(start + c, total)
            lo = SUBSAMPLING * start - (LEFT_CONTEXT if start > 0 else 0)
            chunk_lens = (olens - start).clamp(min=0, max=end - start)
            y, att_cache, cnn_cache = self.forward_chunk(
                xs[:, lo : SUBSAMPLING * end], start, required, att_cache, cnn_cache, chunk_lens
            )
            ys.append(y)
        return torch.cat(ys, dim=1), olens

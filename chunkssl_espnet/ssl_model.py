"""Chunk SSL model: ESPnet's SSL model with FSQ targets, chunk masking and copy-and-append.

One training step (docs/method.md sections 3 to 7): fbank and global MVN; FSQ group targets from
the frozen tokenizer on the clean features; a chunk size (and left chunks) drawn per batch by the
encoder; span masks inside every chunk; one copy-and-append pass (or, for a full-context batch, one
pass on the masked utterance); the group masked prediction loss on the masked frames of the
copies.
"""

from typing import Dict, List, Optional, Set, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from typeguard import typechecked

from chunkssl_espnet.copy_append import copy_append_forward
from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.group_loss import GroupMaskedPredictionLoss
from chunkssl_espnet.masking import apply_fbank_mask, chunk_span_mask
from chunkssl_espnet.tokenizer import load_tokenizer


class ChunkSSLModel(ESPnetSSLModel):
    """Chunk SSL pre-training model.

    Args (besides ESPnet's):
        tokenizer_dir: directory of a fitted/trained FSQ tokenizer (``tokenizer_train`` output).
        mask_ratio, mask_span, mask_noise_std: masking (docs/method.md section 5).
        valid_seed: seed of the masks drawn in eval mode, so validation losses are comparable.
    """

    @typechecked
    def __init__(
        self,
        frontend: Optional[AbsFrontend],
        specaug: Optional[AbsSpecAug],
        normalize: Optional[AbsNormalize],
        preencoder: Optional[AbsPreEncoder],
        encoder: AbsEncoder,
        losses: List[AbsSSLLoss],
        util_attributes: Set[str],
        required_inputs: Set[str],
        util_modules: torch.nn.ModuleDict,
        token_list: Union[Tuple[str, ...], List[str], None] = None,
        tokenizer_dir: Optional[str] = None,
        mask_ratio: float = 0.45,
        mask_span: int = 4,
        mask_noise_std: float = 0.1,
        valid_seed: int = 0,
        **kwargs,
    ):
        super().__init__(frontend, specaug, normalize, preencoder, encoder, losses,
                         util_attributes, required_inputs, util_modules,
                         token_list=list(token_list or ["<unk>"]), **kwargs)
        if not isinstance(encoder, ChunkConformerEncoder):
            raise ValueError(
                f"Chunk SSL needs encoder: chunk_conformer, got {type(encoder).__name__}"
            )
        if preencoder is not None or specaug is not None:
            raise ValueError("Chunk SSL masks the fbank itself: use no preencoder and no specaug")
        group_losses = [x for x in losses if isinstance(x, GroupMaskedPredictionLoss)]
        if len(group_losses) != len(losses) or not losses:
            raise ValueError("Chunk SSL expects the loss list to hold group_fsq losses only")
        # Statistics collection builds the model before any tokenizer exists; training needs one.
        self.tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
        for loss in group_losses if self.tokenizer is not None else []:
            if list(loss.levels) != list(self.tokenizer.levels):
                raise ValueError(
                    f"loss levels {loss.levels} differ from the tokenizer's "
                    f"{self.tokenizer.levels} ({tokenizer_dir}); set loss conf levels to match"
                )
        self.group_size = group_losses[0].group_size
        self.mask_ratio = mask_ratio
        self.mask_span = mask_span
        self.mask_noise_std = mask_noise_std
        self.valid_seed = valid_seed

    def _mask_seed(self) -> int:
        """Seed of this step's masks: fixed in eval; in training drawn from the global RNG (which
        ESPnet seeds identically on every rank) and offset by the rank, so that DDP ranks mask
        differently while runs stay reproducible and resumable."""
        if not self.training:
            return self.valid_seed
        seed = int(torch.randint(2**31 - 1, ()))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            seed = seed * torch.distributed.get_world_size() + torch.distributed.get_rank()
        return seed

    def collect_feats(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """Features for ESPnet's statistics collection; no text needed."""
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
    ) -> Dict:
        """One Chunk SSL pass.

        Args:
            speech: (B, N) waveform; speech_lengths: (B,).
        Returns:
            dict with ``encoder_output`` (per-layer (B, T', D) outputs of the predicted stream,
            the last one final-normed), ``encoder_output_lengths`` (B,), ``fsq_targets``
            (B, T', G) and ``loss_mask`` (B, T') bool (masked, valid, predicted frames).
        """
        if self.tokenizer is None:
            raise ValueError(
                "model_conf.tokenizer_dir is required for training: fit or train a tokenizer "
                "first (python -m chunkssl_espnet.bin.tokenizer_train)"
            )
        feats, lens = self._extract_feats(speech, speech_lengths)
        if self.normalize is not None:
            feats, lens = self.normalize(feats, lens)
        with torch.no_grad():
            targets, _ = self.tokenizer.group_targets(feats, lens, self.group_size)
        chunk, left = self.encoder.chunk_config()
        gen = torch.Generator().manual_seed(self._mask_seed())
        t_enc = feats.shape[1] // 4
        frame_mask = chunk_span_mask(
            self.encoder.embed_lengths(lens), t_enc, chunk, self.mask_ratio, self.mask_span, gen
        )
        masked = apply_fbank_mask(feats, frame_mask, 4, self.mask_noise_std, gen)
        out = copy_append_forward(self.encoder, feats, lens, chunk, frame_mask, left, masked)
        hs = list(out.copies_hs[:-1]) + [out.copies]
        return {
            "encoder_output": hs,
            "encoder_output_lengths": out.olens,
            "fsq_targets": targets[:, : out.copies.shape[1]],
            "loss_mask": frame_mask & out.copies_valid,
        }

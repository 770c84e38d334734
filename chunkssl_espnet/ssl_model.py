"""Chunk SSL model: ESPnet's SSL model with FSQ targets, chunk masking and copy-and-append.

One training step (docs/method.md sections 3 to 7): fbank and global MVN; FSQ group targets from
the frozen tokenizer on the clean features; a chunk size (and left chunks) drawn per batch by the
encoder; span masks inside every chunk; one copy-and-append pass (or, for a full-context batch, one
pass on the masked utterance); the group masked prediction loss on the masked frames of the
copies.
"""

import contextlib
from typing import Dict, List, Optional, Set, Tuple, Union

import numpy as np
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
from chunkssl_espnet.frames import SUBSAMPLING
from chunkssl_espnet.group_loss import GroupMaskedPredictionLoss
from chunkssl_espnet.masking import utterance_masks
from chunkssl_espnet.tokenizer import FSQTokenizer, build_tokenizer, load_tokenizer

#: Upper bound of a global batch's utterance count, the stride of the per-utterance mask seeds.
MAX_GLOBAL_BATCH = 2**20
#: ``model_conf.autocast_dtype`` values: the dtype of the encoder pass's autocast (None: off).
AUTOCAST_DTYPES = {None: None, "bfloat16": torch.bfloat16}


def tokenizer_spec(tokenizer: FSQTokenizer, source: Optional[str] = None) -> Dict:
    """What ``config.yaml`` keeps of a tokenizer: its kind and constructor settings (the tensors
    live in the checkpoint); ``source`` (where it was read from) is informational."""
    return {"kind": tokenizer.kind, "conf": tokenizer.config(), "source": source}


def tokenizer_from_spec(spec: Dict) -> FSQTokenizer:
    """An unfitted tokenizer of ``spec`` (see :func:`tokenizer_spec`), frozen."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"model_conf.tokenizer must be {{kind: ..., conf: {{...}}}}, got {spec!r}")
    return build_tokenizer(spec["kind"], **(spec.get("conf") or {})).freeze()


def check_tokenizer_mvn(
    tokenizer: FSQTokenizer, normalize: Optional[AbsNormalize], tokenizer_dir: str
) -> None:
    """The tokenizer was fitted on features normalised as the model normalises them.

    Targets come from the model's normalised features: a tokenizer fitted under other MVN
    statistics would see shifted inputs and give other codes, silently.

    Raises:
        ValueError: the statistics differ, naming both sources.
    """
    stats = tokenizer.mvn_stats
    if stats is None or normalize is None or not hasattr(normalize, "mean"):
        return
    count = float(np.asarray(stats["count"]).reshape(-1)[0])
    mean = np.asarray(stats["sum"], dtype=np.float64) / count
    var = np.asarray(stats["sum_square"], dtype=np.float64) / count - mean * mean
    std = np.sqrt(np.maximum(var, getattr(normalize, "eps", 1e-20)))
    ours_mean = normalize.mean.detach().cpu().double().numpy()
    ours_std = normalize.std.detach().cpu().double().numpy()
    if mean.shape != ours_mean.shape or not (
        np.allclose(mean, ours_mean, rtol=1e-4, atol=1e-4)
        and np.allclose(std, ours_std, rtol=1e-4, atol=1e-4)
    ):
        raise ValueError(
            f"the FSQ tokenizer in {tokenizer_dir} was fitted on features normalised with "
            f"{tokenizer.mvn_source or 'other statistics'}, but the model normalises with "
            f"{getattr(normalize, 'stats_file', 'its normalize_conf.stats_file')}: the targets "
            "would shift. Fit the tokenizer again with --stats_file set to the model's "
            "statistics (python -m chunkssl_espnet.bin.tokenizer_train)"
        )


class ChunkSSLModel(ESPnetSSLModel):
    """Chunk SSL pre-training model.

    The FSQ tokenizer is part of the model: its settings go into the experiment's
    ``config.yaml`` (``model_conf.tokenizer``, written by ``ChunkSSLTask.build_model``) and its
    tensors into every checkpoint, so a model loads anywhere without the tokenizer directory.

    Args (besides ESPnet's):
        tokenizer_dir: directory of a fitted/trained FSQ tokenizer (``tokenizer_train`` output),
            read when training starts.
        tokenizer: ``{"kind": ..., "conf": {...}}`` of the tokenizer to rebuild (unfitted: the
            checkpoint loaded next holds its tensors); used when ``tokenizer_dir`` is None.
        mask_ratio, mask_span, mask_noise_std: masking (docs/method.md section 5).
        valid_seed: seed of the masks drawn in eval mode, so validation losses are comparable.
        autocast_dtype: ``bfloat16`` runs the encoder pass under autocast in bf16, on CPU and
            CUDA (ESPnet's ``--use_amp`` autocasts on CUDA only). The fbank, the tokenizer and its
            FSQ targets, and the loss stay in fp32; parameters and gradients stay fp32.
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
        tokenizer: Optional[Dict] = None,
        mask_ratio: float = 0.45,
        mask_span: int = 4,
        mask_noise_std: float = 0.1,
        valid_seed: int = 0,
        autocast_dtype: Optional[str] = None,
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
        self.tokenizer = None
        if tokenizer_dir is not None:
            self.tokenizer = load_tokenizer(tokenizer_dir)
            check_tokenizer_mvn(self.tokenizer, normalize, tokenizer_dir)
        elif tokenizer is not None:
            self.tokenizer = tokenizer_from_spec(tokenizer)
        for loss in group_losses if self.tokenizer is not None else []:
            if list(loss.levels) != list(self.tokenizer.levels):
                raise ValueError(
                    f"loss levels {loss.levels} differ from the tokenizer's "
                    f"{self.tokenizer.levels} ({tokenizer_dir or 'model_conf.tokenizer'}); set "
                    "loss conf levels to match"
                )
        self.group_size = group_losses[0].group_size
        self.mask_ratio = mask_ratio
        self.mask_span = mask_span
        self.mask_noise_std = mask_noise_std
        self.valid_seed = valid_seed
        if autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(
                f"model_conf.autocast_dtype must be one of {sorted(map(str, AUTOCAST_DTYPES))}, "
                f"got {autocast_dtype!r}"
            )
        self.autocast_dtype = AUTOCAST_DTYPES[autocast_dtype]

    def mask_seeds(self, batch_size: int) -> List[int]:
        """Seeds of this step's per-utterance masks.

        One step seed, fixed (``valid_seed``) in eval and drawn from torch's global RNG in
        training (ESPnet seeds it alike on every rank, so every rank draws the same step seed,
        and runs stay reproducible and resumable); each utterance's seed adds its position in the
        *global* batch. ESPnet gives DDP rank r the shard ``batch[r::world_size]``, so local
        utterance i is global utterance ``r + world_size * i``: ranks mask differently, and a DDP
        step masks every utterance exactly as a single process over the whole batch does.
        """
        step = self.valid_seed if not self.training else int(torch.randint(2**31 - 1, ()))
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return [step * MAX_GLOBAL_BATCH + rank + world * i for i in range(batch_size)]

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
        frame_mask, masked = utterance_masks(
            feats, lens, self.encoder.embed_lengths(lens), chunk, self.mask_seeds(feats.shape[0]),
            self.mask_ratio, self.mask_span, self.mask_noise_std, SUBSAMPLING,
        )
        amp = contextlib.nullcontext()  # without ours, an outer autocast (--use_amp) applies
        if self.autocast_dtype is not None:
            amp = torch.autocast(device_type=feats.device.type, dtype=self.autocast_dtype)
        with amp:
            out = copy_append_forward(self.encoder, feats, lens, chunk, frame_mask, left, masked)
        hs = [h.float() for h in list(out.copies_hs[:-1]) + [out.copies]]  # the loss is fp32
        return {
            "encoder_output": hs,
            "encoder_output_lengths": out.olens,
            "fsq_targets": targets[:, : out.copies.shape[1]],
            "loss_mask": frame_mask & out.copies_valid,
        }

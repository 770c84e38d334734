"""Registration of Chunk SSL's classes in ESPnet, and the task classes the entry points run.

ESPnet has no plug-in mechanism: each task module holds module-level ``ClassChoices``, read when
its parser and models are built. Importing this module adds our keys to them (before any parser is
built), so training, ``build_model_from_file``, inference and DDP workers all see them. Every entry
point in ``chunkssl_espnet.bin`` imports it first (``chunkssl_espnet.bin.load_plugin``, which also
hides the nltk download errors ESPnet's task modules print offline; importing this module as a
library leaves the process's streams alone). Registering a key that another class holds raises.

Keys added:
    frontend ``kaldi_fbank`` (SSL, ASR, ST), encoder ``chunk_conformer`` (SSL, ASR, ST),
    SSL loss ``group_fsq``, SSL model ``chunk_ssl``.
"""

import espnet2.tasks.asr as _asr
import espnet2.tasks.lm as _lm
import espnet2.tasks.ssl as _ssl
import espnet2.tasks.st as _st
from espnet2.tasks.abs_task import optim_classes
from espnet2.train.collate_fn import CommonCollateFn

from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.frontend import KaldiFbankFrontend
from chunkssl_espnet.group_loss import GroupMaskedPredictionLoss
from chunkssl_espnet.ssl_model import ChunkSSLModel, tokenizer_spec


def _add(choices, key: str, cls) -> None:
    """Add ``key -> cls`` to one ESPnet ``ClassChoices``; a no-op when it is already there.

    Raises:
        TypeError: ``cls`` is not of the choices' base type.
        ValueError: ``key`` is already held by another class (ESPnet's own or another
            plug-in's): silently keeping either would build a model other than the config names.
    """
    key = key.lower()
    if choices.base_type is not None and not issubclass(cls, choices.base_type):
        raise TypeError(f"{cls.__name__} is not a {choices.base_type.__name__}")
    held = choices.classes.get(key)
    if held is not None and held is not cls:
        raise ValueError(
            f"cannot register {cls.__module__}.{cls.__qualname__} as {choices.name} '{key}': "
            f"the key is held by {held.__module__}.{held.__qualname__}"
        )
    choices.classes[key] = cls


def register() -> None:
    """Add our classes to ESPnet's ClassChoices (idempotent)."""
    for task in (_asr, _ssl, _st):
        _add(task.encoder_choices, "chunk_conformer", ChunkConformerEncoder)
        _add(task.frontend_choices, "kaldi_fbank", KaldiFbankFrontend)
    _add(_ssl.loss_choices, "group_fsq", GroupMaskedPredictionLoss)
    _add(_ssl.model_choices, "chunk_ssl", ChunkSSLModel)


register()


class ChunkSSLTask(_ssl.SSLTask):
    """ESPnet's SSL task for Chunk SSL: no labels, no token list, plain padding collation."""

    @classmethod
    def add_task_arguments(cls, parser):
        super().add_task_arguments(parser)
        required = parser.get_default("required")
        if "token_list" in required:  # FSQ targets come from the features, not from labels
            required.remove("token_list")

    @classmethod
    def build_collate_fn(cls, args, train: bool):
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(cls, args, train: bool):
        return None

    @classmethod
    def build_model(cls, args):
        if args.token_list is None:
            args.token_list = ["<unk>"]  # SSLTask wants one; Chunk SSL has no labels
        model = super().build_model(args)
        conf = getattr(args, "model_conf", None) or {}
        if model.tokenizer is not None and conf.get("tokenizer_dir") is not None:
            # ESPnet dumps ``args`` to config.yaml after building the model: keep the
            # tokenizer's settings there instead of the path of its directory (its tensors are
            # in the checkpoint), so the experiment loads on another machine.
            directory = str(conf.pop("tokenizer_dir"))
            conf["tokenizer"] = tokenizer_spec(model.tokenizer, directory)
            args.model_conf = conf
        return model


class ChunkASRTask(_asr.ASRTask):
    """ESPnet's ASR task with Chunk SSL's classes registered, and one option of fine-tuning:
    ``--encoder_lr_scale`` (default 1.0) gives the encoder's parameters ``scale`` times the
    optimizer's learning rate, in a parameter group of their own (ESPnet's schedulers scale
    every group's base rate alike). A lower rate is common practice for a large pre-trained
    encoder that a randomly initialised decoder and CTC layer would pull away from what it
    learnt; the mini recipe keeps 1.0 (egs2/mini_flite/asr1/TUNING.md)."""

    @classmethod
    def add_task_arguments(cls, parser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group("Chunk SSL fine-tuning")
        group.add_argument(
            "--encoder_lr_scale", type=float, default=1.0,
            help="the encoder's learning rate as a multiple of optim_conf's lr (1.0: the same)",
        )

    @classmethod
    def build_optimizers(cls, args, model):
        scale = getattr(args, "encoder_lr_scale", 1.0)
        if scale == 1.0:
            return super().build_optimizers(args, model)
        if scale < 0.0:
            raise ValueError(f"--encoder_lr_scale must be >= 0, got {scale}")
        if args.sharded_ddp or args.exclude_weight_decay:
            raise ValueError("--encoder_lr_scale does not combine with --sharded_ddp or "
                             "--exclude_weight_decay")
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"must be one of {list(optim_classes)}: {args.optim}")
        if "lr" not in args.optim_conf:
            raise ValueError("--encoder_lr_scale needs optim_conf.lr")
        encoder = list(model.encoder.parameters())
        ids = {id(p) for p in encoder}
        rest = [p for p in model.parameters() if id(p) not in ids]
        groups = [{"params": encoder, "lr": args.optim_conf["lr"] * scale}, {"params": rest}]
        return [optim_class(groups, **args.optim_conf)]


class ChunkSTTask(_st.STTask):
    """ESPnet's ST task with Chunk SSL's classes registered."""


class ChunkLMTask(_lm.LMTask):
    """ESPnet's LM task, unchanged: the recipes' token-level language model (shallow fusion in
    the offline beam search and in the streaming CTC prefix search)."""

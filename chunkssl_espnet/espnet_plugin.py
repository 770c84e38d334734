"""Registration of Chunk SSL's classes in ESPnet, and the task classes the entry points run.

ESPnet has no plug-in mechanism: each task module holds module-level ``ClassChoices``, read when
its parser and models are built. Importing this module adds our keys to them (before any parser is
built), so training, ``build_model_from_file``, inference and DDP workers all see them. Every entry
point in ``chunkssl_espnet.bin`` imports it first.

Keys added:
    frontend ``kaldi_fbank`` (SSL, ASR, ST), encoder ``chunk_conformer`` (SSL, ASR, ST),
    SSL loss ``group_fsq``, SSL model ``chunk_ssl``.
"""

import contextlib
import io
import sys

from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.frontend import KaldiFbankFrontend


def _import_espnet_tasks():
    """Import ESPnet's task modules, hiding the nltk download errors g2p_en prints offline."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            import espnet2.tasks.asr as asr
            import espnet2.tasks.ssl as ssl
            import espnet2.tasks.st as st
    except Exception:
        sys.stderr.write(buf.getvalue())
        raise
    return asr, ssl, st


_asr, _ssl, _st = _import_espnet_tasks()

from espnet2.train.collate_fn import CommonCollateFn  # noqa: E402

from chunkssl_espnet.group_loss import GroupMaskedPredictionLoss  # noqa: E402
from chunkssl_espnet.ssl_model import ChunkSSLModel  # noqa: E402


def _add(choices, key: str, cls) -> None:
    key = key.lower()
    if choices.base_type is not None and not issubclass(cls, choices.base_type):
        raise TypeError(f"{cls.__name__} is not a {choices.base_type.__name__}")
    choices.classes.setdefault(key, cls)


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
        return super().build_model(args)


class ChunkASRTask(_asr.ASRTask):
    """ESPnet's ASR task with Chunk SSL's classes registered."""


class ChunkSTTask(_st.STTask):
    """ESPnet's ST task with Chunk SSL's classes registered."""

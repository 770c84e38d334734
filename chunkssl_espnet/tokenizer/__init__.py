"""FSQ tokenizers: normalised fbank -> one FSQ target per encoder frame (docs/method.md, section 3).

Kinds (``TOKENIZERS``): ``random`` (seeded random projection, fitted standardisation, FSQ) and
``trained`` (small FSQ auto-encoder). ``build_tokenizer(kind, **conf)`` makes one,
``load_tokenizer(directory)`` reads one written by ``FSQTokenizer.save``.
"""

from chunkssl_espnet.tokenizer.autoencoder import (
    TrainedFSQTokenizer,
    reconstruction_error,
    train_autoencoder,
)
from chunkssl_espnet.tokenizer.base import FSQTokenizer
from chunkssl_espnet.tokenizer.random_projection import RandomFSQTokenizer
from chunkssl_espnet.tokenizer.registry import TOKENIZERS, build_tokenizer, load_tokenizer
from chunkssl_espnet.tokenizer.usage import codebook_usage, format_usage, perplexity

__all__ = [
    "FSQTokenizer",
    "RandomFSQTokenizer",
    "TrainedFSQTokenizer",
    "TOKENIZERS",
    "build_tokenizer",
    "load_tokenizer",
    "train_autoencoder",
    "reconstruction_error",
    "codebook_usage",
    "format_usage",
    "perplexity",
]

"""Registry of FSQ tokenizer kinds, and loading of saved tokenizers (docs/method.md, section 3)."""

import json
from pathlib import Path
from typing import Any, Dict, Type, Union

import torch

from chunkssl_espnet.features import load_mvn_stats
from chunkssl_espnet.tokenizer.autoencoder import TrainedFSQTokenizer
from chunkssl_espnet.tokenizer.base import CONFIG_FILE, WEIGHTS_FILE, FSQTokenizer
from chunkssl_espnet.tokenizer.random_projection import RandomFSQTokenizer

TOKENIZERS: Dict[str, Type[FSQTokenizer]] = {
    "random": RandomFSQTokenizer,
    "trained": TrainedFSQTokenizer,
}


def build_tokenizer(kind: str, **conf: Any) -> FSQTokenizer:
    """A new tokenizer of ``kind`` (a key of ``TOKENIZERS``) built with ``conf``."""
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(TOKENIZERS)}")
    try:
        return TOKENIZERS[kind](**conf)
    except TypeError as e:
        raise ValueError(f"bad configuration for tokenizer kind {kind!r}: {e}") from e


def load_tokenizer(directory: Union[str, Path]) -> FSQTokenizer:
    """Rebuild a tokenizer written by ``FSQTokenizer.save(directory)``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a file is corrupt or does not match the configuration.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"tokenizer directory {directory} is incomplete: {path.name} is missing "
                "(re-run python -m chunkssl_espnet.bin.tokenizer_train)"
            )
    try:
        config = json.loads(config_path.read_text())
        kind, conf = config["kind"], config["conf"]
        if not isinstance(conf, dict):
            raise TypeError("'conf' is not a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"tokenizer directory {directory}: corrupt {CONFIG_FILE}: {e!r}") from e
    try:
        tokenizer = build_tokenizer(kind, **conf)
    except ValueError as e:
        raise ValueError(f"tokenizer directory {directory}: {CONFIG_FILE}: {e}") from e
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        tokenizer.load_state_dict(state, strict=True)
    except Exception as e:  # unpickling and shape/key mismatches raise many types
        raise ValueError(
            f"tokenizer directory {directory}: corrupt or mismatching {WEIGHTS_FILE}: {e}"
        ) from e
    if config.get("mvn_stats"):
        stats = load_mvn_stats(directory / config["mvn_stats"])
        tokenizer.set_mvn(stats, config.get("mvn_source"))
    return tokenizer.freeze()

"""Decode-time chunk settings for ESPnet's offline inference entry points.

ESPnet's ``asr_inference`` and ``st_inference`` rebuild the model from its training config. Our
options ``--decoding_chunk_size N`` and ``--num_decoding_left_chunks M`` are taken off the command
line and written into a copy of that config (``encoder_conf``), which is then handed to ESPnet, so
the encoder runs under that chunk mask without touching ESPnet.
"""

import argparse
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

from chunkssl_espnet.data.datadir import atomic_write_text


def split_chunk_options(argv: List[str], config_flag: str) -> Tuple[List[str], Optional[Path]]:
    """Take our chunk options off ``argv``; return the new argv and the written config, if any.

    Raises:
        ValueError: a chunk option without ``config_flag`` and ``--output_dir``.
        FileNotFoundError: the training config does not exist.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--decoding_chunk_size", type=int, default=None,
                        help="encoder frames per chunk at decoding (-1: full context)")
    parser.add_argument("--num_decoding_left_chunks", type=int, default=None,
                        help="left chunks the encoder attends to at decoding (-1: all)")
    parser.add_argument(config_flag, dest="train_config", default=None)
    parser.add_argument("--output_dir", default=None)
    ours, rest = parser.parse_known_args(argv)
    if ours.decoding_chunk_size is None and ours.num_decoding_left_chunks is None:
        return argv, None
    if ours.train_config is None or ours.output_dir is None:
        raise ValueError(f"--decoding_chunk_size and --num_decoding_left_chunks need "
                         f"{config_flag} and --output_dir")
    src = Path(ours.train_config)
    if not src.is_file():
        raise FileNotFoundError(f"{config_flag} {src}: training config not found")
    with open(src, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    enc = conf.setdefault("encoder_conf", {})
    if ours.decoding_chunk_size is not None:
        enc["decoding_chunk_size"] = ours.decoding_chunk_size
    if ours.num_decoding_left_chunks is not None:
        enc["num_decoding_left_chunks"] = ours.num_decoding_left_chunks
    out_dir = Path(ours.output_dir)
    dst = atomic_write_text(out_dir / "decode_config.yaml", yaml.safe_dump(conf, sort_keys=False))
    return rest + [config_flag, str(dst), "--output_dir", str(out_dir)], dst

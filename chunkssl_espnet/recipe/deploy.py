"""Deployment stage: export a fine-tuned model to ONNX and decode the test sets with sherpa-onnx.

``deploy_model`` exports ``<model_dir>`` at one chunk size and left context (fp32 and int8, in
``<model_dir>/onnx_chunk<C>``), then streams every test set through sherpa-onnx's
``OnlineRecognizer`` in random 10-500 ms pieces (the same seeds as the PyTorch streaming decoder),
into ``<model_dir>/decode_<set>_sherpa/<fp32|int8>_chunk<C>/`` with ``text`` and
``summary.json`` (real-time factor: decoding time over audio time, one thread). Each audio gets
the tail padding that makes its last chunk whole (``deploy.sherpa.tail_padding``): the runtime
decodes whole chunks only. Every output is stamped like the other stages and skipped when done.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

from chunkssl_espnet.data.datadir import atomic_write_text, read_scp
from chunkssl_espnet.recipe.decode import chunk_dir_name
from chunkssl_espnet.recipe.jobs import RecipeError
from chunkssl_espnet.recipe.provenance import StageRecord, fresh_tmp_dir, replace_dir

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)
VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def sherpa_root(model_dir: PathLike, test_set: str) -> Path:
    """``<model_dir>/decode_<set>_sherpa``: one folder per variant and chunk size."""
    return Path(model_dir) / f"decode_{test_set}_sherpa"


def decode_with_sherpa(onnx_dir: Path, model: str, data_dir: Path, out: Path, seed: int = 0,
                       num_threads: int = 1) -> dict:
    """Stream every utterance of ``data_dir/wav.scp``; writes ``text`` and ``summary.json``."""
    import numpy as np
    from tqdm import tqdm

    from chunkssl_espnet.data.datadir import DataDirError
    from chunkssl_espnet.deploy.sherpa import (
        create_recognizer,
        decode_pieces,
        read_metadata,
        tail_padding,
    )
    from chunkssl_espnet.features import load_wav
    from chunkssl_espnet.frames import ENCODER_FRAME_MS, SAMPLE_RATE
    from chunkssl_espnet.streaming import random_piece_sizes

    rec = create_recognizer(onnx_dir, model, num_threads)
    meta = read_metadata(onnx_dir / model)
    window = 4 * int(meta["chunk_size"])
    wav_scp = data_dir / "wav.scp"
    hyps, audio_s, compute_s = [], 0.0, 0.0
    for i, (utt, path) in enumerate(tqdm(read_scp(wav_scp).items(), desc=f"sherpa {model}",
                                         unit="utt")):
        try:
            audio, _ = load_wav(path, SAMPLE_RATE)
        except (FileNotFoundError, ValueError) as e:
            raise DataDirError(f"sherpa decode: {wav_scp}: utterance '{utt}': {e}") from e
        audio = audio.numpy()
        padded = np.concatenate([audio, np.zeros(tail_padding(audio.size, window), np.float32)])
        r = decode_pieces(rec, padded, random_piece_sizes(padded.size, seed + i))
        hyps.append(f"{utt} {r.text.strip()}".rstrip())
        audio_s += audio.size / SAMPLE_RATE
        compute_s += r.compute_s
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "text", "\n".join(hyps) + "\n")
    summary = {"num_utts": len(hyps), "rtf": compute_s / audio_s if audio_s else 0.0,
               "chunk_size_frames": int(meta["chunk_size"]),
               "chunk_size_ms": int(meta["chunk_size"]) * ENCODER_FRAME_MS,
               "num_left_chunks": int(meta["num_left_chunks"]), "model": model,
               "model_bytes": (onnx_dir / model).stat().st_size, "num_threads": num_threads,
               "runtime": "sherpa-onnx " + _sherpa_version()}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _sherpa_version() -> str:
    from importlib.metadata import version

    return version("sherpa-onnx")


def deploy_model(
    model_dir: PathLike,
    data_dirs: Sequence[PathLike],
    chunk_size: int,
    num_left_chunks: int,
    model_file: str = "valid.loss.ave.pth",
    force: bool = False,
    argv: Optional[Sequence[str]] = None,
) -> List[Path]:
    """Export and decode; returns the decoding folders."""
    from chunkssl_espnet.deploy.export import export_model

    model_dir = Path(model_dir)
    config, ckpt = model_dir / "config.yaml", model_dir / model_file
    for p in (config, ckpt):
        if not p.is_file():
            raise RecipeError(f"{p}: not found; run the fine-tuning stage first")
    onnx_dir = model_dir / f"onnx_{chunk_dir_name(chunk_size)}"
    rec = StageRecord(onnx_dir, "export_onnx", {
        "config": config, "model_file": ckpt, "mtime": ckpt.stat().st_mtime,
        "chunk_size": chunk_size, "num_left_chunks": num_left_chunks, "force": force}, argv)
    if not rec.is_done():
        rec.start()
        t0 = time.time()
        out = export_model(config, ckpt, onnx_dir, chunk_size, num_left_chunks, int8=True)
        logger.info("exported %s and %s in %.1f s", out.model, out.int8, time.time() - t0)
        rec.finish({"model": str(out.model), "int8": str(out.int8)})
    dirs = []
    for data_dir in map(Path, data_dirs):
        for variant, model in VARIANTS.items():
            name = f"{variant}_{chunk_dir_name(chunk_size)}"
            out_dir = sherpa_root(model_dir, data_dir.name) / name
            r = StageRecord(out_dir, "decode_sherpa", {
                "onnx": onnx_dir / model, "stamp": (onnx_dir / ".done").read_text().strip(),
                "data_dir": data_dir, "force": force}, argv)
            dirs.append(out_dir)
            if r.is_done():
                continue
            r.start()
            tmp = fresh_tmp_dir(out_dir)
            summary = decode_with_sherpa(onnx_dir, model, data_dir, tmp)
            replace_dir(tmp, out_dir)
            logger.info("%s: RTF %.4f", out_dir, summary["rtf"])
            r.finish({"text": str(out_dir / "text"), "summary": summary})
    return dirs

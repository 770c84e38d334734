"""Deployment stage: export a fine-tuned model to ONNX and decode the test sets with sherpa-onnx.

``deploy_model`` exports ``<model_dir>`` at one chunk size and left context (fp32 and int8, in
``<model_dir>/onnx_chunk<C>``), then streams every test set through sherpa-onnx's
``OnlineRecognizer`` in random 10-500 ms pieces (the same seeds as the PyTorch streaming decoder),
into ``<model_dir>/decode_<set>_sherpa/<fp32|int8>_chunk<C>/`` with ``text``, ``tokens`` and
``summary.json`` (real-time factor: decoding time over audio time, one thread). The same audio
and pieces go through our PyTorch streaming decoder with CTC greedy search at the same chunk size
and left chunks (``pytorch_chunk<C>/``): the reference whose tokens sherpa-onnx's must equal,
counted per utterance in its summary. Each audio gets the tail padding that makes its last chunk
whole (``deploy.sherpa.tail_padding``): the runtime decodes whole chunks only. Every output is
stamped like the other stages and skipped when done.
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


def _stream_data_dir(decode, data_dir: Path, window: int, desc: str, seed: int = 0):
    """Feed each utterance of ``data_dir/wav.scp``, tail-padded to whole chunks of ``window``
    fbank frames, in random pieces to ``decode(audio, pieces) -> (text, tokens, seconds)``.

    Returns:
        ``{utt: (text, tokens)}``, the audio seconds (unpadded) and the decoding seconds.
    """
    import numpy as np
    from tqdm import tqdm

    from chunkssl_espnet.data.datadir import DataDirError
    from chunkssl_espnet.deploy.sherpa import tail_padding
    from chunkssl_espnet.features import load_wav
    from chunkssl_espnet.frames import SAMPLE_RATE
    from chunkssl_espnet.streaming import random_piece_sizes

    wav_scp = data_dir / "wav.scp"
    out, audio_s, compute_s = {}, 0.0, 0.0
    for i, (utt, path) in enumerate(tqdm(read_scp(wav_scp).items(), desc=desc, unit="utt")):
        try:
            audio, _ = load_wav(path, SAMPLE_RATE)
        except (FileNotFoundError, ValueError) as e:
            raise DataDirError(f"{desc}: {wav_scp}: utterance '{utt}': {e}") from e
        audio = audio.numpy()
        padded = np.concatenate([audio, np.zeros(tail_padding(audio.size, window), np.float32)])
        text, tokens, seconds = decode(padded, random_piece_sizes(padded.size, seed + i))
        out[utt] = (text.strip(), tokens)
        audio_s += audio.size / SAMPLE_RATE
        compute_s += seconds
    return out, audio_s, compute_s


def _write(out: Path, results, summary: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "text", "".join(f"{u} {t}".rstrip() + "\n"
                                            for u, (t, _) in results.items()))
    atomic_write_text(out / "tokens", "".join(" ".join([u, *k]) + "\n"
                                              for u, (_, k) in results.items()))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def read_tokens(folder: Path) -> dict:
    """``{utt: [token, ...]}`` of a decoding folder's ``tokens`` file."""
    lines = (folder / "tokens").read_text(encoding="utf-8").splitlines()
    return {p[0]: p[1:] for p in (line.split() for line in lines) if p}


def decode_with_sherpa(onnx_dir: Path, model: str, data_dir: Path, out: Path,
                       reference: Optional[dict] = None, num_threads: int = 1) -> dict:
    """sherpa-onnx on every utterance; writes ``text``, ``tokens`` and ``summary.json``, with
    the utterances whose tokens equal ``reference`` (``{utt: tokens}``) counted."""
    from chunkssl_espnet.deploy.sherpa import create_recognizer, decode_pieces

    rec = create_recognizer(onnx_dir, model, num_threads)
    meta = rec.metadata
    chunk = int(meta["chunk_size"])

    def decode(audio, pieces):
        r = decode_pieces(rec, audio, pieces)
        return r.text, r.tokens, r.compute_s

    results, audio_s, compute_s = _stream_data_dir(decode, data_dir, 4 * chunk,
                                                   f"sherpa-onnx {model}")
    summary = {"num_utts": len(results), "rtf": compute_s / audio_s if audio_s else 0.0,
               "chunk_size_frames": chunk, "num_left_chunks": int(meta["num_left_chunks"]),
               "model": model, "model_bytes": (onnx_dir / model).stat().st_size,
               "num_threads": num_threads, "runtime": "sherpa-onnx " + _sherpa_version()}
    if reference is not None:
        summary["utts_equal_to_reference"] = sum(
            reference.get(u) == k for u, (_, k) in results.items())
    return _write(out, results, summary)


def decode_with_pytorch(config: Path, model_file: Path, chunk_size: int, num_left_chunks: int,
                        data_dir: Path, out: Path) -> dict:
    """Our streaming decoder, CTC greedy (beam 1), on the same padded audio and pieces as
    sherpa-onnx: the reference its tokens must equal."""
    import torch

    from chunkssl_espnet.streaming import Speech2TextStreaming, decode_stream

    torch.set_num_threads(1)
    s2t = Speech2TextStreaming(config, model_file, chunk_size=chunk_size,
                               num_left_chunks=num_left_chunks, beam_size=1)

    def decode(audio, pieces):
        text = decode_stream(s2t, torch.from_numpy(audio), pieces)
        return text, [s2t.model.token_list[t] for t in s2t.search.greedy], s2t.stats.compute_s

    results, audio_s, compute_s = _stream_data_dir(decode, data_dir, 4 * chunk_size,
                                                   "PyTorch CTC greedy")
    return _write(out, results, {
        "num_utts": len(results), "rtf": compute_s / audio_s if audio_s else 0.0,
        "chunk_size_frames": chunk_size, "num_left_chunks": num_left_chunks, "num_threads": 1,
        "runtime": f"torch {torch.__version__}"})


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
    stamp = (onnx_dir / ".done").read_text().strip()
    for data_dir in map(Path, data_dirs):
        root = sherpa_root(model_dir, data_dir.name)
        ref_dir = root / f"pytorch_{chunk_dir_name(chunk_size)}"
        for variant in ("pytorch", *VARIANTS):
            out_dir = root / f"{variant}_{chunk_dir_name(chunk_size)}"
            r = StageRecord(out_dir, "decode_sherpa" if variant in VARIANTS else "decode_greedy", {
                "onnx": onnx_dir / VARIANTS.get(variant, ""), "stamp": stamp,
                "data_dir": data_dir, "force": force}, argv)
            dirs.append(out_dir)
            if r.is_done():
                continue
            r.start()
            tmp = fresh_tmp_dir(out_dir)
            if variant == "pytorch":
                summary = decode_with_pytorch(config, ckpt, chunk_size, num_left_chunks,
                                              data_dir, tmp)
            else:
                summary = decode_with_sherpa(onnx_dir, VARIANTS[variant], data_dir, tmp,
                                             read_tokens(ref_dir))
            replace_dir(tmp, out_dir)
            logger.info("%s: RTF %.4f", out_dir, summary["rtf"])
            r.finish({"text": str(out_dir / "text"), "summary": summary})
    return dirs

"""Streaming decoding of a Kaldi-style data directory, shared by the ASR and ST entry points.

Each utterance of ``<data_dir>/wav.scp`` is fed in random-sized pieces (10 to 500 ms, seeded) as a
live source would deliver it, or in fixed ``piece_ms`` pieces. Writes ``text`` (final outputs),
``partials.txt`` (the output after every chunk, with the audio time it depends on),
``latency.json`` (per utterance: real-time factor and, per chunk, the time from the end of its
audio to its partial result) and ``summary.json``.
"""

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
from tqdm import tqdm

from chunkssl_espnet.data.datadir import DataDirError, atomic_write_text, read_scp
from chunkssl_espnet.features import load_wav
from chunkssl_espnet.frames import ENCODER_FRAME_MS, SAMPLE_RATE
from chunkssl_espnet.streaming import ChunkStreamer, decode_stream, random_piece_sizes


def add_stream_arguments(p) -> None:
    """Options common to the streaming entry points."""
    p.add_argument("--data_dir", required=True, help="Kaldi-style dir with wav.scp")
    p.add_argument("--output_dir", required=True, nargs="+",
                   help="one folder per --chunk_size, in the same order")
    p.add_argument("--chunk_size", type=int, nargs="+", default=[16],
                   help=f"encoder frames ({ENCODER_FRAME_MS} ms each); several: each decoded in "
                   "turn by this one process (one start, one model loading)")
    p.add_argument("--num_left_chunks", type=int, default=-1, help="-1: all left context")
    p.add_argument("--piece_ms", type=float, default=None,
                   help="fixed piece size in ms (default: random 10-500 ms pieces)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=1, help="torch CPU threads")


def parse_stream_args(p: argparse.ArgumentParser, cmd: Optional[List[str]]) -> argparse.Namespace:
    """Parse; ``runs``: the ``(chunk_size, output_dir)`` pairs (a usage error unless there is
    one output folder per chunk size)."""
    args = p.parse_args(cmd)
    if len(args.output_dir) != len(args.chunk_size):
        p.error(f"{len(args.chunk_size)} --chunk_size value(s) {args.chunk_size} but "
                f"{len(args.output_dir)} --output_dir folder(s): give one folder per chunk size")
    args.runs = list(zip(args.chunk_size, args.output_dir))
    return args


@contextlib.contextmanager
def stream_session(args: argparse.Namespace, config: str, task_name: str) -> Iterator[None]:
    """The set-up of a streaming entry point: logging, ``--num_threads``, and the input checks
    of ``--data_dir`` against the model's ``config`` (task ``task_name``); an input error in the
    block (bad data, config or file) exits with one line."""
    import torch

    from chunkssl_espnet.bin.input_check import check_stream_inputs, exit_on_input_error

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.num_threads)
    with exit_on_input_error():
        check_stream_inputs(args.data_dir, config, task_name)
        yield


def decode_data_dir(
    streamer: ChunkStreamer,
    data_dir: str,
    output_dir: str,
    piece_ms: Optional[float] = None,
    seed: int = 0,
    per_utt_extra: Optional[Callable[[str, ChunkStreamer], Dict]] = None,
    summary_extra: Optional[Callable[[Dict[str, Dict], Path], Dict]] = None,
) -> Dict:
    """Decode every utterance of ``data_dir``; returns the summary (also written to disk).

    Args:
        per_utt_extra: adds task figures to each utterance's entry of latency.json.
        summary_extra: adds corpus figures to the summary, given the per-utterance entries and
            the path of the written hypotheses.

    Raises:
        FileNotFoundError: ``wav.scp`` is missing.
        DataDirError: naming ``wav.scp``, the utterance and its file, for an empty ``wav.scp``
            or unreadable, empty or wrongly sampled audio.
    """
    name = "streaming decode"
    wav_scp = Path(data_dir) / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{name}: {wav_scp} not found")
    wavs = read_scp(wav_scp)
    if not wavs:
        raise DataDirError(f"{name}: {wav_scp} lists no utterance")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hyps: List[str] = []
    partials: List[str] = []
    per_utt: Dict[str, Dict] = {}
    latencies: List[float] = []
    audio_s = compute_s = 0.0
    for i, (utt, path) in enumerate(tqdm(wavs.items(), desc=name, unit="utt")):
        try:
            audio, _ = load_wav(path, SAMPLE_RATE)
        except (FileNotFoundError, ValueError) as e:
            raise DataDirError(f"{name}: {wav_scp}: utterance '{utt}': {e}") from e
        if piece_ms is not None:
            pieces = [max(int(piece_ms * SAMPLE_RATE / 1000), 1)]
        else:
            pieces = random_piece_sizes(audio.numel(), seed + i)
        text = decode_stream(streamer, audio, pieces)
        st = streamer.stats
        if not st.chunks:
            logging.warning("utterance %s (%s) is shorter than one encoder frame", utt, path)
        hyps.append(f"{utt} {text}".rstrip())
        partials.extend(f"{utt} {c.audio_end_s:.2f} {c.partial}".rstrip() for c in st.chunks)
        lat = [c.latency_ms for c in st.chunks]
        per_utt[utt] = {"audio_s": st.audio_s, "compute_s": st.compute_s, "rtf": st.rtf,
                        "chunk_latency_ms": lat}
        if per_utt_extra is not None:
            per_utt[utt].update(per_utt_extra(utt, streamer))
        latencies.extend(lat)
        audio_s += st.audio_s
        compute_s += st.compute_s
    summary = {
        "num_utts": len(wavs),
        "chunk_size_frames": streamer.chunk_size,
        "chunk_size_ms": streamer.chunk_size * ENCODER_FRAME_MS,
        "num_left_chunks": streamer.num_left_chunks,
        "algorithmic_latency_ms": streamer.algorithmic_latency_ms(),
        "rtf": compute_s / audio_s if audio_s else 0.0,
        "mean_chunk_latency_ms": float(np.mean(latencies)) if latencies else 0.0,
        "p90_chunk_latency_ms": float(np.percentile(latencies, 90)) if latencies else 0.0,
        "device": str(streamer.device),
    }
    atomic_write_text(out / "text", "\n".join(hyps) + "\n")
    atomic_write_text(out / "partials.txt", "\n".join(partials) + "\n")
    atomic_write_text(out / "latency.json", json.dumps(per_utt, indent=1) + "\n")
    if summary_extra is not None:
        summary.update(summary_extra(per_utt, out / "text"))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary

"""Streaming ASR decoding of a data directory, with latency figures.

    python -m chunkssl_espnet.bin.asr_inference_streaming \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.acc.ave.pth \\
        --data_dir data/test --output_dir exp/asr/decode_stream_c8 --chunk_size 8

Each utterance of ``<data_dir>/wav.scp`` is fed in random-sized pieces (10 to 500 ms, seeded), as a
live source would deliver it. Writes ``text`` (final hypotheses), ``partials.txt`` (the partial
result after every chunk), ``latency.json`` (per utterance: real-time factor and, per chunk, the
time from the end of its audio to its partial result) and ``summary.json``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
from tqdm import tqdm

from chunkssl_espnet.data.datadir import atomic_write_text, read_scp
from chunkssl_espnet.features import SAMPLE_RATE, load_wav


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--data_dir", required=True, help="Kaldi-style dir with wav.scp")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--chunk_size", type=int, default=16, help="encoder frames (40 ms each)")
    p.add_argument("--num_left_chunks", type=int, default=-1, help="-1: all left context")
    p.add_argument("--beam_size", type=int, default=10, help="CTC prefix beam (1: greedy)")
    p.add_argument("--ctc_weight", type=float, default=0.3, help="CTC weight in rescoring")
    p.add_argument("--piece_ms", type=float, default=None,
                   help="fixed piece size in ms (default: random 10-500 ms pieces)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=1, help="torch CPU threads")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    import torch

    from chunkssl_espnet.streaming import Speech2TextStreaming, decode_stream, random_piece_sizes

    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.num_threads)
    wav_scp = Path(args.data_dir) / "wav.scp"
    if not wav_scp.is_file():
        raise SystemExit(f"asr_inference_streaming: {wav_scp} not found")
    wavs = read_scp(wav_scp)
    if not wavs:
        raise SystemExit(f"asr_inference_streaming: {wav_scp} lists no utterance")
    s2t = Speech2TextStreaming(args.asr_train_config, args.asr_model_file, args.device,
                               args.chunk_size, args.num_left_chunks, args.beam_size,
                               args.ctc_weight)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hyps, partials, per_utt = [], [], {}
    latencies, audio_s, compute_s = [], 0.0, 0.0
    for i, (utt, path) in enumerate(tqdm(wavs.items(), desc="streaming decode", unit="utt")):
        try:
            audio, sr = load_wav(path)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"asr_inference_streaming: utterance {utt}: {e}") from e
        if sr != SAMPLE_RATE:
            raise SystemExit(
                f"asr_inference_streaming: utterance {utt} ({path}) has {sr} Hz audio; the model "
                f"expects {SAMPLE_RATE} Hz: resample it (sox in.wav -r {SAMPLE_RATE} out.wav)"
            )
        if args.piece_ms is not None:
            pieces = [max(int(args.piece_ms * SAMPLE_RATE / 1000), 1)]
        else:
            pieces = random_piece_sizes(audio.numel(), args.seed + i)
        text = decode_stream(s2t, audio, pieces)
        st = s2t.stats
        hyps.append(f"{utt} {text}")
        partials.extend(f"{utt} {c.audio_end_s:.2f} {c.partial}" for c in st.chunks)
        chunk_lat = [c.latency_ms for c in st.chunks]
        per_utt[utt] = {"audio_s": st.audio_s, "compute_s": st.compute_s, "rtf": st.rtf,
                        "chunk_latency_ms": chunk_lat}
        latencies.extend(chunk_lat)
        audio_s += st.audio_s
        compute_s += st.compute_s
    summary = {
        "num_utts": len(wavs),
        "chunk_size_frames": args.chunk_size,
        "chunk_size_ms": args.chunk_size * 40,
        "num_left_chunks": args.num_left_chunks,
        "beam_size": args.beam_size,
        "algorithmic_latency_ms": s2t.algorithmic_latency_ms(),
        "rtf": compute_s / audio_s if audio_s else 0.0,
        "mean_chunk_latency_ms": float(np.mean(latencies)) if latencies else 0.0,
        "p90_chunk_latency_ms": float(np.percentile(latencies, 90)) if latencies else 0.0,
        "device": args.device,
    }
    atomic_write_text(out / "text", "\n".join(hyps) + "\n")
    atomic_write_text(out / "partials.txt", "\n".join(partials) + "\n")
    atomic_write_text(out / "latency.json", json.dumps(per_utt, indent=1) + "\n")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()

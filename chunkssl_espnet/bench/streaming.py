"""Benchmark 4: streaming decoding, ours vs ESPnet's blockwise streaming (docs/method.md section 9).

Two CTC-only ASR models of the same size, trained the same short way (or both randomly
initialised with ``--epochs 0``) on the LibriVox utterances of pocketsphinx-testdata, decode the
same audio fed in the same pieces (``--piece-ms``, default 40 ms):

* ours: :class:`chunkssl_espnet.streaming.Speech2TextStreaming` (``chunk_conformer`` encoder,
  Kaldi fbank, CTC prefix beam search), chunk size C encoder frames, all left context;
* ESPnet: ``espnet2.bin.asr_inference_streaming.Speech2TextStreaming`` with a
  ``ContextualBlockConformerEncoder`` (STFT log-mel frontend, conv2d sub-sampling, blockwise
  synchronous beam search with ``ctc_weight`` 1.0). Its block is mapped to C as closely as its
  design allows: ``hop_size`` C (C new frames per block), ``look_ahead`` 0 (no look-ahead, as ours),
  ``block_size`` 2C (the previous C frames as in-block past context; older context flows through
  the contextual block embeddings). ESPnet's class builds its ``BatchBeamSearchOnline`` with the
  defaults 40/16/16 whatever the model; we give it the encoder's values, as ESPnet's own simulated
  streaming does (``BatchBeamSearchOnlineSim.set_streaming_config``). ESPnet trains one block
  configuration: the model is trained at C = 16 (640 ms) and decoded at every C; ours is trained
  with dynamic chunks and decoded at every C.

Both models are trained with ESPnet's trainer, in process, the same way: ``--epochs`` (default 8)
epochs of the utterances, batch 1, Adam, ``--lr`` with ``--warmup-steps``; ``--epochs 0`` builds
both with random weights instead. Both decode with beam 4 (``--beam-size``) and no attention
decoder (``ctc_weight`` 1.0 in training, so ESPnet drops the decoder); ESPnet's repetition
detection stays on (its default) unless ``--espnet-no-repetition-detection``. Figures, per chunk
size, for each system:

* RTF: wall time of all calls / audio seconds (median over ``--repeats`` passes), and the same
  with the CPU time of the process (on a shared machine, the work done without the time other
  processes held the core);
* compute latency: wall time of each call that advanced the partial result (the call that
  delivered the audio completing a chunk, up to the return of the partial hypothesis);
  median and p90 over all such calls, and the median CPU time of these calls;
* audio lag: audio fed when a partial came out minus the audio its decoded frames stand for
  (frames x 40 ms): the waiting built into the design (chunk completion, sub-sampling context,
  STFT centring, ESPnet's beam search processing a block only once a later frame exists) plus
  the piece size;
* end-to-end latency: audio lag + compute latency, the time from the end of a chunk's audio to
  its partial result in a real-time stream (median);
* final result latency: wall time of the last call (the last piece, ``is_final``), the time from
  the end of the utterance's audio to its final text (median over utterances).

Passes are interleaved (ours, ESPnet, ours, ESPnet, ...) in one process with ``--threads`` torch
threads (default 1). Models are cached in ``--workdir``.

    python -m chunkssl_espnet.bench.streaming --out exp/bench/streaming.json
"""

import argparse
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from chunkssl_espnet.bench.common import (
    DEFAULT_CHUNK_MS,
    LIBRIVOX_DIR,
    REPO,
    SIZES,
    BenchError,
    fmt_ratio,
    format_machine,
    machine_info,
    markdown_table,
    print_goals,
    profile_top_ops,
    run_main,
    save_record,
    setup_run,
    synchronize,
)
from chunkssl_espnet.data.datadir import atomic_path, atomic_write_text
from chunkssl_espnet.features import (
    NUM_MEL_BINS,
    compute_mvn_stats,
    kaldi_fbank,
    load_wav,
    save_mvn_stats,
)
from chunkssl_espnet.frames import ENCODER_FRAME_MS, HOP_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES

TRAIN_CHUNK = 16  # ESPnet's block configuration is fixed at training: the 640 ms one
SYSTEMS = ("ours", "espnet")
STFT_CONF = dict(fs=SAMPLE_RATE, n_fft=512, win_length=WINDOW_SAMPLES, hop_length=HOP_SAMPLES,
                 n_mels=NUM_MEL_BINS)


def espnet_block_config(chunk: int) -> Dict[str, int]:
    """ESPnet's contextual block for a chunk of ``chunk`` encoder frames (see the docstring)."""
    return {"block_size": 2 * chunk, "hop_size": chunk, "look_ahead": 0}


# ---------------------------------------------------------------------------------- models
@dataclass
class Utterance:
    uttid: str
    audio: torch.Tensor  # (N,) float32 in [-1, 1]
    text: str


def load_utterances(librivox_dir: Path, max_utts: int) -> List[Utterance]:
    """The LibriVox utterances with their transcripts (upper case)."""
    wavs = sorted(librivox_dir.glob("*.wav"))
    trans = librivox_dir / "transcription"
    if not wavs or not trans.is_file():
        raise BenchError(
            f"no LibriVox utterances in {librivox_dir}: install the Debian package "
            "pocketsphinx-testdata or pass --librivox-dir"
        )
    texts = {}
    for line in trans.read_text().splitlines():
        words, utt = line.rsplit("(", 1)
        texts[utt.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip().upper()
    utts = []
    for wav in wavs[: max_utts if max_utts > 0 else None]:
        audio, _ = load_wav(wav, SAMPLE_RATE)
        utts.append(Utterance(wav.stem, audio, texts.get(wav.stem, "")))
    return utts


def truncate(utts: Sequence[Utterance], max_seconds: float) -> List[Utterance]:
    """The decoded audio: each utterance cut to ``max_seconds`` (0: whole; training always
    uses whole utterances, whose transcripts match)."""
    if max_seconds <= 0:
        return list(utts)
    n = int(max_seconds * SAMPLE_RATE)
    return [Utterance(u.uttid, u.audio[:n], "") for u in utts]


def write_data(root: Path, utts: Sequence[Utterance]) -> Dict[str, Path]:
    """Kaldi-style data dir (wav.scp as 16-bit wav, text), shape file and char token list."""
    import soundfile

    from chunkssl_espnet.data.tokens import write_char_token_list

    d = root / "data"
    (d / "wav").mkdir(parents=True, exist_ok=True)
    scp, text, shape = [], [], []
    for u in utts:
        path = d / "wav" / f"{u.uttid}.wav"
        soundfile.write(path, u.audio.numpy(), SAMPLE_RATE, subtype="PCM_16")
        scp.append(f"{u.uttid} {path}\n")
        text.append(f"{u.uttid} {u.text}\n")
        shape.append(f"{u.uttid} {u.audio.numel()}\n")
    (d / "wav.scp").write_text("".join(scp))
    (d / "text").write_text("".join(text))
    (d / "speech_shape").write_text("".join(shape))
    write_char_token_list(d / "text", d / "tokens.txt")
    return {"dir": d, "tokens": d / "tokens.txt"}


def feature_stats(system: str, utts: Sequence[Utterance], path: Path) -> Path:
    """Global MVN statistics (ESPnet feats_stats.npz) of the system's own features."""
    if system == "ours":
        feats = [kaldi_fbank(u.audio, SAMPLE_RATE, NUM_MEL_BINS) for u in utts]
    else:
        from espnet2.asr.frontend.default import DefaultFrontend

        frontend = DefaultFrontend(**STFT_CONF).eval()
        with torch.no_grad():
            feats = [frontend(u.audio[None], torch.tensor([u.audio.numel()]))[0][0]
                     for u in utts]  # fmt: skip
    save_mvn_stats(compute_mvn_stats(feats), path)
    return path


def train_config(system: str, size: str, stats: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """The training YAML of one system: conf/asr_chunk_tiny.yaml, CTC only, the short schedule;
    ESPnet's swaps the frontend and encoder for the STFT log-mel and the contextual block
    Conformer of the same size."""
    conf = yaml.safe_load((REPO / "conf/asr_chunk_tiny.yaml").read_text())
    sizes = SIZES[size]
    conf["model_conf"]["ctc_weight"] = 1.0  # CTC only: ESPnet drops the attention decoder
    conf["normalize_conf"] = {"stats_file": str(stats)}
    conf["optim_conf"]["lr"] = args.lr
    conf["scheduler_conf"]["warmup_steps"] = args.warmup_steps
    conf.update(batch_type="unsorted", batch_size=args.train_batch_size, max_epoch=args.epochs,
                best_model_criterion=[["valid", "loss", "min"]], keep_nbest_models=1,
                num_workers=0, use_tensorboard=False, use_matplotlib=False, seed=args.seed)
    if args.no_specaug:
        conf["specaug"], conf["specaug_conf"] = None, {}
    if args.dropout is not None:
        conf["encoder_conf"]["dropout_rate"] = args.dropout
    if system == "ours":
        conf["encoder_conf"].update(preset=None, **sizes)
    else:
        conf["frontend"], conf["frontend_conf"] = "default", dict(STFT_CONF)
        conf["encoder"] = "contextual_block_conformer"
        conf["encoder_conf"] = dict(
            **sizes, dropout_rate=conf["encoder_conf"]["dropout_rate"], macaron_style=True,
            input_layer="conv2d", **espnet_block_config(TRAIN_CHUNK),
        )  # fmt: skip
    return conf


def _task(system: str):
    """The ESPnet task class that trains and builds the system's model."""
    if system == "ours":
        from chunkssl_espnet.espnet_plugin import ChunkASRTask

        return ChunkASRTask
    from espnet2.tasks.asr import ASRTask

    return ASRTask


def prepare_model(
    system: str, root: Path, data: Dict[str, Path], utts: Sequence[Utterance],
    args: argparse.Namespace, device: torch.device,
) -> Dict[str, Any]:  # fmt: skip
    """Train (``--epochs`` > 0, ESPnet's trainer, in process) or randomly initialise one
    system's model; reuse it when ``root/<system>`` holds one made with the same settings."""
    out = root / system
    conf = train_config(system, args.size, out / "feats_stats.npz", args)
    spec = {"train_config": conf, "utts": [u.uttid for u in utts]}
    model_file = out / ("latest.pth" if args.epochs > 0 else "init.pth")
    spec_file = out / "bench_spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec and model_file.exists():
        return {"config": out / "config.yaml", "model": model_file, "reused": True,
                "train_s": None}  # fmt: skip
    spec_file.unlink(missing_ok=True)  # the model is reused only once it is complete again
    out.mkdir(parents=True, exist_ok=True)
    feature_stats(system, utts, out / "feats_stats.npz")
    atomic_write_text(out / "train.yaml", yaml.safe_dump(conf))
    d = data["dir"]
    cmd = ["--config", str(out / "train.yaml"), "--token_list", str(data["tokens"]),
           "--token_type", "char",
           "--train_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
           "--train_data_path_and_name_and_type", f"{d}/text,text,text",
           "--valid_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
           "--valid_data_path_and_name_and_type", f"{d}/text,text,text",
           "--train_shape_file", f"{d}/speech_shape", "--valid_shape_file", f"{d}/speech_shape",
           "--output_dir", str(out), "--ngpu", "1" if device.type == "cuda" else "0"]
    task = _task(system)
    start = time.perf_counter()
    if args.epochs > 0:
        log = out / "train.log"
        handler = logging.FileHandler(log, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s (%(module)s:%(lineno)d) "
                                               "%(levelname)s: %(message)s"))  # fmt: skip
        root_logger = logging.getLogger()
        saved = root_logger.handlers[:]
        root_logger.handlers = [handler]  # ESPnet's basicConfig is then a no-op: logs go here
        root_logger.setLevel(logging.INFO)
        try:
            task.main(cmd=cmd)
        except (Exception, SystemExit) as e:  # ESPnet's argument errors raise SystemExit
            raise BenchError(f"training the {system} model failed ({e!r}): see {log}") from e
        finally:
            root_logger.handlers = saved
            handler.close()
            root_logger.setLevel(logging.WARNING)
        if not model_file.exists():
            raise BenchError(f"training the {system} model wrote no {model_file}: see {log}")
    else:
        from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

        targs = task.get_parser().parse_args(cmd)
        torch.manual_seed(args.seed)
        model = task.build_model(targs)  # also turns the token list file into a list
        with atomic_path(out / "config.yaml") as tmp, tmp.open("w") as f:
            yaml_no_alias_safe_dump(vars(targs), f, indent=4, sort_keys=False)
        with atomic_path(model_file) as tmp:
            torch.save(model.state_dict(), tmp)
    atomic_write_text(spec_file, json.dumps(spec))
    return {"config": out / "config.yaml", "model": model_file, "reused": False,
            "train_s": time.perf_counter() - start}  # fmt: skip


# ---------------------------------------------------------------------------------- streamers
class OursStream:
    """Our streaming decoder behind the interface the passes use."""

    name = "ours"

    def __init__(self, config: Path, model: Path, device: torch.device, beam_size: int, **_):
        from chunkssl_espnet.streaming import Speech2TextStreaming

        self.s2t = Speech2TextStreaming(config, model, device=str(device), beam_size=beam_size,
                                        ctc_weight=1.0)  # fmt: skip
        self.num_params = sum(p.numel() for p in self.s2t.model.encoder.parameters())

    def set_chunk(self, chunk: int) -> Dict[str, int]:
        self.s2t.chunk_size = chunk
        return {"chunk_size": chunk, "num_left_chunks": -1}

    def reset(self) -> None:
        self.s2t.reset()

    def __call__(self, piece: torch.Tensor, is_final: bool) -> str:
        return self.s2t(piece, is_final=is_final)

    def decoded_frames(self) -> int:
        """Encoder frames the partial result covers."""
        return self.s2t.offset


class EspnetStream:
    """ESPnet's ``Speech2TextStreaming`` (CTC weight 1.0) behind the same interface."""

    name = "espnet"

    def __init__(self, config: Path, model: Path, device: torch.device, beam_size: int,
                 disable_repetition_detection: bool = False):  # fmt: skip
        from espnet2.bin.asr_inference_streaming import Speech2TextStreaming

        self.s2t = Speech2TextStreaming(
            asr_train_config=config, asr_model_file=model, device=str(device),
            beam_size=beam_size, ctc_weight=1.0, nbest=1,
            disable_repetition_detection=disable_repetition_detection,
        )  # fmt: skip
        self.num_params = sum(p.numel() for p in self.s2t.asr_model.encoder.parameters())

    def set_chunk(self, chunk: int) -> Dict[str, int]:
        conf = espnet_block_config(chunk)
        for target in (self.s2t.asr_model.encoder, self.s2t.beam_search):
            for k, v in conf.items():
                setattr(target, k, v)
        return conf

    def reset(self) -> None:
        self.s2t.reset()

    def __call__(self, piece: torch.Tensor, is_final: bool) -> str:
        out = self.s2t(piece, is_final=is_final)
        if not out:
            return ""
        text, tokens, _, _ = out[0]
        return text if text is not None else " ".join(tokens)

    def decoded_frames(self) -> int:
        """Encoder frames the blockwise beam search has consumed (its partial result covers)."""
        bs = self.s2t.beam_search
        if bs.processed_block == 0 or bs.encbuffer is None:
            return 0
        end = bs.block_size - bs.look_ahead + bs.hop_size * (bs.processed_block - 1)
        return min(end, bs.encbuffer.shape[0])


@dataclass
class PassResult:
    audio_s: float = 0.0
    compute_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this process: the work, without other processes' share
    chunk_compute_s: List[float] = field(default_factory=list)
    chunk_cpu_s: List[float] = field(default_factory=list)
    chunk_lag_s: List[float] = field(default_factory=list)
    final_s: List[float] = field(default_factory=list)
    texts: Dict[str, str] = field(default_factory=dict)
    partials: int = 0

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s

    @property
    def cpu_rtf(self) -> float:
        return self.cpu_s / self.audio_s


def run_pass(
    stream, utts: Sequence[Utterance], piece: int, device: torch.device
) -> PassResult:
    """Decode every utterance fed in ``piece``-sample pieces (the last one with ``is_final``)."""
    from chunkssl_espnet.streaming import quiet_espnet_search

    # ESPnet's blockwise search warns at every block without an ended hypothesis.
    with quiet_espnet_search(logging.ERROR):
        return _run_pass(stream, utts, piece, device)


def _run_pass(
    stream, utts: Sequence[Utterance], piece: int, device: torch.device
) -> PassResult:
    res = PassResult()
    for u in utts:
        stream.reset()
        n = u.audio.numel()
        starts = list(range(0, n, piece)) or [0]
        fed, done, text = 0, 0, ""
        for i, s in enumerate(starts):
            chunk = u.audio[s : s + piece]
            final = i == len(starts) - 1
            t0, c0 = time.perf_counter(), time.process_time()
            text = stream(chunk, final)
            synchronize(device)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            res.cpu_s += dc
            fed += chunk.numel()
            res.compute_s += dt
            if final:
                res.final_s.append(dt)
                break
            frames = stream.decoded_frames()
            if frames > done:
                res.chunk_compute_s.append(dt)
                res.chunk_cpu_s.append(dc)
                res.chunk_lag_s.append(fed / SAMPLE_RATE - frames * ENCODER_FRAME_MS / 1000)
                res.partials += 1
                done = frames
        res.audio_s += n / SAMPLE_RATE
        res.texts[u.uttid] = text
    return res


def _pct(xs: Sequence[float], q: float) -> Optional[float]:
    return float(np.percentile(xs, q)) if xs else None


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def char_error_rate(refs: Dict[str, str], hyps: Dict[str, str]) -> Optional[float]:
    """Character error rate (spaces count) of the final texts; None without references."""
    pairs = [(" ".join(r.split()), " ".join(hyps.get(u, "").upper().split()))
             for u, r in refs.items() if r]  # fmt: skip
    total = sum(len(r) for r, _ in pairs)
    return sum(_edit_distance(r, h) for r, h in pairs) / total if total else None


def summarise(passes: Sequence[PassResult]) -> Dict[str, Any]:
    """Medians over passes (RTF) and over all chunk-completing calls (latencies)."""
    comp = [x for p in passes for x in p.chunk_compute_s]
    comp_cpu = [x for p in passes for x in p.chunk_cpu_s]
    lag = [x for p in passes for x in p.chunk_lag_s]
    e2e = [a + b for p in passes for a, b in zip(p.chunk_lag_s, p.chunk_compute_s)]
    final = [x for p in passes for x in p.final_s]
    return {
        "rtf_median": statistics.median(p.rtf for p in passes),
        "rtf_passes": [p.rtf for p in passes],
        "cpu_rtf_median": statistics.median(p.cpu_rtf for p in passes),
        "chunk_compute_ms_median": 1e3 * statistics.median(comp) if comp else None,
        "chunk_compute_ms_p90": 1e3 * _pct(comp, 90) if comp else None,
        "chunk_compute_cpu_ms_median": 1e3 * statistics.median(comp_cpu) if comp_cpu else None,
        "audio_lag_ms_median": 1e3 * statistics.median(lag) if lag else None,
        "end_to_end_ms_median": 1e3 * statistics.median(e2e) if e2e else None,
        "final_call_ms_median": 1e3 * statistics.median(final) if final else None,
        "partials_per_pass": passes[0].partials,
        "audio_s": passes[0].audio_s,
        "final_texts": passes[-1].texts,
    }


# ---------------------------------------------------------------------------------- driver
def _fmt_ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b <= 0 else a / b


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    headers = ["chunk", "ESPnet block/hop/look-ahead", "system", "RTF (CPU-time RTF)",
               "compute latency/chunk: median, p90 (CPU time)", "audio lag",
               "end of chunk audio -> partial", "end of audio -> final result", "partials/pass",
               "CER",
               "ESPnet / ours RTF (CPU time)", "ESPnet / ours compute latency (CPU time)",
               "ESPnet / ours end-to-end", "ESPnet / ours final"]
    body = []
    for r in rows:
        e = r["espnet"]["block"]
        for name in SYSTEMS:
            s = r[name]
            ratios = ([f"{fmt_ratio(r['rtf_ratio'])} ({fmt_ratio(r['cpu_rtf_ratio'])})",
                       f"{fmt_ratio(r['latency_ratio'])} ({fmt_ratio(r['cpu_latency_ratio'])})",
                       fmt_ratio(r["end_to_end_ratio"]), fmt_ratio(r["final_ratio"])]
                      if name == "ours" else ["", "", "", ""])  # fmt: skip
            body.append([
                f"{r['chunk_ms']} ms ({r['chunk_frames']})",
                f"{e['block_size']}/{e['hop_size']}/{e['look_ahead']}", name,
                f"{s['rtf_median']:.3f} ({s['cpu_rtf_median']:.3f})",
                f"{_fmt_ms(s['chunk_compute_ms_median'])}, {_fmt_ms(s['chunk_compute_ms_p90'])} "
                f"({_fmt_ms(s['chunk_compute_cpu_ms_median'])})",
                _fmt_ms(s["audio_lag_ms_median"]), _fmt_ms(s["end_to_end_ms_median"]),
                _fmt_ms(s["final_call_ms_median"]), s["partials_per_pass"],
                "-" if s["cer"] is None else f"{s['cer']:.2f}", *ratios,
            ])  # fmt: skip
    return markdown_table(headers, body)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunk-ms", type=int, nargs="+", default=list(DEFAULT_CHUNK_MS))
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="model size of both systems (tiny: d 144, 4 heads, 6 layers)")
    parser.add_argument("--epochs", type=int, default=8,
                        help="training epochs of both models (0: both randomly initialised)")
    parser.add_argument("--train-batch-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--no-specaug", action="store_true",
                        help="train without the YAML's SpecAugment (both systems)")
    parser.add_argument("--dropout", type=float, default=None,
                        help="encoder dropout of both systems (default: the YAML's)")
    parser.add_argument("--beam-size", type=int, default=4, help="both systems")
    parser.add_argument("--espnet-no-repetition-detection", action="store_true",
                        help="ESPnet's disable_repetition_detection (default: its default, on)")
    parser.add_argument("--piece-ms", type=float, default=40.0, help="audio per call")
    parser.add_argument("--librivox-dir", type=Path, default=LIBRIVOX_DIR)
    parser.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="decode each utterance cut to this many seconds (0: whole)")
    parser.add_argument("--workdir", type=Path, default=Path("exp/bench/streaming"),
                        help="data, trained models (reused when the settings match)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="top ops of one utterance of each system at every chunk size "
                        "(default: only where a goal is missed)")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per system")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print the markdown table, write ``--out``; returns the results."""
    args = get_parser().parse_args(argv)
    device = setup_run(args)
    logging.getLogger().setLevel(logging.WARNING)
    for ms in args.chunk_ms:
        if ms % 40:
            raise BenchError(f"--chunk-ms {ms}: must be a multiple of 40 ms (one encoder frame)")
    machine = machine_info(device)
    train_utts = load_utterances(args.librivox_dir, args.max_utts)
    utts = truncate(train_utts, args.max_seconds)
    root = args.workdir.resolve()
    data = write_data(root, train_utts)
    models, streams = {}, {}
    for name, cls in (("ours", OursStream), ("espnet", EspnetStream)):
        models[name] = prepare_model(name, root, data, train_utts, args, device)
        streams[name] = cls(models[name]["config"], models[name]["model"], device, args.beam_size,
                            disable_repetition_detection=args.espnet_no_repetition_detection)
        took = models[name]["train_s"]
        print(f"[streaming] {name}: {streams[name].num_params / 1e6:.2f}M encoder parameters, "
              + ("model reused" if models[name]["reused"] else f"prepared in {took:.0f} s"),
              flush=True)  # fmt: skip
    torch.set_num_threads(args.threads)  # ESPnet's model building may have changed it
    piece = max(int(args.piece_ms * SAMPLE_RATE / 1000), 1)
    warm = truncate(utts[:1], 2.0)  # untimed warm-up audio
    rows, profiles = [], {}
    for ms in args.chunk_ms:
        chunk = ms // 40
        blocks = {name: s.set_chunk(chunk) for name, s in streams.items()}
        for _ in range(args.warmup):
            for s in streams.values():
                run_pass(s, warm, piece, device)
        passes: Dict[str, List[PassResult]] = {name: [] for name in SYSTEMS}
        for _ in range(args.repeats):  # interleaved: ours, ESPnet, ours, ESPnet, ...
            for name in SYSTEMS:
                passes[name].append(run_pass(streams[name], utts, piece, device))

        row: Dict[str, Any] = {"chunk_ms": ms, "chunk_frames": chunk}
        refs = {u.uttid: u.text for u in utts}
        for name in SYSTEMS:
            row[name] = {"block": blocks[name], **summarise(passes[name])}
            row[name]["cer"] = char_error_rate(refs, row[name]["final_texts"])
        o, e = row["ours"], row["espnet"]
        row["rtf_ratio"] = _ratio(e["rtf_median"], o["rtf_median"])
        row["cpu_rtf_ratio"] = _ratio(e["cpu_rtf_median"], o["cpu_rtf_median"])
        row["latency_ratio"] = _ratio(e["chunk_compute_ms_median"], o["chunk_compute_ms_median"])
        row["cpu_latency_ratio"] = _ratio(e["chunk_compute_cpu_ms_median"],
                                          o["chunk_compute_cpu_ms_median"])  # fmt: skip
        row["end_to_end_ratio"] = _ratio(e["end_to_end_ms_median"], o["end_to_end_ms_median"])
        row["final_ratio"] = _ratio(e["final_call_ms_median"], o["final_call_ms_median"])
        rows.append(row)
        print(f"[streaming] {ms} ms: RTF ours {o['rtf_median']:.3f} ESPnet {e['rtf_median']:.3f}; "
              f"compute latency ours {_fmt_ms(o['chunk_compute_ms_median'])} ESPnet "
              f"{_fmt_ms(e['chunk_compute_ms_median'])}", flush=True)  # fmt: skip
        missed = not (row["rtf_ratio"] or 0) > 1 or not (row["latency_ratio"] or 0) > 1
        if not args.no_profile and (args.profile or missed):
            profiles[ms] = {
                name: profile_top_ops(
                    lambda n=name: run_pass(streams[n], utts[:1], piece, device), device, 15
                ) for name in SYSTEMS
            }  # fmt: skip
    goals = {}
    for r in rows:
        for key, what in (("rtf_ratio", "rtf"), ("latency_ratio", "chunk_compute_latency")):
            v = r[key]
            goals[f"lower_{what}_at_{r['chunk_ms']}ms"] = {
                "target": "ESPnet / ours > 1", "value": v, "cpu_time_value": r[f"cpu_{key}"],
                "met": v is not None and v > 1.0}  # fmt: skip
    table = format_table(rows)
    audio_s = sum(u.audio.numel() for u in utts) / SAMPLE_RATE
    print(f"\nStreaming decoding, {len(utts)} utterances ({audio_s:.1f} s), "
          f"{args.piece_ms:g} ms pieces, beam {args.beam_size}, CTC only"
          + (", ESPnet repetition detection off" if args.espnet_no_repetition_detection else "")
          + f", {args.size} models "
          + (f"trained {args.epochs} epochs" if args.epochs else "randomly initialised")
          + f", median of {args.repeats} interleaved passes")  # fmt: skip
    print(f"Machine: {format_machine(machine)}")
    print(table)

    def describe(_: str, g: Dict[str, Any]) -> str:
        v = "-" if g["value"] is None else f"{g['value']:.2f}x"
        if g["cpu_time_value"] is not None:
            v += f" ({g['cpu_time_value']:.2f}x CPU time)"
        return f"({g['target']}): {v}"

    print_goals(goals, describe)
    for ms, profs in profiles.items():
        for name, prof in profs.items():
            print(f"\nprofile {name}, one utterance at {ms} ms:\n{prof}")
    return save_record(
        "streaming", args, machine,
        models=models, encoder_params={k: s.num_params for k, s in streams.items()},
        audio_s=audio_s, references={u.uttid: u.text for u in utts if u.text}, results=rows,
        goals=goals, profiles=profiles, table=table,
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)

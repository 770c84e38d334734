"""Decoding an exported model with sherpa-onnx's ``OnlineRecognizer`` (online WeNet CTC model).

The runtime computes its own Kaldi fbank; ``feature_config`` sets it to ours (snip_edges, high
frequency at Nyquist, samples scaled by 32768, no dither), which its ``from_*`` helpers do not
expose. The runtime decodes whole windows only (``window_size`` fbank frames, one chunk) and
waits for one frame past a window before it decodes it; ``tail_padding`` gives both sides of a
comparison the same audio, whose last chunk is then whole for both.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from chunkssl_espnet.frames import HOP_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES

PathLike = Union[str, Path]


def feature_config(num_mel_bins: int = 80):
    """sherpa-onnx's fbank set to ``chunkssl_espnet.features.kaldi_fbank``."""
    from sherpa_onnx.lib import _sherpa_onnx as so

    return so.FeatureExtractorConfig(
        sampling_rate=SAMPLE_RATE, feature_dim=num_mel_bins, low_freq=20.0, high_freq=0.0,
        dither=0.0, normalize_samples=False, snip_edges=True)


def create_recognizer(model_dir: PathLike, model: str = "model.onnx", num_threads: int = 1):
    """An ``OnlineRecognizer`` (greedy CTC) for ``<model_dir>/<model>`` and its tokens.txt;
    its ``metadata`` attribute holds the graph's metadata (:func:`read_metadata`).

    Raises:
        FileNotFoundError: naming the missing model or token file.
    """
    import sherpa_onnx
    from sherpa_onnx.lib import _sherpa_onnx as so

    model_dir = Path(model_dir)
    onnx_path, tokens = model_dir / model, model_dir / "tokens.txt"
    for p in (onnx_path, tokens):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found (export the model first: python -m "
                                    "chunkssl_espnet.bin.export_onnx)")
    meta = read_metadata(onnx_path)
    wenet = so.OnlineWenetCtcModelConfig(model=str(onnx_path), chunk_size=int(meta["chunk_size"]),
                                         num_left_chunks=int(meta["num_left_chunks"]))
    model_config = so.OnlineModelConfig(
        wenet_ctc=wenet, tokens=str(tokens),
        num_threads=num_threads, provider_config=so.ProviderConfig(provider="cpu"))
    config = so.OnlineRecognizerConfig(
        feat_config=feature_config(), model_config=model_config, enable_endpoint=False,
        decoding_method="greedy_search")
    rec = sherpa_onnx.OnlineRecognizer.__new__(sherpa_onnx.OnlineRecognizer)
    rec.recognizer = so.OnlineRecognizer(config)
    rec.config = config
    rec.metadata = meta  # the export's chunk size and left chunks, for the caller
    return rec


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The metadata of an exported graph (chunk size and left chunks: the runtime's options)."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get("model_type") != "chunkssl_espnet_ctc":
        raise ValueError(f"{path}: not a graph of chunkssl_espnet.bin.export_onnx (model_type "
                         f"{meta.get('model_type')!r})")
    return meta


def tail_padding(num_samples: int, window_frames: int) -> int:
    """Zero samples to append so that the fbank frames are ``k * window + 1``: the last chunk
    is whole, and the runtime (which decodes a window once one more frame has come) decodes it.

    Returns:
        The number of samples to append (>= 0).
    """
    frames = max(1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES, 0)
    chunks = max(-(-(frames - 1) // window_frames), 1)
    want = chunks * window_frames + 1
    need = (want - 1) * HOP_SAMPLES + WINDOW_SAMPLES
    return max(need - num_samples, 0)


@dataclass
class SherpaResult:
    """Final tokens (symbols of tokens.txt) and text, the partial text after each piece, and
    the decoding time (s)."""

    tokens: List[str]
    text: str
    partials: List[str] = field(default_factory=list)
    compute_s: float = 0.0


def decode_pieces(recognizer, audio: np.ndarray, piece_sizes: Sequence[int]) -> SherpaResult:
    """Feed ``audio`` (N,) in [-1, 1] in pieces (sizes in samples, cycled), decoding whatever
    is ready after each, as a live client does; then the end of the input."""
    audio = np.asarray(audio, dtype=np.float32)
    s = recognizer.create_stream()
    partials, compute = [], 0.0
    pos, i = 0, 0
    while pos < audio.size:
        step = max(int(piece_sizes[i % len(piece_sizes)]), 1)
        t0 = time.perf_counter()
        s.accept_waveform(SAMPLE_RATE, audio[pos : pos + step])
        while recognizer.is_ready(s):
            recognizer.decode_stream(s)
        compute += time.perf_counter() - t0
        partials.append(recognizer.get_result(s))
        pos += step
        i += 1
    t0 = time.perf_counter()
    s.input_finished()
    while recognizer.is_ready(s):
        recognizer.decode_stream(s)
    compute += time.perf_counter() - t0
    r = recognizer.get_result_all(s)
    # the runtime shows SentencePiece's word marker as a space; our symbols hold no white space
    # (export_onnx refuses them), so this gives back the token list's symbols
    tokens = [t.replace(" ", "\u2581") for t in r.tokens]
    return SherpaResult(tokens, r.text, partials, compute)

"""Export a fine-tuned Chunk SSL CTC model to one ONNX streaming step for sherpa-onnx.

``export_model`` writes ``model.onnx`` (``onnx_step.StreamingStep``: global MVN, chunked encoder
with its caches, CTC log-softmax), ``tokens.txt`` (the model's token list, ``symbol id``) and,
with ``int8``, ``model.int8.onnx`` (onnxruntime's dynamic quantisation of the MatMul weights to
QInt8). The ONNX metadata hold what sherpa-onnx's online WeNet CTC model reads (heads, blocks,
model dimension, convolution kernel, right context, sub-sampling factor, vocabulary) and what a
reader needs to know where the graph came from (chunk size and left chunks, which the runtime must
be given, and the fbank settings).
"""

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from chunkssl_espnet.deploy.onnx_step import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    RIGHT_CONTEXT,
    StreamingStep,
)
from chunkssl_espnet.frames import SUBSAMPLING

PathLike = Union[str, Path]
OPSET = 17
logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """A model that cannot be exported, with the file and the reason."""


@dataclass
class ExportedModel:
    """What ``export_model`` wrote."""

    out_dir: Path
    model: Path
    tokens: Path
    int8: Optional[Path]
    metadata: Dict[str, str]


def check_exportable(config: PathLike, model_file: PathLike) -> Dict:
    """Check an ASR experiment before the model is built; returns its config.

    Raises:
        ExportError: naming the file: a missing config, model file or token list, an encoder
            other than ``chunk_conformer``, another frontend than ``kaldi_fbank`` (the runtime
            computes Kaldi fbank itself), a normalisation other than ``global_mvn``, or a model
            without a CTC head.
    """
    from chunkssl_espnet.bin.input_check import load_config

    for p, what in ((config, "config"), (model_file, "model file")):
        if not Path(p).is_file():
            raise ExportError(f"{p}: {what} not found")
    conf = load_config(config)
    tokens = conf.get("token_list")
    if tokens is None:
        raise ExportError(f"{config}: no token_list: the export needs the model's tokens")
    if isinstance(tokens, str) and not Path(tokens).is_file():
        raise ExportError(f"{config}: token_list {tokens}: file not found")
    if conf.get("encoder") != "chunk_conformer":
        raise ExportError(f"{config}: encoder: {conf.get('encoder')}: the streaming ONNX step "
                          "exists for encoder: chunk_conformer only")
    if conf.get("frontend") != "kaldi_fbank":
        raise ExportError(
            f"{config}: frontend: {conf.get('frontend')}: refused: sherpa-onnx computes Kaldi "
            "fbank itself (set to the settings of our kaldi_fbank frontend), so a model trained "
            "on another frontend's features would be fed features it never saw")
    if conf.get("normalize") not in (None, "global_mvn"):
        raise ExportError(f"{config}: normalize: {conf.get('normalize')}: a stream needs a "
                          "fixed normalisation (global_mvn), put inside the graph")
    if float(conf.get("model_conf", {}).get("ctc_weight", 0.5)) <= 0.0:
        raise ExportError(f"{config}: ctc_weight 0: the model has no trained CTC head")
    return conf


def check_token_list(tokens: Sequence[str], config: PathLike) -> List[str]:
    """The model's token list (ESPnet read it from the config), checked for CTC's blank."""
    tokens = [str(t) for t in tokens]
    if not tokens or tokens[0] != "<blank>":
        raise ExportError(f"{config}: the token list must start with <blank> (CTC's blank, id "
                          f"0), got {tokens[:1]}")
    return tokens


def write_tokens(tokens: Sequence[str], path: Path) -> None:
    """``tokens.txt`` of sherpa-onnx: ``symbol id`` per line."""
    bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise ExportError(f"tokens with white space cannot go into {path.name}: {bad[:3]}")
    path.write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")


def step_metadata(step: StreamingStep, vocab: int) -> Dict[str, str]:
    """The metadata sherpa-onnx reads (WeNet CTC) and our own, as strings."""
    meta = {
        "model_type": "chunkssl_espnet_ctc",
        "head": step.heads, "num_blocks": step.layers + 1,  # + the context block
        "output_size": step.dim, "cnn_module_kernel": step.kernel_context + 1,
        "right_context": RIGHT_CONTEXT, "subsampling_factor": SUBSAMPLING,
        "vocab_size": vocab,
        "chunk_size": step.chunk_size, "num_left_chunks": step.num_left_chunks,
        "num_layers": step.layers,
        "fbank": json.dumps({"num_mel_bins": step.feat_dim, "snip_edges": True,
                             "low_freq": 20.0, "high_freq": 0.0, "dither": 0.0,
                             "samples": "[-1, 1] x 32768"}),
    }
    return {k: str(v) for k, v in meta.items()}


def add_metadata(path: Path, meta: Dict[str, str]) -> None:
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


def export_step(step: StreamingStep, path: Path) -> None:
    """torch's TorchScript-based ONNX exporter. (Its dynamo exporter of torch 2.12 fails to
    decompose the attention's output reshape.)"""
    step.eval()
    att, cnn, offset = step.init_states()
    args = (torch.zeros(1, step.window, step.feat_dim), offset,
            torch.tensor([step.cache_frames]), att, cnn, step.att_mask(offset))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, args, str(path), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), opset_version=OPSET, dynamo=False)


def quantize_int8(src: Path, dst: Path) -> None:
    """onnxruntime's dynamic quantisation, MatMul weights only, QInt8 (as icefall exports)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"],
                     weight_type=QuantType.QInt8)


def export_model(
    config: PathLike,
    model_file: PathLike,
    out_dir: PathLike,
    chunk_size: int,
    num_left_chunks: int,
    int8: bool = False,
) -> ExportedModel:
    """Export an ESPnet ASR experiment (config.yaml and a model file) for sherpa-onnx."""
    from chunkssl_espnet.espnet_plugin import ChunkASRTask

    check_exportable(config, model_file)
    model, _ = ChunkASRTask.build_model_from_file(config, model_file, "cpu")
    model.eval()
    tokens = check_token_list(model.token_list, config)
    vocab = model.ctc.ctc_lo.out_features
    if len(tokens) != vocab:
        raise ExportError(f"{config}: {len(tokens)} tokens but the CTC head has {vocab} outputs")
    trained = model.encoder.left_chunks_choices
    if num_left_chunks not in (trained or []):
        logger.warning("%s: exported with %d left chunks, but trained with %s: the graph runs "
                       "a context the model did not learn", config, num_left_chunks,
                       trained or "all left chunks only")
    step = StreamingStep(model, chunk_size, num_left_chunks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = step_metadata(step, vocab)
    path = out / "model.onnx"
    export_step(step, path)
    add_metadata(path, meta)
    write_tokens(tokens, out / "tokens.txt")
    int8_path = None
    if int8:
        int8_path = out / "model.int8.onnx"
        quantize_int8(path, int8_path)
        add_metadata(int8_path, meta)
    return ExportedModel(out, path, out / "tokens.txt", int8_path, meta)

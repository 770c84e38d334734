"""Export a fine-tuned streaming CTC model to ONNX for sherpa-onnx (docs/deploy.md).

    python -m chunkssl_espnet.bin.export_onnx --model_dir exp/asr_ssl \\
        --chunk_size 16 --num_left_chunks 4 --int8 --out_dir exp/asr_ssl/onnx_chunk16

Writes ``model.onnx`` (one streaming step: global MVN, chunked encoder with its caches, CTC
log-softmax), ``model.int8.onnx`` with ``--int8`` and ``tokens.txt``. Decode with
``chunkssl_espnet.deploy.sherpa.create_recognizer(out_dir)`` (README, "Deploy").
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from humanfriendly import format_size


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", help="an ESPnet ASR experiment (config.yaml, model file)")
    p.add_argument("--model_file", default="valid.loss.ave.pth",
                   help="the model file in --model_dir")
    p.add_argument("--asr_train_config", help="instead of --model_dir: the config")
    p.add_argument("--asr_model_file", help="instead of --model_dir: the model file")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--chunk_size", type=int, default=16, help="encoder frames (40 ms) per step")
    p.add_argument("--num_left_chunks", type=int, default=4,
                   help="chunks of left context (> 0; as in training's left_chunks_choices)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (dynamic quantisation of MatMul, QInt8)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    from chunkssl_espnet.bin import load_plugin
    from chunkssl_espnet.bin.input_check import exit_on_input_error
    from chunkssl_espnet.deploy.export import export_model

    p = get_parser()
    args = p.parse_args(cmd)
    if args.model_dir:
        config = Path(args.model_dir) / "config.yaml"
        model_file = Path(args.model_dir) / args.model_file
    elif args.asr_train_config and args.asr_model_file:
        config, model_file = Path(args.asr_train_config), Path(args.asr_model_file)
    else:
        p.error("give --model_dir, or --asr_train_config and --asr_model_file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    load_plugin()
    with exit_on_input_error():
        out = export_model(config, model_file, args.out_dir, args.chunk_size,
                           args.num_left_chunks, args.int8)
    for path in (out.model, out.int8):
        if path is not None:
            logging.info("wrote %s (%s)", path, format_size(path.stat().st_size))
    logging.info("wrote %s; chunk %d x 40 ms, %d left chunks", out.tokens, args.chunk_size,
                 args.num_left_chunks)


if __name__ == "__main__":
    main()

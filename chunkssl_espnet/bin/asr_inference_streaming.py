"""Streaming ASR decoding of a data directory, with latency figures.

    python -m chunkssl_espnet.bin.asr_inference_streaming \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.acc.ave.pth \\
        --data_dir data/test --output_dir exp/asr/decode_stream_c8 --chunk_size 8

Several chunk sizes, one process (ESPnet's start and the model loading paid once):
``--chunk_size 8 16 --output_dir exp/asr/decode_stream_c8 exp/asr/decode_stream_c16``.

Outputs: see ``chunkssl_espnet.stream_decode``.
"""

import argparse
import json
import sys
from typing import List, Optional

from chunkssl_espnet.stream_decode import (
    add_stream_arguments,
    decode_data_dir,
    parse_stream_args,
    stream_session,
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--beam_size", type=int, default=10, help="CTC prefix beam (1: greedy)")
    p.add_argument("--ctc_weight", type=float, default=0.3, help="CTC weight in rescoring")
    p.add_argument("--lm_train_config", help="an ESPnet LM on the model's token list "
                   "(fused in the prefix search and the final rescoring)")
    p.add_argument("--lm_file")
    p.add_argument("--lm_weight", type=float, default=0.0,
                   help="LM weight in the prefix search and the final rescoring")
    add_stream_arguments(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    from chunkssl_espnet.streaming import Speech2TextStreaming

    args = parse_stream_args(get_parser(), cmd)
    search = {"beam_size": args.beam_size,
              "lm_weight": args.lm_weight if args.lm_train_config else 0.0}
    with stream_session(args, args.asr_train_config, "ChunkASRTask"):
        for chunk_size, output_dir in args.runs:
            s2t = Speech2TextStreaming(args.asr_train_config, args.asr_model_file, args.device,
                                       chunk_size, args.num_left_chunks, args.beam_size,
                                       args.ctc_weight, args.lm_train_config, args.lm_file,
                                       args.lm_weight)
            summary = decode_data_dir(s2t, args.data_dir, output_dir, args.piece_ms,
                                      args.seed, summary_extra=lambda *_: dict(search))
            print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()

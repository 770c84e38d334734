"""Streaming ST decoding of a data directory by local agreement, with BLEU and average lagging.

    python -m chunkssl_espnet.bin.st_inference_streaming \\
        --st_train_config exp/st/config.yaml --st_model_file exp/st/valid.acc.ave.pth \\
        --data_dir data/test --output_dir exp/st/decode_stream_c16 --chunk_size 16 \\
        [--ref data/test/text.tc.de]

Several chunk sizes in one process: ``--chunk_size 8 16 --output_dir DIR8 DIR16``.

Besides the outputs of ``chunkssl_espnet.stream_decode``, ``latency.json`` holds each
utterance's word delays (``delays_ms``: ms of source read when the last piece of each output word
was committed, see ``chunkssl_espnet.data.scoring.word_delays``), its token delays
(``token_delays_ms``) and its average lagging over words (SimulEval's definition, with
``--eval-latency-unit word``); with ``--ref`` the summary holds corpus BLEU (sacreBLEU) and the
mean AL, with the reference length in words as SimulEval uses it.
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
    p.add_argument("--st_train_config", required=True)
    p.add_argument("--st_model_file", required=True)
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--maxlenratio", type=float, default=0.5,
                   help="maximum output length per encoder frame in each re-decoding")
    p.add_argument("--ref", default=None, help="reference translations (uttid text) for BLEU/AL")
    add_stream_arguments(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    import numpy as np

    from chunkssl_espnet.data.datadir import read_scp
    from chunkssl_espnet.data.scoring import average_lagging, score_bleu
    from chunkssl_espnet.streaming import Speech2TextStreamingST

    args = parse_stream_args(get_parser(), cmd)

    def lagging(utt: str, s: Speech2TextStreamingST) -> dict:
        # In words on both sides: the reference length is a word count, so are the delays.
        delays = s.word_delays()
        source_ms = s.stats.audio_s * 1000.0
        ref_len = len(refs[utt].split()) if utt in refs else None
        al = average_lagging(delays, source_ms, ref_len) if delays else None
        return {"delays_ms": delays, "token_delays_ms": s.delays, "average_lagging_ms": al}

    def corpus(per_utt: dict, hyp_file) -> dict:
        als = [u["average_lagging_ms"] for u in per_utt.values()
               if u["average_lagging_ms"] is not None]
        extra = {"beam_size": args.beam_size,
                 "average_lagging_ms": float(np.mean(als)) if als else None}
        if args.ref:
            extra["bleu"] = score_bleu(args.ref, hyp_file)["bleu"]
        return extra

    with stream_session(args, args.st_train_config, "ChunkSTTask"):
        refs = read_scp(args.ref) if args.ref else {}
        for chunk_size, output_dir in args.runs:
            st = Speech2TextStreamingST(args.st_train_config, args.st_model_file, args.device,
                                        chunk_size, args.num_left_chunks, args.beam_size,
                                        args.maxlenratio)
            summary = decode_data_dir(st, args.data_dir, output_dir, args.piece_ms,
                                      args.seed, per_utt_extra=lagging, summary_extra=corpus)
            print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()

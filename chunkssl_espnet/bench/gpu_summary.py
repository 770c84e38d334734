"""Summary of a tools/gpu_bench.sh run: the figures that size pre-training on a GPU.

Reads the JSON records of benchmark 5 (``ssl_throughput``) and benchmark 1 (``copy_append``) and
prints, for the chunk and the offline step: audio seconds per second per GPU, the share of the
matmul rate measured in the same run (bf16 when the run was), and peak memory per utterance;
then copy-and-append's speed-up over the naive passes.

    python -m chunkssl_espnet.bench.gpu_summary exp/bench/gpu/ssl_throughput.json \\
        exp/bench/gpu/copy_append.json
"""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from chunkssl_espnet.bench.common import fmt_bytes, format_machine, markdown_table, run_main


def summary(ssl: Dict[str, Any], ca: Dict[str, Any]) -> str:
    """Markdown text of both records."""
    dtype = "bf16" if ssl["config"].get("bf16") else "fp32"
    conf, mm = ssl["config"], ssl["matmul"]
    lines = [f"Machine: {format_machine(ssl['machine'])}",
             f"Steps: batch {conf['batch_size']} x {conf['seconds']:g} s, {conf['size']} "
             f"encoders, {dtype}; {mm['before']['n']}^2 {dtype} matmul {mm['gflops']:.1f} GFLOP/s",
             ""]  # fmt: skip
    body = []
    for r in ssl["results"]:
        flops = r.get("flops") or {}
        mem = (r.get("memory_per_utterance") or {}).get("peak_bytes")
        util = flops.get("utilisation")
        body.append([r["name"], f"{r['audio_s_per_s']:.1f}",
                     "-" if util is None else f"{util:.1%}", fmt_bytes(mem)])  # fmt: skip
    lines.append(markdown_table(
        ["step", "audio s per s per GPU", f"of the {dtype} matmul rate", "peak memory / utterance"],
        body))  # fmt: skip
    lines += ["", "Copy-and-append vs the naive passes (benchmark 1):", ""]
    body = []
    for r in ca["results"]:
        mem = (r.get("memory_per_utt_bytes") or {}).get("copy_append")
        body.append([r["preset"], r["chunk_ms"], f"{r['speedup']:.2f}x",
                     f"{r['copy_append_per_utt']['median_s'] * 1e3:.1f} ms", fmt_bytes(mem)])
    lines.append(markdown_table(
        ["preset", "chunk ms", "speed-up", "copy-and-append per utterance",
         "peak memory / utterance"], body))  # fmt: skip
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ssl_throughput", type=Path, help="benchmark 5's --out JSON")
    parser.add_argument("copy_append", type=Path, help="benchmark 1's --out JSON")
    args = parser.parse_args(argv)
    text = summary(json.loads(args.ssl_throughput.read_text()),
                   json.loads(args.copy_append.read_text()))
    print(text)
    return text


if __name__ == "__main__":
    run_main(main)

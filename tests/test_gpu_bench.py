"""tools/gpu_bench.sh at toy size on CPU (``--device cpu``): a real subprocess runs benchmarks 1
and 5 in bf16 and writes their records and the summary a GPU run would give."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_script_runs_on_cpu_at_toy_size(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", str(REPO / "tools/gpu_bench.sh"), "--device", "cpu", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ssl = json.loads((tmp_path / "ssl_throughput.json").read_text())
    ca = json.loads((tmp_path / "copy_append.json").read_text())
    assert ssl["config"]["bf16"] and ca["config"]["bf16"]
    summary = (tmp_path / "summary.md").read_text()
    for name in ("ours_chunk_640ms", "ours_offline", "espnet_hubert_fbank40"):
        assert f"| {name} |" in summary
    assert "bf16 matmul" in summary and "| tiny | 640 |" in summary
    bad = subprocess.run(["bash", str(REPO / "tools/gpu_bench.sh"), "--device", "tpu"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--device must be cuda or cpu" in bad.stderr

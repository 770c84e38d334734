"""The benchmarks run end to end at toy size and report what docs/benchmarks.md relies on.

No timing is asserted: only that the figures exist, the ratios are consistent with the figures,
and the equivalence checks inside the benchmarks hold.
"""

import json
import math

import pytest
import torch

from chunkssl_espnet.bench import copy_append, group_loss, targets
from chunkssl_espnet.bench.common import Timing, markdown_table, time_fn, time_interleaved
from chunkssl_espnet.bench.copy_append import (
    build_encoder,
    make_inputs,
    memory_passes,
    naive_pass_starts,
    naive_step,
    select_passes,
)
from chunkssl_espnet.bench.memory import measure_step_memory

pytestmark = pytest.mark.usefixtures("restore_torch_threads")
CPU = torch.device("cpu")


def test_select_passes_keeps_ends_and_count():
    starts = list(range(4, 100, 4))
    assert select_passes(starts, 0) == starts
    assert select_passes(starts, 100) == starts
    sub = select_passes(starts, 4)
    assert len(sub) == 4 and sub[0] == starts[0] and sub[-1] == starts[-1]
    assert sub == sorted(sub)


def test_timing_and_table_helpers():
    calls = []
    t = time_fn(lambda: calls.append(1), CPU, repeats=3, warmup=2)
    assert len(calls) == 5 and len(t.samples) == 3 and len(t.cpu_samples) == 3
    calls.clear()
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                             CPU, repeats=2, warmup=1, warmup_fns={"b": lambda: calls.append("w")})
    assert calls == ["a", "w", "a", "b", "a", "b"] and set(times) == {"a", "b"}
    assert t.min <= t.median and t.scaled(2.0).median == pytest.approx(2 * t.median)
    assert Timing([1.0, 3.0]).to_dict()["mean_s"] == 2.0
    table = markdown_table(["a", "b"], [[1, 2]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_cpu_peak_memory_counts_live_tensor_bytes():
    def step():
        a = torch.empty(1_000_000)
        b = torch.empty(500_000)
        del a
        c = torch.empty(100_000)
        return b, c

    mem = measure_step_memory(step, CPU, warmup=0)
    assert mem == {"peak_bytes": 6_000_000, "method": "cpu_profiler"}


def test_naive_memory_of_first_and_last_pass_is_that_of_all_passes():
    torch.set_num_threads(1)
    encoder = build_encoder("tiny", 0, CPU).train()
    inp = make_inputs(1, 128, 4, encoder.output_size(), 0, CPU)
    starts = naive_pass_starts(32, 4)

    def free():
        for p in encoder.parameters():
            p.grad = None

    peaks = [
        measure_step_memory(lambda s=s: naive_step(encoder, inp, 4, s), CPU, before=free)
        for s in (starts, memory_passes(starts))
    ]
    assert peaks[0]["peak_bytes"] == peaks[1]["peak_bytes"] > 0


def test_copy_append_benchmark_with_memory(tmp_path):
    out = tmp_path / "ca.json"
    result = copy_append.main([
        "--frames", "160", "--chunk-ms", "160", "640", "--repeats", "1", "--warmup", "0",
        "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "copy_append" and saved["results"] == json.loads(
        json.dumps(result["results"])
    )
    assert "tiny_speedup_at_640ms" in saved["goals"]
    for row in saved["results"]:
        assert row["preset"] == "tiny" and not row["naive_extrapolated"]
        assert row["naive_passes"] == row["num_chunks"] - 1
        assert row["equivalence"]["max_abs_diff_copies"] < 1e-5
        assert row["equivalence"]["max_abs_diff_base"] < 1e-5
        assert row["equivalence"]["copy_frames_compared"] > 0
        assert row["grad_max_abs_diff"] <= 1e-4 * max(row["grad_max_abs"], 1.0)
        ratio = row["naive_per_utt"]["median_s"] / row["copy_append_per_utt"]["median_s"]
        assert row["speedup"] == pytest.approx(ratio)
        mem = row["memory_per_utt_bytes"]
        assert mem["copy_append"] > 0 and mem["naive"] > 0
        assert set(row["memory_method"].values()) == {"cpu_profiler"}
    assert "| tiny | 160 ms (4) |" in saved["table"]


def test_copy_append_benchmark_extrapolation_is_flagged():
    result = copy_append.main([
        "--frames", "160", "--chunk-ms", "160", "--repeats", "1", "--warmup", "0",
        "--naive-max-passes", "3", "--check-frames", "64", "--no-memory", "--threads", "1",
    ])  # fmt: skip
    (row,) = result["results"]
    assert row["naive_extrapolated"] and row["naive_passes_timed"] == 3
    assert row["naive_passes"] == 9
    sub = row["naive_subset_per_utt"]["median_s"]
    assert row["naive_per_utt"]["median_s"] == pytest.approx(sub * 9 / 3)
    assert row["equivalence"]["check_frames"] == 64
    assert row["equivalence"]["max_abs_diff_copies"] < 1e-5
    assert "EXTRAPOLATED from 3/9 passes" in result["table"]
    assert "grad_max_abs_diff" not in row


def test_group_loss_benchmark(tmp_path):
    out = tmp_path / "gl.json"
    result = group_loss.main([
        "--preset", "tiny", "--batch-size", "1", "--enc-frames", "16", "--codebooks", "1k", "2M",
        "--repeats", "1", "--warmup", "0", "--equivalence-frames", "32", "--threads", "1",
        "--out", str(out),
    ])  # fmt: skip
    saved = json.loads(out.read_text())
    rows = {r["codebook"]: r for r in saved["results"]}
    d = 144
    one_k, two_m = rows["1k"], rows["2M"]
    assert one_k["group_vocab_sizes"] == [200, 5] and one_k["full"]["measured"]
    assert one_k["full"]["head_params"] == d * 1000 + 1000
    assert one_k["equivalence"]["abs_diff"] < 1e-4
    assert "speedup_step" in one_k and "step" in one_k["full"]
    assert two_m["group_vocab_sizes"] == [125, 125, 125] and not two_m["full"]["measured"]
    assert two_m["group"]["logits_bytes_per_frame"] == 375 * 4
    assert two_m["full"]["logits_bytes_per_frame"] == 1953125 * 4
    assert two_m["ratio_logits"] == pytest.approx(1953125 / 375)
    assert two_m["ratio_params"] == pytest.approx((d + 1) * 1953125 / ((d + 1) * 375))
    assert "step" not in two_m["full"] and "equivalence" not in two_m
    assert saved["goals"]["2M_ratio_logits"]["met"] and saved["goals"]["2M_ratio_params"]["met"]
    assert "(computed)" in result["table"]
    # the full softmax keeps (frames, 1000) logits and their gradient: more than the group loss
    assert one_k["full"]["step_peak_bytes"] > one_k["group"]["step_peak_bytes"] > 0
    assert "step_peak_bytes" not in two_m["full"]


def test_targets_benchmark(tmp_path, librivox_dir):
    out = tmp_path / "tg.json"
    result = targets.main([
        "--wav-dir", str(librivox_dir), "--hours", "0.005", "--kmeans-clusters", "8",
        "--kmeans-n-init", "1", "--kmeans-batch-size", "256", "--ae-epochs", "1",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["data"]["frames"] == 1800 and saved["data"]["num_wavs"] >= 5
    rows = {r["method"]: r for r in saved["results"]}
    assert set(rows) == {"k-means", "FSQ random", "FSQ trained"}
    assert rows["k-means"]["num_labels"] == 1800
    assert rows["FSQ random"]["num_labels"] == 1800 // 4
    assert rows["FSQ trained"]["num_labels"] == 1800 // 4
    assert rows["FSQ random"]["vocabulary"] == 1953125
    for r in rows.values():
        assert math.isclose(r["total_s"], r["fit_s"] + r["label"]["median_s"])
        assert r["speedup_total"] == pytest.approx(rows["k-means"]["total_s"] / r["total_s"])
    assert math.isfinite(rows["FSQ trained"]["reconstruction_mse"])
    assert {"FSQ_random_total", "FSQ_random_labelling"} <= set(saved["goals"])
    assert "| FSQ random |" in result["table"]


def test_bad_options_raise_in_the_library_and_exit_in_the_cli():
    import argparse
    import subprocess
    import sys

    from chunkssl_espnet.bench.common import BenchError, resolve_device, setup_run

    with pytest.raises(BenchError, match="--threads must be >= 1, got 0"):
        setup_run(argparse.Namespace(threads=0, device="cpu"))
    with pytest.raises(BenchError, match="only cpu and cuda"):
        resolve_device("meta")
    with pytest.raises(BenchError, match="--chunk-ms 50: must be a multiple of 40 ms"):
        copy_append.bench_config("tiny", 50, argparse.Namespace(frames=400), torch.device("cpu"))
    res = subprocess.run([sys.executable, "-m", "chunkssl_espnet.bench.group_loss", "--threads",
                          "0"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == "error: --threads must be >= 1, got 0"

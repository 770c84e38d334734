"""The streaming and SSL throughput benchmarks run end to end at toy size (docs/benchmarks.md
sections 4 and 5): random-init toy models, a second or two of real audio, one pass or step each.

No timing is asserted: only that both systems produced outputs and that the table and JSON carry
the figures the documentation relies on, consistently.
"""

import json

import pytest
import torch

from chunkssl_espnet.bench import ssl_throughput, streaming

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def test_espnet_block_mapping_matches_chunk():
    for chunk in (4, 8, 16, 32):
        conf = streaming.espnet_block_config(chunk)
        assert conf == {"block_size": 2 * chunk, "hop_size": chunk, "look_ahead": 0}


def test_char_error_rate():
    assert streaming.char_error_rate({"a": "AB C"}, {"a": "ab c"}) == 0.0
    assert streaming.char_error_rate({"a": "ABCD"}, {"a": "ABD"}) == pytest.approx(0.25)
    assert streaming.char_error_rate({"a": ""}, {"a": "x"}) is None


def test_random_init_models_are_written_and_reused(tmp_path, librivox_dir):
    args = streaming.get_parser().parse_args(["--size", "toy", "--epochs", "0"])
    utts = streaming.load_utterances(librivox_dir, 1)
    data = streaming.write_data(tmp_path, utts)
    for system in streaming.SYSTEMS:
        made = streaming.prepare_model(system, tmp_path, data, utts, args, torch.device("cpu"))
        assert not made["reused"] and made["model"].name == "init.pth"
        assert made["config"].is_file() and made["model"].is_file()
        again = streaming.prepare_model(system, tmp_path, data, utts, args, torch.device("cpu"))
        assert again["reused"] and again["model"] == made["model"]


def test_streaming_benchmark_toy(tmp_path, librivox_dir):
    """Both toy models trained one epoch by ESPnet's trainer, then decoded."""
    out = tmp_path / "streaming.json"
    result = streaming.main([
        "--size", "toy", "--epochs", "1", "--max-utts", "1", "--max-seconds", "1.5",
        "--chunk-ms", "160", "--repeats", "1", "--warmup", "0", "--no-profile",
        "--librivox-dir", str(librivox_dir), "--workdir", str(tmp_path / "work"),
        "--out", str(out),
    ])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "streaming" and saved["table"] == result["table"]
    assert set(saved["encoder_params"]) == {"ours", "espnet"}
    (row,) = saved["results"]
    assert row["chunk_ms"] == 160 and row["chunk_frames"] == 4
    assert row["espnet"]["block"] == {"block_size": 8, "hop_size": 4, "look_ahead": 0}
    for name in ("ours", "espnet"):
        s = row[name]
        assert s["rtf_median"] > 0 and s["audio_s"] == pytest.approx(1.5)
        assert s["partials_per_pass"] >= 1, name  # partial results came out while streaming
        assert s["chunk_compute_ms_median"] > 0 and s["end_to_end_ms_median"] > 0
        assert s["final_call_ms_median"] > 0
        (text,) = s["final_texts"].values()
        assert isinstance(text, str)
    rtf = {name: row[name]["rtf_median"] for name in ("ours", "espnet")}
    assert row["rtf_ratio"] == pytest.approx(rtf["espnet"] / rtf["ours"])
    assert {"lower_rtf_at_160ms", "lower_chunk_compute_latency_at_160ms"} <= set(saved["goals"])
    assert "| 160 ms (4) | 8/4/0 | ours |" in saved["table"]
    assert "| 160 ms (4) | 8/4/0 | espnet |" in saved["table"]
    for name, model in saved["models"].items():
        assert not model["reused"] and model["model"].endswith("latest.pth"), name
        assert (tmp_path / "work" / name / "train.log").is_file()
    # a second run with the same training settings reuses both models
    again = streaming.main([
        "--size", "toy", "--epochs", "1", "--max-utts", "1", "--max-seconds", "0.5",
        "--chunk-ms", "320", "--repeats", "1", "--warmup", "0", "--no-profile",
        "--librivox-dir", str(librivox_dir), "--workdir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert all(m["reused"] for m in again["models"].values())


def test_ssl_throughput_benchmark_toy(tmp_path, librivox_dir):
    out = tmp_path / "ssl.json"
    result = ssl_throughput.main([
        "--size", "toy", "--batch-size", "2", "--seconds", "1.5", "--repeats", "1",
        "--warmup", "0", "--matmul-size", "128", "--no-profile",
        "--librivox-dir", str(librivox_dir), "--out", str(out),
    ])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "ssl_throughput" and saved["table"] == result["table"]
    names = [r["name"] for r in saved["results"]]
    assert names == ["ours_chunk_640ms", "ours_chunk_640ms_dense", "ours_offline",
                     "espnet_hubert_fbank40"]
    for r in saved["results"]:
        assert r["step"]["median_s"] > 0 and r["last_loss"] == r["last_loss"]  # not NaN
        assert r["memory_per_utterance"]["peak_bytes"] > 0
        assert r["audio_s_per_s"] == pytest.approx(3.0 / r["step"]["median_s"])
    # the ESPnet encoder sees as many frames as ours (40 ms): 1.5 s -> 38 frames
    assert saved["encoder_params"]["espnet_hubert_fbank40_frames"] == 38
    med = {r["name"]: r["step"]["median_s"] for r in saved["results"]}
    ratio = saved["ratios"]["ours_chunk_640ms_over_espnet_hubert_fbank40"]
    assert ratio == pytest.approx(med["ours_chunk_640ms"] / med["espnet_hubert_fbank40"])
    mfu, mm = saved["mfu"], saved["matmul"]
    assert mfu == saved["results"][0]["flops"] and mm["gflops"] > 0
    assert mfu["utilisation"] == pytest.approx(mfu["achieved_gflops"] / mm["gflops"])
    for r in saved["results"]:
        assert r["flops"]["step_gflop"] > 0
        assert r["flops"]["achieved_gflops"] == pytest.approx(
            r["flops"]["step_gflop"] / r["step"]["median_s"])
    flop_ratio = saved["flop_ratios"]["ours_chunk_640ms_over_ours_offline"]
    assert flop_ratio > 1  # copy-and-append does more work than the offline pass
    assert {"cost_ours_chunk_640ms_over_ours_offline", "mfu_ours_chunk",
            "time_over_flop_ratio_ours_chunk_640ms_over_ours_offline"} == set(saved["goals"])
    assert "| ours_chunk_640ms |" in saved["table"]


def test_ssl_throughput_benchmark_toy_bf16(tmp_path, librivox_dir):
    """``--bf16``: every step runs under bf16 autocast and still trains (finite losses)."""
    result = ssl_throughput.main([
        "--size", "toy", "--batch-size", "1", "--seconds", "1.5", "--repeats", "1",
        "--warmup", "0", "--matmul-size", "64", "--no-profile", "--no-dense", "--no-memory",
        "--no-flops", "--bf16", "--librivox-dir", str(librivox_dir),
    ])  # fmt: skip
    assert result["config"]["bf16"] is True
    for r in result["results"]:
        assert r["last_loss"] == r["last_loss"] and r["last_loss"] > 0

"""The mini ASR recipe (egs2/mini_flite/asr1) end to end at toy size, as real subprocesses:
synthesised corpus (labelled set, unlabelled pool, seen- and unseen-voice sets), statistics, BPE,
token LM, FSQ tokenizer, Chunk SSL, fine-tuning and from-scratch baseline, offline and streaming
decoding with the LM, scoring with the results table and the plots. Then single stages of the
recipe re-run with --stage N --stop_stage N are no-ops that leave their outputs untouched, and its
study script (run_study.sh) runs every stage on the same folders."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

RECIPE = Path(__file__).resolve().parent.parent / "egs2" / "mini_flite" / "asr1"
PNG = b"\x89PNG\r\n\x1a\n"


def run_sh(work: Path, args: List[str], timeout: int = 2400,
           recipe: Path = RECIPE) -> subprocess.CompletedProcess:  # fmt: skip
    dirs = ["--datadir", str(work / "data"), "--expdir", str(work / "exp"), "--audio_dir",
            str(work / "audio")]
    return subprocess.run(["./run.sh", "--toy", "true", *dirs, *args], cwd=recipe,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=timeout)


def skip_without_corpus_tools(festival: bool = True) -> None:
    """Skip unless the corpus generators' Debian packages are installed (festival: the ASR
    corpus's valid_unseen voice)."""
    for tool in ("flite", "sox") + (("festival",) if festival else ()):
        if shutil.which(tool) is None:
            pytest.skip(f"the mini recipe needs '{tool}' (apt-get install {tool})")
    if festival and not Path("/usr/share/festival/voices/english/ked_diphone").is_dir():
        pytest.skip("the mini ASR corpus needs festival's ked voice (apt-get install "
                    "festvox-kdlpc16k)")
    if not Path("/usr/share/games/fortunes/fortunes").is_file():
        pytest.skip("the mini recipe needs the Debian packages fortunes and fortunes-min")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, subprocess.CompletedProcess]:
    skip_without_corpus_tools()
    work = tmp_path_factory.mktemp("mini_flite")
    start = time.time()
    res = run_sh(work, [])
    print(f"toy recipe: {time.time() - start:.0f} s")
    assert res.returncode == 0, f"stdout:\n{res.stdout[-5000:]}\nstderr:\n{res.stderr[-5000:]}"
    return work, res


@pytest.mark.slow
def test_toy_recipe_end_to_end(toy_run: Tuple[Path, subprocess.CompletedProcess]) -> None:
    work, res = toy_run
    exp = work / "exp"
    results = (exp / "RESULTS.md").read_text()
    assert results in res.stdout  # the table is printed
    header = next(line for line in results.splitlines() if line.startswith("| model |"))
    chunk_columns = re.findall(r"\| (\d+) ms", header)
    assert "| offline |" in header and len(chunk_columns) >= 3, header
    rows = {line.split("|")[1].strip(): line for line in results.splitlines()
            if line.startswith("| ") and not line.startswith("| model")}
    assert "Chunk SSL + fine-tuning" in rows and "from scratch (baseline)" in rows
    for cell in rows["Chunk SSL + fine-tuning"].split("|")[2:2 + 1 + len(chunk_columns)]:
        float(cell)  # offline and every chunk size were scored
    assert re.search(r"\| from scratch \(baseline\) \| \d+\.\d\d \|", results)
    # the relative change of SSL against scratch, offline, with its bootstrap interval
    gain_cell = r"[+-]\d+\.\d% \[[+-]\d+\.\d, [+-]\d+\.\d\]"
    assert re.search(rf"\| relative change \[95% CI\] \| {gain_cell} \|", results), results
    assert "## test_seen" in results and "## test_unseen" in results
    assert "rtf" in results and "mean_chunk_latency_ms" in results
    # stage 9's deployment: sherpa-onnx fp32 and int8 beside PyTorch streaming, both test sets
    # (the exported graph equals PyTorch's greedy streaming on every test utterance)
    assert len(re.findall(r"\| PyTorch, CTC greedy, 4 left chunks \| 640 \| (\d+\.\d\d) \|",
                          results)) == 2, results
    for variant in ("fp32", "int8"):
        assert len(re.findall(rf"\| sherpa-onnx {variant}, CTC greedy, 4 left chunks \| 640 \| "
                              r"\d+\.\d\d \| \d+\.\d\d \| \d\.\d{4} \| \d\.\d\d \| \d+ / 8 \|",
                              results)) == 2, results
    assert len(re.findall(r"\| sherpa-onnx fp32, .* \| 8 / 8 \|", results)) == 2, results
    assert (exp / "asr_ssl/onnx_chunk16/model.int8.onnx").is_file()

    for png in ("loss_ssl.png", "loss_downstream.png", "wer_vs_chunk_test_seen.png",
                "wer_vs_chunk_test_unseen.png"):
        assert (exp / "plots" / png).read_bytes()[:8] == PNG, png
    scores = json.loads((exp / "results.json").read_text())["scores"]["test_unseen"]
    assert len(scores["asr_ssl"]["streaming"]) >= 3
    assert "gain_vs_next" in scores["asr_ssl"]["offline"]

    # the corpus: SSL on the pool (its own statistics), fine-tuning on the labelled part
    info = json.loads((work / "data" / "corpus_info.json").read_text())
    splits = info["splits"]
    assert splits["pool"]["utterances"] == 64 and splits["train"]["utterances"] == 48
    assert splits["test_seen"]["oov_rate"] == 0.0 and splits["test_unseen"]["voices"] == ["rms"]
    assert splits["valid_unseen"]["voices"] == ["ked"]
    # fine-tuning, the baseline's too, on the labelled set at three sox speeds (stage 2)
    utt2spk = (work / "data" / "train_sp" / "utt2spk").read_text().splitlines()
    assert len(utt2spk) == 3 * 48 and sum(u.startswith("sp0.9-") for u in utt2spk) == 48
    for model in ("asr_ssl", "asr_scratch"):
        assert "data/train_sp/wav.scp" in (exp / model / "config.yaml").read_text(), model
    ssl_config = (exp / "ssl" / "config.yaml").read_text()
    assert "data/pool/wav.scp" in ssl_config and "stats_ssl/train/feats_stats.npz" in ssl_config

    # provenance: exact commands, resolved configs, versions
    info = json.loads((exp / "ssl" / "run_info.json").read_text())
    assert "chunkssl_espnet.recipe train --task ssl" in info["command"]
    assert info["versions"]["chunkssl_espnet"] and info["versions"]["espnet"]
    assert any("chunkssl_espnet.bin.ssl_train" in c for c in info["commands"])
    config = (exp / "asr_ssl" / "config.yaml").read_text()
    assert "ssl/valid.loss.ave.pth:encoder:encoder" in config
    assert "valid.loss.ave.pth" not in (exp / "asr_scratch" / "config.yaml").read_text()
    assert "--toy true" in (exp / "commands.log").read_text()
    # the token LM (stage 4), fused in the offline and the streaming decoding
    assert (exp / "lm" / "valid.loss.ave.pth").is_file()
    assert "lm_text/text" in (exp / "lm" / "config.yaml").read_text()
    for folder in ("asr_ssl/decode_test_seen_offline", "asr_ssl/decode_test_seen_stream/chunk8"):
        commands = json.loads((exp / folder / "run_info.json").read_text())["commands"]
        assert any("--lm_file" in c and "lm/valid.loss.ave.pth" in c and "--lm_weight" in c
                   for c in commands), (folder, commands)
    stream = json.loads((exp / "asr_ssl/decode_test_seen_stream/chunk8/summary.json").read_text())
    assert stream["lm_weight"] == 0.8
    assert "token LM fused (weight 0.8)" in results
    for folder in ("stats", "stats_lm", "lm", "stats_ssl", "tokenizer_random",
                   "asr_ssl/decode_test_seen_offline",
                   "asr_ssl/decode_test_unseen_stream/chunk8", "asr_ssl/onnx_chunk16",
                   "asr_ssl/decode_test_unseen_sherpa/int8_chunk16"):
        assert (exp / folder / "run_info.json").is_file(), folder


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_toy_stage_rerun_is_idempotent(
    toy_run: Tuple[Path, subprocess.CompletedProcess], stage: int
) -> None:
    work, _ = toy_run
    exp = work / "exp"
    watched = [exp / "stats" / "train" / "feats_stats.npz", exp / "ssl" / "valid.loss.ave.pth",
               exp / "asr_ssl" / "valid.loss.ave.pth", exp / "asr_ssl" /
               "decode_test_seen_offline" / "text", exp / "asr_ssl" / "decode_test_seen_stream" /
               "chunk8" / "text",
               work / "data" / "train" / "utt2num_samples"]
    before = {p: p.stat().st_mtime_ns for p in watched}
    res = run_sh(work, ["--stage", str(stage), "--stop_stage", str(stage)], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Stage {stage}:" in res.stderr
    if stage == 1:  # the corpus generator reuses every wav it already made
        assert " 0 synthesised" in res.stderr, res.stderr[-2000:]
    elif stage == 2:  # the speed-perturbed copies are kept; the data are re-checked (read only)
        assert "(0 files written)" in res.stderr, res.stderr[-2000:]
    else:
        assert "already done" in res.stderr or "up to date" in res.stdout, res.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in watched}
    changed = [p for p in watched if p.name != "utt2num_samples" and before[p] != after[p]]
    assert not changed, f"stage {stage} rewrote {changed}"


@pytest.mark.slow
def test_toy_study_every_stage(toy_run: Tuple[Path, subprocess.CompletedProcess]) -> None:
    """run_study.sh at toy size on the toy recipe's folders: every stage runs (stage 1, run.sh
    up to fine-tuning, finds its stages done), and the report has each sweep's table, trend and
    figures; run again, it redoes nothing. One test set, to keep the suite short."""
    work, _ = toy_run
    out = work / "RESULTS_study.md"
    cmd = ["./run_study.sh", "--toy", "true", "--datadir", str(work / "data"), "--expdir",
           str(work / "exp"), "--audio_dir", str(work / "audio"), "--out_md", str(out),
           "--test_sets", "test_seen"]
    env = {**os.environ, "PYTHON": sys.executable}
    start = time.time()
    res = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=1800)
    print(f"toy study: {time.time() - start:.0f} s")
    assert res.returncode == 0, f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
    for n in range(1, 7):
        assert f"Study stage {n}:" in res.stderr
    text = out.read_text()
    for sweep in ("codebook size (FSQ levels)", "labelled utterances", "seed"):
        assert f"## {sweep}" in text
    assert "| 1k |" in text and "| 2M |" in text and "| 24 |" in text and "| all |" in text
    assert "the lowest WER is at" in text and "change [95% CI]" in text
    study = work / "exp" / "study"
    assert "levels: 1k" in (study / "ssl_1k" / "config.yaml").read_text()
    assert (study / "asr_ssl_24" / "config.yaml").is_file()
    assert len((work / "data" / "train_24" / "utt2spk").read_text().splitlines()) == 24
    assert "--seed 1" in (study / "asr_scratch_seed1" / "run_info.json").read_text()
    for png in ("codebook_size__fsq_levels_test_seen.png", "labelled_utterances_test_seen.png"):
        assert (work / "plots_study" / png).read_bytes()[:8] == PNG, png
    watched = [study / "asr_1k" / "valid.loss.ave.pth", study / "ssl_seed1" / "valid.loss.ave.pth"]
    before = [p.stat().st_mtime_ns for p in watched]
    res = subprocess.run(cmd + ["--stage", "2", "--stop_stage", "5"], cwd=RECIPE, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in watched] == before

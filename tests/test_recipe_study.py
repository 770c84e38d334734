"""egs2/mini_flite/asr1/run_study.sh at toy size, as a real subprocess: the main recipe up to
fine-tuning, the codebook-size, labelled-data and seed sweeps, their decoding and the report.
(A file of its own so that pytest-xdist runs it beside the recipe tests.)"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_recipe_mini import PNG, RECIPE, skip_without_corpus_tools


@pytest.mark.slow
def test_toy_study_every_stage(tmp_path: Path) -> None:
    """run_study.sh at toy size from nothing: every stage runs (stage 1 is run.sh up to
    fine-tuning), and the report has each sweep's table, trend and figures; run again, it redoes
    nothing."""
    skip_without_corpus_tools()
    work = tmp_path
    out = work / "RESULTS_study.md"
    cmd = ["./run_study.sh", "--toy", "true", "--datadir", str(work / "data"), "--expdir",
           str(work / "exp"), "--audio_dir", str(work / "audio"), "--out_md", str(out)]
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
    for png in ("codebook_size__fsq_levels_test_seen.png", "labelled_utterances_test_unseen.png"):
        assert (work / "plots_study" / png).read_bytes()[:8] == PNG, png
    watched = [study / "asr_1k" / "valid.loss.ave.pth", study / "ssl_seed1" / "valid.loss.ave.pth"]
    before = [p.stat().st_mtime_ns for p in watched]
    res = subprocess.run(cmd + ["--stage", "2", "--stop_stage", "5"], cwd=RECIPE, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in watched] == before

"""The data stages of the corpus recipes (egs2/{librispeech/asr1,librilight/ssl1,must_c/st1}) run
as real subprocesses on generated replicas of each corpus layout, with the corpus root given as in
db.sh (an environment variable); a wrong root, a missing transcript file and an absent audio file
fail with a clear message."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from chunkssl_espnet.data.datadir import read_scp, validate_data_dir
from tests.test_data_corpora import librilight, librispeech, must_c

EGS = Path(__file__).resolve().parent.parent / "egs2"


def run_recipe(recipe: str, args: List[str], env: Dict[str, str], work: Path,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """``run.sh args`` in the recipe folder, with data/dump/exp under ``work``."""
    full_env = {**os.environ, "PYTHON": sys.executable, **env}
    dirs = ["--datadir", str(work / "data"), "--expdir", str(work / "exp")]
    if recipe != "librispeech/asr1":
        dirs += ["--dumpdir", str(work / "dump")]
    return subprocess.run(["./run.sh", *args, *dirs], cwd=EGS / recipe, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def fails_with(res: subprocess.CompletedProcess, message: str) -> None:
    assert res.returncode != 0, res.stdout
    assert message in res.stderr, res.stderr


def test_librispeech_data_stages(tmp_path: Path) -> None:
    root = librispeech(tmp_path / "db")
    subsets = ["--train_parts", "dev_clean", "--valid_parts", "dev_clean", "--test_sets",
               "dev_clean"]
    res = run_recipe("librispeech/asr1", ["--stage", "1", "--stop_stage", "2", *subsets],
                     {"LIBRISPEECH": str(root)}, tmp_path / "w")
    ok(res)
    data = tmp_path / "w" / "data"
    assert validate_data_dir(data / "dev_clean") == 4
    assert validate_data_dir(data / "train_960") == 4 and validate_data_dir(data / "dev") == 4
    assert len(read_scp(data / "train_960" / "utt2num_samples")) == 4
    # stage 1 again: same result (idempotent)
    ok(run_recipe("librispeech/asr1", ["--stage", "1", "--stop_stage", "1", *subsets],
                  {"LIBRISPEECH": str(root)}, tmp_path / "w"))
    assert validate_data_dir(data / "dev_clean") == 4

    stage1 = ["--stage", "1", "--stop_stage", "1", *subsets]
    fails_with(run_recipe("librispeech/asr1", stage1, {"LIBRISPEECH": str(tmp_path / "nowhere")},
                          tmp_path / "w2"), "not a LibriSpeech root")
    chapter = root / "LibriSpeech" / "dev-clean" / "2035" / "147960"
    (chapter / "2035-147960-0001.flac").unlink()
    fails_with(run_recipe("librispeech/asr1", stage1, {"LIBRISPEECH": str(root)}, tmp_path / "w3"),
               "audio of '2035-147960-0001' is missing")
    (chapter / "2035-147960.trans.txt").unlink()
    fails_with(run_recipe("librispeech/asr1", stage1, {"LIBRISPEECH": str(root)}, tmp_path / "w3"),
               "2035-147960.trans.txt: transcript file is missing")


def test_librilight_data_stages(tmp_path: Path) -> None:
    root = librilight(tmp_path / "ll")
    args = ["--stage", "1", "--stop_stage", "3", "--max_segment_s", "1.2", "--n_valid", "1"]
    ok(run_recipe("librilight/ssl1", args, {"LIBRILIGHT": str(root)}, tmp_path / "w"))
    dump = tmp_path / "w" / "dump"
    # segments of 1.0 to 1.2 s: [1.8, 2.9] of one file, [0, 1.2] and [1.2, 2.4] of the other
    assert validate_data_dir(dump / "librilight_small", need_text=False) == 3
    assert not (dump / "librilight_small" / "segments").exists()
    assert sorted(map(int, read_scp(dump / "librilight_small" / "utt2num_samples").values())) \
        == [17600, 19200, 19200]
    assert validate_data_dir(dump / "librilight_small_train", need_text=False) == 2
    assert validate_data_dir(dump / "librilight_small_valid", need_text=False) == 1

    stage1 = ["--stage", "1", "--stop_stage", "1"]
    fails_with(run_recipe("librilight/ssl1", stage1, {"LIBRILIGHT": str(tmp_path / "nowhere")},
                          tmp_path / "w2"), "subset 'small' not found")
    book = root / "small" / "1001" / "gods_country_0904_librivox_64kb_mp3"
    (book / "03_curwood_64kb.json").unlink()
    fails_with(run_recipe("librilight/ssl1", stage1, {"LIBRILIGHT": str(root)}, tmp_path / "w3"),
               "03_curwood_64kb.json: metadata")
    (book / "03_curwood_64kb.flac").unlink()
    (root / "small" / "100" / "sea_fairies_0812_librivox_64kb_mp3" /
     "01_baum_sea_fairies_64kb.flac").unlink()
    fails_with(run_recipe("librilight/ssl1", stage1, {"LIBRILIGHT": str(root)}, tmp_path / "w3"),
               "01_baum_sea_fairies_64kb.flac: audio file is missing")


def test_must_c_data_stages(tmp_path: Path) -> None:
    root = must_c(tmp_path / "MUSTC")
    splits = ["--train_split", "dev", "--valid_split", "dev", "--test_splits", "dev"]
    ok(run_recipe("must_c/st1", ["--stage", "1", "--stop_stage", "2", *splits],
                  {"MUST_C": str(root)}, tmp_path / "w"))
    dump = tmp_path / "w" / "dump" / "dev.en-de"
    assert validate_data_dir(dump) == 3
    assert not (dump / "segments").exists()
    assert read_scp(dump / "utt2num_samples")["spk.767-ted_767-00001700-00002700"] == "16000"
    assert read_scp(dump / "text.tc.de")["spk.767-ted_767-00000300-00001500"] == \
        "Hallo Welt, ich bin es."

    stage1 = ["--stage", "1", "--stop_stage", "1", *splits]
    fails_with(run_recipe("must_c/st1", stage1, {"MUST_C": str(tmp_path / "nowhere")},
                          tmp_path / "w2"), "not a MuST-C root")
    (root / "en-de" / "data" / "dev" / "wav" / "ted_1001.wav").unlink()
    fails_with(run_recipe("must_c/st1", stage1, {"MUST_C": str(root)}, tmp_path / "w3"),
               "ted_1001.wav: audio file listed at")
    (root / "en-de" / "data" / "dev" / "txt" / "dev.de").unlink()
    fails_with(run_recipe("must_c/st1", stage1, {"MUST_C": str(root)}, tmp_path / "w3"),
               "dev.de: transcript file is missing")


@pytest.mark.parametrize("recipe", sorted(str(p.parent.relative_to(EGS))
                                          for p in EGS.glob("*/*/run.sh")))
def test_run_sh_help(recipe: str) -> None:
    res = subprocess.run(["./run.sh", "--help"], cwd=EGS / recipe, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("Usage: ./run.sh") and "--stop-stage" in res.stderr
    bad = subprocess.run(["./run.sh", "--no_such_option", "1"], cwd=EGS / recipe,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "invalid option --no-such-option" in bad.stderr

"""utils/parse_options.sh through real bash, and the thin utils/ and CLI wrappers."""

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from chunkssl_espnet.data import cli

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=1
use_gpu=false
test_sets="dev test"
foo_bar=x
help_message="Usage: $0 [options] <dir>"
. {repo}/utils/parse_options.sh
echo "stage=$stage use_gpu=$use_gpu test_sets=$test_sets foo_bar=$foo_bar rest=$*"
"""


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run.sh"
    script.write_text(SCRIPT.format(repo=REPO))
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_options_set_declared_variables(tmp_path: Path) -> None:
    r = run_script(tmp_path, "--stage", "3", "--use-gpu", "true", "--test_sets", "a b",
                   "--foo-bar=q", "pos1", "--stage", "9")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=3 use_gpu=true test_sets=a b foo_bar=q rest=pos1 --stage 9"


@pytest.mark.parametrize("args,message", [
    (["--nope", "1"], "invalid option --nope"),
    (["--use-gpu", "yes"], "expects true or false, not 'yes'"),
    (["--stage"], "option --stage needs a value"),
    (["--config", "/nonexistent.conf"], "cannot read config file"),
])
def test_option_errors(tmp_path: Path, args: List[str], message: str) -> None:
    r = run_script(tmp_path, *args)
    assert r.returncode == 1 and message in r.stderr


def test_config_then_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "my.conf"
    conf.write_text("stage=7\nfoo_bar=from_conf\n")
    r = run_script(tmp_path, "--foo-bar", "cli", "--config", str(conf))
    assert r.stdout.strip() == "stage=7 use_gpu=false test_sets=dev test foo_bar=cli rest="


def test_help_lists_options_with_values(tmp_path: Path) -> None:
    r = run_script(tmp_path, "--stage", "4", "--help")
    assert r.returncode == 0 and r.stdout == ""
    assert "Usage:" in r.stderr
    assert "--stage" in r.stderr and " 4" in r.stderr and "--test-sets" in r.stderr
    assert "--help-message" not in r.stderr


def test_wrappers_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture) -> None:
    # Two real subprocesses for the bash wrappers; the Python entry points run in-process
    # (each interpreter start imports torch through chunkssl_espnet/__init__.py: seconds).
    env = {**os.environ, "PYTHON": sys.executable}
    data = tmp_path / "data"
    data.mkdir()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    (data / "wav.scp").write_text(f"s1-a {wav}\ns1-b {wav}\n")
    (data / "utt2spk").write_text("s1-b s1\ns1-a s1\n")  # unsorted
    (data / "spk2utt").write_text("s1 s1-a s1-b\n")
    (data / "text").write_text("s1-a HELLO\ns1-b WORLD\n")
    bad = subprocess.run([str(REPO / "utils/validate_data_dir.sh"), "--no-feats", str(data)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "utt2spk:2: id 's1-a'" in bad.stderr
    fix = subprocess.run([str(REPO / "utils/fix_data_dir.sh"), str(data)], env=env,
                         capture_output=True, text=True)
    assert fix.returncode == 0, fix.stderr
    assert cli.main(["validate", str(data)]) == 0
    assert "OK, 2 utterances" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "nope")]) == 1
    assert "data directory does not exist" in capsys.readouterr().err
    outs = [str(tmp_path / "k.1"), str(tmp_path / "k.2")]
    monkeypatch.setattr(sys, "argv", ["split_scp.py", str(data / "wav.scp"), *outs])
    runpy.run_path(str(REPO / "utils/split_scp.py"), run_name="__main__")
    assert (tmp_path / "k.2").read_text() == f"s1-b {wav}\n"


def test_spm_train_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "train.txt"
    text.write_text("".join(f"HELLO WORLD NUMBER {w}\n" for w in ("ONE", "TWO", "THREE") * 9))
    monkeypatch.setattr(sys, "argv", [
        "spm_train.py", f"--input={text}", "--vocab_size=20", "--model_type=bpe",
        f"--model_prefix={tmp_path / 'bpe'}", f"--token_list={tmp_path / 'tokens.txt'}"])
    runpy.run_path(str(REPO / "utils/spm_train.py"), run_name="__main__")
    tokens = (tmp_path / "tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-1] == "<sos/eos>"

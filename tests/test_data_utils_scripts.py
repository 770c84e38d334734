"""utils/parse_options.sh (the recipes' option parser, the one script in utils/) through real
bash, and the data CLI's validate and fix commands."""

import subprocess
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
derived=$stage
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
    assert "--derived" not in r.stderr  # set after the options were parsed: not an option


def test_validate_and_fix_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    (data / "wav.scp").write_text(f"s1-a {wav}\ns1-b {wav}\n")
    (data / "utt2spk").write_text("s1-b s1\ns1-a s1\n")  # unsorted
    (data / "spk2utt").write_text("s1 s1-a s1-b\n")
    (data / "text").write_text("s1-a HELLO\ns1-b WORLD\n")
    assert cli.main(["validate", str(data)]) == 1
    assert "utt2spk:2: id 's1-a'" in capsys.readouterr().err
    assert cli.main(["fix", str(data)]) == 0
    assert cli.main(["validate", str(data)]) == 0
    assert "OK, 2 utterances" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "nope")]) == 1
    assert "data directory does not exist" in capsys.readouterr().err

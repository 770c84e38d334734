"""The corpus recipes end to end at toy size (``--toy true``: conf/toy.sh, the conf/*_toy.yaml
models, 1 epoch), as real subprocesses on replicas of the corpus layouts made of real speech
(tests/corpus_replicas.py): egs2/librilight/ssl1 pre-trains a Chunk SSL model once for this
module; egs2/librispeech/asr1 and egs2/must_c/st1 fine-tune it (``--pretrained_ssl``), decode
offline and streaming, and score into RESULTS.md. The models learn nothing in seconds: these
tests check that every stage runs and hands its outputs to the next, not the numbers."""

import json
import math
import re
import time
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from chunkssl_espnet.data.datadir import read_scp, validate_data_dir
from tests.corpus_replicas import librilight_replica, librispeech_replica, must_c_replica
from tests.test_recipe_corpora import ok, run_recipe

TIMEOUT = 900


def run_toy(recipe: str, args: List[str], env: Dict[str, str], work: Path):
    start = time.time()
    res = run_recipe(recipe, ["--toy", "true", *args], env, work, timeout=TIMEOUT)
    print(f"{recipe} --toy true: {time.time() - start:.0f} s")
    ok(res)
    return res


def results_rows(results: str, header_start: str) -> Dict[str, List[str]]:
    """The first markdown table whose header starts with ``header_start``: ``{first cell: other
    cells}`` of each row, the header's under ``"header"``."""
    lines = results.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    table = [lines[start]]
    for line in lines[start + 2:]:  # after the |---| line
        if not line.startswith("|"):
            break
        table.append(line)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return {"header": cells[0][1:], **{row[0]: row[1:] for row in cells[1:]}}


def assert_scored(results: str, metric: str, label: str, chunk_ms: List[int]) -> None:
    """The first ``metric`` table has the model's row, with a number for offline decoding and
    for streaming at every chunk size."""
    heading = next(line for line in results.splitlines()
                   if line.startswith("#") and line.endswith(f": {metric}"))
    table = results[results.index(heading):]
    rows = results_rows(table, "| model |")
    assert rows["header"] == ["offline"] + [f"{c} ms" for c in chunk_ms], table
    assert len([float(x) for x in rows[label]]) == 1 + len(chunk_ms), table


def encoder_distance(model: Path, reference: Path) -> float:
    """``|enc(model) - enc(reference)| / |enc(reference)|`` over the ``encoder.*`` tensors."""
    import torch

    a = torch.load(model, map_location="cpu")
    b = torch.load(reference, map_location="cpu")
    keys = sorted(k for k in b if k.startswith("encoder."))
    assert keys and keys == sorted(k for k in a if k.startswith("encoder.")), "encoders differ"
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in keys)
    den = sum(float((b[k].double() ** 2).sum()) for k in keys)
    return math.sqrt(num / den)


def assert_initialised_from(exp: Path, model_dir: str, ssl_model: Path) -> None:
    """The fine-tuning was initialised with the SSL encoder: its config records the
    ``--init_param`` of that file, and after one toy epoch (a few warm-up steps) its encoder
    still equals the SSL encoder to 1 % (a random one is about 140 % away)."""
    config = yaml.safe_load((exp / model_dir / "config.yaml").read_text())
    assert config["init_param"] == [f"{ssl_model}:encoder:encoder"]
    assert ssl_model.is_file()
    assert encoder_distance(exp / model_dir / "valid.loss.ave.pth", ssl_model) < 0.01


@pytest.fixture(scope="module")
def librilight_run(tmp_path_factory: pytest.TempPathFactory, librivox_dir: Path) -> Path:
    """One toy Libri-Light pre-training (all 6 stages); the work folder."""
    work = tmp_path_factory.mktemp("librilight")
    root = librilight_replica(work / "db", librivox_dir)
    run_toy("librilight/ssl1", [], {"LIBRILIGHT": str(root)}, work)
    return work


@pytest.mark.slow
def test_librilight_toy_end_to_end(librilight_run: Path) -> None:
    work = librilight_run
    dump, exp = work / "dump", work / "exp"
    # 5 utterances in 2 long files -> 5 segments of at most 8 s; 1 held out
    assert validate_data_dir(dump / "librilight_small", need_text=False) == 5
    assert validate_data_dir(dump / "librilight_small_train", need_text=False) == 4
    assert validate_data_dir(dump / "librilight_small_valid", need_text=False) == 1
    assert set(read_scp(exp / "stats" / "train" / "speech_shape")) == \
        set(read_scp(dump / "librilight_small_train" / "wav.scp"))
    config_text = (exp / "ssl" / "config.yaml").read_text()
    config = yaml.safe_load(config_text)
    assert config["encoder_conf"]["output_size"] == 32 and config["max_epoch"] == 1
    assert str(exp / "tokenizer_random") in config_text  # the targets of stage 5
    assert (exp / "ssl" / "valid.loss.ave.pth").is_file()
    for folder in ("stats", "tokenizer_random", "ssl"):
        info = json.loads((exp / folder / "run_info.json").read_text())
        assert info["versions"]["espnet"], folder
    assert "--toy true" in (exp / "commands.log").read_text()
    # the shared stages again: each one is found done and skipped
    res = run_recipe("librilight/ssl1", ["--toy", "true", "--stage", "4"],
                     {"LIBRILIGHT": str(work / "db")}, work)
    ok(res)
    assert res.stderr.count("already done") == 3, res.stderr


@pytest.mark.slow
def test_librispeech_toy_end_to_end(librilight_run: Path, librivox_dir: Path,
                                    tmp_path: Path) -> None:
    root = librispeech_replica(tmp_path / "db", librivox_dir)
    ssl_model = librilight_run / "exp" / "ssl" / "valid.loss.ave.pth"
    res = run_toy("librispeech/asr1", ["--pretrained_ssl", str(ssl_model)],
                  {"LIBRISPEECH": str(root)}, tmp_path)
    data, exp = tmp_path / "data", tmp_path / "exp"
    assert validate_data_dir(data / "train_960") == 5 and validate_data_dir(data / "dev") == 2
    assert validate_data_dir(data / "test_clean") == 2
    # stages 5-6 (tokenizer, SSL) are skipped: the Libri-Light model is fine-tuned
    assert not (exp / "ssl").exists() and not (exp / "tokenizer_random").exists()
    assert_initialised_from(exp, "asr_ssl", ssl_model)
    assert "Stage 7: ASR fine-tuning from" in res.stderr and "Stage 10: scoring" in res.stderr

    results = (exp / "RESULTS.md").read_text()
    assert results in res.stdout
    assert results.startswith("# LibriSpeech ASR with a Chunk SSL encoder")  # the template
    assert "## test_clean (2 utterances" in results
    assert_scored(results, "WER (%)", "Chunk SSL + fine-tuning", [320, 640])
    assert_scored(results, "CER (%)", "Chunk SSL + fine-tuning", [320, 640])
    stream = results_rows(results, "| chunk (ms) |")
    assert "rtf" in stream["header"] and set(stream) == {"header", "320", "640"}
    scores = json.loads((exp / "results.json").read_text())["scores"]["test_clean"]["asr_ssl"]
    assert sorted(scores["streaming"]) == ["16", "8"] and "offline" in scores
    assert (exp / "plots" / "wer_vs_chunk_test_clean.png").is_file()


@pytest.mark.slow
def test_must_c_toy_end_to_end(librilight_run: Path, librivox_dir: Path, tmp_path: Path) -> None:
    root = must_c_replica(tmp_path / "db", librivox_dir)
    ssl_model = librilight_run / "exp" / "ssl" / "valid.loss.ave.pth"
    res = run_toy("must_c/st1", ["--pretrained_ssl", str(ssl_model)], {"MUST_C": str(root)},
                  tmp_path)
    dump, exp = tmp_path / "dump", tmp_path / "exp"
    assert validate_data_dir(dump / "train.en-de") == 5
    assert validate_data_dir(dump / "tst-COMMON.en-de") == 2
    assert not (dump / "train.en-de" / "segments").exists()  # cut into one file per segment
    assert not (exp / "ssl").exists()
    assert_initialised_from(exp, "st_ssl", ssl_model)
    config = yaml.safe_load((exp / "st_ssl" / "config.yaml").read_text())
    assert config["src_token_list"][-1] == "<sos/eos>" and config["token_list"][0] == "<blank>"

    results = (exp / "RESULTS.md").read_text()
    assert results in res.stdout
    assert results.startswith("# MuST-C speech translation with a Chunk SSL encoder")
    assert "## tst-COMMON.en-de (2 utterances" in results
    assert_scored(results, "BLEU", "Chunk SSL + ST", [320, 640])
    stream = results_rows(results, "| chunk (ms) |")
    assert "average_lagging_ms" in stream["header"] and set(stream) == {"header", "320", "640"}
    for chunk in ("320", "640"):
        lagging = float(stream[chunk][stream["header"].index("average_lagging_ms")])
        assert lagging > 0
    hyps = read_scp(exp / "st_ssl" / "decode_tst-COMMON.en-de_stream" / "chunk8" / "text")
    assert set(hyps) == set(read_scp(dump / "tst-COMMON.en-de" / "text.tc.de"))
    assert re.search(r"\| st_train \| st_ssl \|", results)  # the stage times table

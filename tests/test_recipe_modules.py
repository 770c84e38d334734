"""The recipe stages' library (chunkssl_espnet.recipe) without training: bookkeeping, jobs, ESPnet
argument building, segment dumping, scoring tables and figures."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from chunkssl_espnet.data.datadir import read_scp, validate_data_dir, write_data_dir
from chunkssl_espnet.recipe import cli
from chunkssl_espnet.recipe.datadirs import combine_data_dirs, dump_segments, holdout
from chunkssl_espnet.recipe.decode import merge_text, offline_dir, streaming_root
from chunkssl_espnet.recipe.jobs import RecipeError, failure_excerpt, run_command, run_parallel
from chunkssl_espnet.recipe.provenance import StageRecord, options_stamp, replace_dir
from chunkssl_espnet.recipe.results import parse_labelled, score_recipe
from chunkssl_espnet.recipe.train import check_inputs, espnet_train_args

SR = 16000


def tone(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), SR, subtype="PCM_16")
    return path


# --- bookkeeping ---------------------------------------------------------------------------
def test_stage_record_skips_same_options_and_reruns_changed(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    rec = StageRecord(out, "demo", {"a": 1, "nj": 2}, argv=["prog", "--a", "1"])
    assert not rec.is_done()
    rec.start()
    rec.add_command(["echo", "hi there"])
    info = rec.finish({"x": "y"})
    run_info = json.loads(info.read_text())
    assert run_info["command"] == "prog --a 1"
    assert run_info["commands"] == ["echo 'hi there'"]
    assert run_info["options"] == {"a": 1, "nj": 2}
    assert {"chunkssl_espnet", "espnet", "torch", "python"} <= set(run_info["versions"])
    # nj does not change outputs: same stamp; another value of a does
    assert StageRecord(out, "demo", {"a": 1, "nj": 8}).is_done()
    assert not StageRecord(out, "demo", {"a": 2, "nj": 2}).is_done()
    assert not StageRecord(out, "demo", {"a": 1, "force": True}).is_done()
    assert options_stamp({"a": 1, "nj": 1}) == options_stamp({"a": 1})


def test_replace_dir_is_complete_swap(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    (tmp_path / "out.tmp").mkdir()
    (tmp_path / "out.tmp" / "new.txt").write_text("new")
    replace_dir(tmp_path / "out.tmp", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    assert not (tmp_path / "out.tmp").exists() and not (tmp_path / "out.old").exists()


# --- jobs ----------------------------------------------------------------------------------
def test_run_command_logs_and_raises_with_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "ok.log"
    t = run_command([sys.executable, "-c", "sum(range(3_000_000)); print('hello')"], log)
    assert "hello" in log.read_text() and "# exit 0" in log.read_text()
    assert t.wall > 0 and t.cpu > 0
    bad = [sys.executable, "-c", "import sys; print('the cause'); sys.exit(3)"]
    with pytest.raises(RecipeError, match=r"(?s)exit 3.*bad.log.*the cause"):
        run_command(bad, tmp_path / "bad.log")
    with pytest.raises(RecipeError, match="cannot run"):
        run_command([str(tmp_path / "no-such-program")], tmp_path / "x.log")


def test_failure_excerpt_quotes_the_cause_above_the_tail(tmp_path: Path) -> None:
    """A torchrun-like log: a rank's traceback, then 40 lines of the launcher's summary. The
    error quotes the cause line of this run, not the one of an earlier run in the same log."""
    log = tmp_path / "train.log"
    log.write_text("# 2026-01-01 00:00:00 earlier run\nValueError: an old cause\n")
    script = ("import sys\n"
              "print('Traceback (most recent call last):')\n"
              "print('RuntimeError: rank 1 lost its peer')\n"
              "print('terminate called after throwing an instance of gloo::IoException')\n"
              "for i in range(40): print(f'summary line {i}')\n"
              "sys.exit(1)\n")
    with pytest.raises(RecipeError) as err:
        run_command([sys.executable, "-c", script], log)
    msg = str(err.value)
    assert "RuntimeError: rank 1 lost its peer" in msg and "terminate called" in msg
    assert "summary line 39" in msg and "summary line 5\n" not in msg
    assert "an old cause" not in msg
    assert failure_excerpt(tmp_path / "missing.log") == "its last lines:\n"


def test_run_parallel_runs_all_then_reports_failure(tmp_path: Path) -> None:
    jobs = [([sys.executable, "-c", f"open(r'{tmp_path}/done{i}', 'w')"], tmp_path / f"{i}.log")
            for i in range(3)]
    jobs.append(([sys.executable, "-c", "raise SystemExit(2)"], tmp_path / "fail.log"))
    with pytest.raises(RecipeError, match="fail.log"):
        run_parallel(jobs, nj=2)
    assert all((tmp_path / f"done{i}").exists() for i in range(3))


# --- training arguments ----------------------------------------------------------------------
def test_espnet_train_args_per_task(tmp_path: Path) -> None:
    ssl = espnet_train_args("ssl", "c.yaml", "data/train", "data/valid", "exp/stats", "exp/ssl",
                            tokenizer_dir="exp/tok", max_epoch=3)
    assert ssl[ssl.index("--model_conf") + 1] == "tokenizer_dir=exp/tok"
    assert ssl[ssl.index("--normalize_conf") + 1] == "stats_file=exp/stats/train/feats_stats.npz"
    assert "data/train/wav.scp,speech,sound" in ssl and "--token_list" not in ssl
    assert ssl[ssl.index("--max_epoch") + 1] == "3" and "--resume" in ssl

    asr = espnet_train_args("asr", "c.yaml", "data/train", "data/valid", "exp/stats", "exp/asr",
                            token_list="t.txt", bpemodel="b.model",
                            init_param=["exp/ssl/valid.loss.ave.pth:encoder:encoder"])
    assert "data/valid/text,text,text" in asr
    assert asr[asr.index("--init_param") + 1] == "exp/ssl/valid.loss.ave.pth:encoder:encoder"
    assert "--multiprocessing_distributed" not in asr

    st = espnet_train_args("st", "c.yaml", "d/tr", "d/dev", "s", "e", token_list="de.txt",
                           bpemodel="de.model", text_name="text.tc.de", src_token_list="en.txt",
                           src_bpemodel="en.model", src_text_name="text.lc.rm.en", ngpu=4,
                           num_nodes=2, dist_launcher="slurm")
    assert "d/tr/text.tc.de,text,text" in st and "d/tr/text.lc.rm.en,src_text,text" in st
    assert st[st.index("--ngpu") + 1] == "4" and "--multiprocessing_distributed" in st
    assert st[st.index("--dist_world_size") + 1] == "2"

    with pytest.raises(RecipeError, match="tokenizer_dir"):
        espnet_train_args("ssl", "c", "a", "b", "s", "o")
    with pytest.raises(RecipeError, match="token_list"):
        espnet_train_args("asr", "c", "a", "b", "s", "o")
    with pytest.raises(RecipeError, match="unknown task"):
        espnet_train_args("tts", "c", "a", "b", "s", "o")


def test_training_command_on_cpu_processes() -> None:
    from chunkssl_espnet.recipe.train import training_command

    args = espnet_train_args("ssl", "c.yaml", "d/tr", "d/dev", "s", "e", tokenizer_dir="tok")
    one = training_command("ssl", args)
    assert one[1:3] == ["-m", "chunkssl_espnet.bin.ssl_train"] and one[3:] == args
    two = training_command("ssl", args, cpu_procs=2)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "chunkssl_espnet.bin.ssl_train"]
    assert two[1:8] == launcher and two[8:] == args + ["--dist_backend", "gloo"]
    gpu = espnet_train_args("asr", "c", "a", "b", "s", "o", token_list="t", bpemodel="b", ngpu=2)
    with pytest.raises(RecipeError, match="for CPU training"):
        training_command("asr", gpu, cpu_procs=2)
    with pytest.raises(RecipeError, match="1 or more"):
        training_command("ssl", args, cpu_procs=0)


def test_final_model_name_follows_the_config(tmp_path: Path) -> None:
    from chunkssl_espnet.recipe.train import final_model_name

    conf = tmp_path / "c.yaml"
    conf.write_text("best_model_criterion:\n-   - valid\n    - loss\n    - min\n")
    assert final_model_name("asr", conf) == "valid.loss.ave.pth"
    conf.write_text("max_epoch: 3\n")
    assert final_model_name("asr", conf) == "valid.acc.ave.pth"
    assert final_model_name("ssl", tmp_path / "absent.yaml") == "valid.loss.ave.pth"


def test_check_inputs_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("{}")
    args = espnet_train_args("ssl", tmp_path / "c.yaml", tmp_path / "train", tmp_path / "valid",
                             tmp_path / "stats", tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    with pytest.raises(RecipeError, match=r"feats_stats.npz does not exist; run the earlier"):
        check_inputs(args)


# --- data directories ------------------------------------------------------------------------
def segmented_dir(root: Path) -> Path:
    """Two 2 s recordings cut into three segments, with text."""
    wav = {r: str(tone(root / "audio" / f"{r}.wav", 2.0)) for r in ("recA", "recB")}
    segments = {"recA-0": "recA 0.00 0.50", "recA-1": "recA 1.00 1.75", "recB-0": "recB 0.2 1.2"}
    utt2spk = {u: u.split("-")[0] for u in segments}
    text = {u: f"words of {u}" for u in segments}
    return write_data_dir(root / "data", wav, utt2spk, texts={"text": text}, segments=segments)


def test_dump_segments_writes_one_file_per_utterance(tmp_path: Path) -> None:
    src = segmented_dir(tmp_path)
    dst = dump_segments(src, tmp_path / "dump" / "data", nj=2)
    assert validate_data_dir(dst) == 3
    assert not (dst / "segments").exists()
    assert read_scp(dst / "utt2num_samples") == {"recA-0": "8000", "recA-1": "12000",
                                                 "recB-0": "16000"}
    assert read_scp(dst / "text") == read_scp(src / "text")
    first = (dst / "wav.scp").stat().st_mtime_ns
    dump_segments(src, dst)  # done: nothing rewritten
    assert (dst / "wav.scp").stat().st_mtime_ns == first


def test_combine_and_holdout(tmp_path: Path) -> None:
    a = write_data_dir(tmp_path / "a", {"u1": str(tone(tmp_path / "u1.wav", 0.2)),
                                        "u2": str(tone(tmp_path / "u2.wav", 0.2))},
                       {"u1": "s1", "u2": "s1"}, texts={"text": {"u1": "a b", "u2": "c"}})
    b = write_data_dir(tmp_path / "b", {"v1": str(tone(tmp_path / "v1.wav", 0.2))}, {"v1": "s2"},
                       texts={"text": {"v1": "d"}})
    out = combine_data_dirs([a, b], tmp_path / "ab")
    assert validate_data_dir(out) == 3 and (out / "utt2num_samples").is_file()
    write_data_dir(tmp_path / "c", {"u1": "x"}, {"u1": "s9"}, texts={"text": {"u1": "e"}})
    with pytest.raises(ValueError, match="'u1' is in both"):
        combine_data_dirs([a, tmp_path / "c"], tmp_path / "bad")
    train, valid = holdout(out, tmp_path / "tr", tmp_path / "va", n=1)
    assert validate_data_dir(train) + validate_data_dir(valid) == 3
    assert validate_data_dir(valid) == 1


# --- decoding bookkeeping and scoring ----------------------------------------------------------
def test_merge_text_sorted(tmp_path: Path) -> None:
    (tmp_path / "1").write_text("b B\n")
    (tmp_path / "2").write_text("a A\nc\n")
    assert merge_text([tmp_path / "1", tmp_path / "2"], tmp_path / "out") == 3
    assert (tmp_path / "out").read_text() == "a A\nb B\nc\n"


def fake_decoding(folder: Path, hyp: str, summary: dict = None) -> None:
    folder.mkdir(parents=True)
    (folder / "text").write_text(hyp)
    (folder / ".done").write_text("stamp\n")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def fake_checkpoint(exp: Path, keys=("loss",)) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    stats = {e: {ph: {k: 1.0 / e + (ph == "valid") for k in keys} | {"time": "1 s"}
                 for ph in ("train", "valid")} for e in (1, 2, 3)}
    torch.save({"reporter": {"stats": stats, "epoch": 3}}, exp / "checkpoint.pth")


def test_score_recipe_tables_and_plots(tmp_path: Path) -> None:
    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    (data / "text").write_text("u1 A B C D\nu2 E F\n")
    (data / "utt2spk").write_text("u1 s\nu2 s\n")
    exp = tmp_path / "exp"
    fake_decoding(offline_dir(exp / "ft", "test"), "u1 A B C D\nu2 E F\n")
    fake_decoding(offline_dir(exp / "scratch", "test"), "u1 A B C\nu2 E X\n")
    for c, hyp in ((4, "u1 A\nu2 E F\n"), (8, "u1 A B C D\nu2 E\n"), (16, "u1 A B C D\n")):
        fake_decoding(streaming_root(exp / "ft", "test") / f"chunk{c}", hyp,
                      {"num_utts": 2, "rtf": 0.1 * c, "p90_chunk_latency_ms": 9.0,
                       "algorithmic_latency_ms": 40.0 * c, "device": "cpu",
                       "extra": {"x": 1.5}})
    # an incomplete decoding (no .done) is ignored
    (streaming_root(exp / "ft", "test") / "chunk32").mkdir()
    (streaming_root(exp / "ft", "test") / "chunk32" / "text").write_text("u1 Z\n")
    fake_checkpoint(exp / "ssl")
    fake_checkpoint(exp / "ft", ("loss", "acc"))
    md = score_recipe(exp, tmp_path / "data", ["test"], parse_labelled(["ft=pre-trained",
                                                                        "scratch"]),
                      ssl=[("ssl", "Chunk SSL")], title="demo", extra_metrics=["cer"])
    text = md.read_text()
    assert "## test (2 utterances): WER (%)" in text and "### test: CER (%)" in text
    assert "| scratch | 30.00 | - | - | - |" in text  # CER: 3 of 10 characters (with spaces)
    assert "| model | offline | 160 ms | 320 ms | 640 ms |" in text
    assert "| pre-trained | 0.00 | 50.00 | 16.67 | 33.33 |" in text
    assert "| scratch | 33.33 | - | - | - |" in text
    # the paired bootstrap: the baseline errs on both utterances, ft on none, in every resample
    assert "| relative change [95% CI] | -100.0% [-100.0, -100.0] | - | - | - |" in text
    assert "1280 ms" not in text
    assert "| chunk (ms) | WER (%) | algorithmic_latency_ms | rtf | p90_chunk_latency_ms | " \
        "extra.x |" in text
    for png in ("loss_ssl.png", "loss_downstream.png", "wer_vs_chunk_test.png"):
        assert (exp / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((exp / "results.json").read_text())
    assert results["scores"]["test"]["ft"]["streaming"]["8"]["score"] == pytest.approx(100 / 6)
    gain = results["scores"]["test"]["ft"]["offline"]["gain_vs_next"]
    assert gain["wer_b"] == pytest.approx(100 / 3) and gain["excludes_zero"]

    template = tmp_path / "T.md"
    template.write_text("# Template\n\nintro\n\n<!-- results -->\n\nend\n")
    out = score_recipe(exp, tmp_path / "data", ["test"], [("ft", "ft")], template=template,
                       out_md=tmp_path / "R.md")
    assert out.read_text().startswith("# Template\n\nintro\n\n## test (2 utterances): WER (%)")
    with pytest.raises(RecipeError, match="no complete decoding"):
        score_recipe(exp, tmp_path / "data", ["test"], [("nothing", "x")])


def test_study_report_sweeps(tmp_path: Path) -> None:
    """A single-model sweep and a paired (SSL | scratch) sweep: WERs, the bootstrap cell, the
    trend sentence, the figures and the numbers file."""
    from chunkssl_espnet.recipe.study import parse_sweep, study_report

    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    (data / "text").write_text("u1 A B C D\nu2 E F\n")
    exp = tmp_path / "exp"
    for name, hyp in (("a", "u1 A B C D\nu2 E F\n"), ("b", "u1 A B C\nu2 E X\n"),
                      ("c", "u1 A\nu2 E\n")):
        fake_decoding(offline_dir(exp / name, "test"), hyp)
    sweeps = [parse_sweep("levels:1k=c,2M=a"), parse_sweep("labelled:10=a|b,20=b|c")]
    md = study_report(exp, tmp_path / "data", ["test"], sweeps, tmp_path / "S.md", title="t")
    text = md.read_text()
    assert "| value | offline |\n|---|---|\n| 1k | 66.67 |\n| 2M | 0.00 |" in text
    assert "the lowest WER is at levels = 2M (0.0%), the highest at 1k (66.7%)" in text
    assert "| 10 | 0.00 | 33.33 | -100.0% [-100.0, -100.0] |" in text  # a against b
    assert "| 20 | 33.33 | 66.67 | -50.0% [" in text
    for png in ("levels_test.png", "labelled_test.png"):
        assert (tmp_path / "plots_study" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads((tmp_path / "S.json").read_text())
    assert numbers["labelled"]["test"][1]["offline scratch"] == pytest.approx(200 / 3)
    for bad in ("nocolon", "x:1k", "x:1k=a|b|c"):
        with pytest.raises(RecipeError):
            parse_sweep(bad)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["check-data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere: data directory does not exist" in err
    assert cli.main(["score", "--exp_dir", str(tmp_path), "--data_root", str(tmp_path),
                     "--test_sets", "test", "--models", "m"]) == 1
    assert "reference transcripts not found" in capsys.readouterr().err
    assert cli.main(["step", "--out_dir", str(tmp_path / "s")]) == 1
    assert "give the command after '--'" in capsys.readouterr().err


def test_cli_step_runs_once(tmp_path: Path) -> None:
    marker = tmp_path / "count"
    cmd = ["step", "--name", "demo", "--out_dir", str(tmp_path / "s"), "--", sys.executable,
           "-c", f"f = open(r'{marker}', 'a'); f.write('x')"]
    assert cli.main(cmd) == 0 and cli.main(cmd) == 0
    assert marker.read_text() == "x"
    assert (tmp_path / "s" / "demo.log").is_file() and (tmp_path / "s" / "run_info.json").is_file()


FAKE_DECODER = r'''
import json, sys
from pathlib import Path
module, args = sys.argv[1], sys.argv[2:]
opts = {}  # option -> its values
for a in args:
    if a.startswith("--"):
        key = a
        opts.setdefault(key, [])
    else:
        opts[key].append(a)
opt = {k: v[0] for k, v in opts.items() if v}
out = Path(opt["--output_dir"])
if "streaming" in module:
    ids = [l.split()[0] for l in Path(opt["--data_dir"], "wav.scp").read_text().splitlines()]
    if "13" in opts["--chunk_size"]:
        sys.exit("fake streaming failure")
    for c, d in zip(opts["--chunk_size"], opts["--output_dir"], strict=True):
        Path(d).mkdir(parents=True, exist_ok=True)
        Path(d, "text").write_text("".join(f"{u} HYP {c}\n" for u in ids))
        Path(d, "summary.json").write_text(json.dumps({"rtf": 0.5, "num_utts": len(ids)}))
else:
    scp = opt["--data_path_and_name_and_type"].split(",")[0]
    ids = [l.split()[0] for l in Path(scp).read_text().splitlines()]
    (out / "1best_recog").mkdir(parents=True, exist_ok=True)
    (out / "1best_recog" / "text").write_text("".join(f"{u} HYP\n" for u in ids))
'''


@pytest.fixture
def fake_decoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoding commands run a fake decoder; returns a test set of 5 utterances and a model."""
    from chunkssl_espnet.recipe import decode

    script = tmp_path / "fake_decoder.py"
    script.write_text(FAKE_DECODER)
    monkeypatch.setattr(decode, "python_module",
                        lambda module, *a: [sys.executable, str(script), module, *map(str, a)])
    ids = [f"utt{i}" for i in range(5)]
    write_data_dir(tmp_path / "data" / "test", {u: f"/audio/{u}.wav" for u in ids},
                   {u: "spk" for u in ids}, texts={"text": {u: "REF" for u in ids}})
    (tmp_path / "exp" / "m").mkdir(parents=True)
    for name in ("config.yaml", "valid.acc.ave.pth"):
        (tmp_path / "exp" / "m" / name).write_text("")
    return tmp_path


def test_decode_offline_parts_merge_and_skip(fake_decoders: Path) -> None:
    from chunkssl_espnet.recipe.decode import Model, decode_offline

    model = Model.from_dir(fake_decoders / "exp" / "m", "valid.acc.ave.pth")
    data = fake_decoders / "data" / "test"
    texts = decode_offline("asr", [model], [data], chunk_sizes=[-1, 8], nj=3)
    assert texts == [offline_dir(model.model_dir, "test") / "text",
                     offline_dir(model.model_dir, "test", 8) / "text"]
    for text in texts:
        assert read_scp(text) == {f"utt{i}": "HYP" for i in range(5)}
        info = json.loads((text.parent / "run_info.json").read_text())
        assert len(info["commands"]) == 1 and info["outputs"]["jobs"] == 1  # 3 slots / 2 units
    assert "--decoding_chunk_size 8" in json.loads(
        (texts[1].parent / "run_info.json").read_text())["commands"][0]
    mtime = texts[0].stat().st_mtime_ns
    decode_offline("asr", [model], [data], nj=1)  # same options but nj: skipped
    assert texts[0].stat().st_mtime_ns == mtime
    with pytest.raises(RecipeError, match="not found; run the earlier stages"):
        decode_offline("asr", [Model.from_dir(fake_decoders / "nowhere", "x.pth")], [data])


def test_decode_streaming_keeps_successful_units(fake_decoders: Path) -> None:
    from chunkssl_espnet.recipe.decode import Model, decode_streaming

    model = Model.from_dir(fake_decoders / "exp" / "m", "valid.acc.ave.pth")
    data = fake_decoders / "data" / "test"
    with pytest.raises(RecipeError, match="chunk13.log"):
        decode_streaming([model], [data], [4, 13], nj=2)
    root = streaming_root(model.model_dir, "test")
    assert (root / "chunk4" / ".done").is_file() and not (root / "chunk13").exists()
    assert read_scp(root / "chunk4" / "text")["utt0"] == "HYP 4"
    with pytest.raises(RecipeError, match="positive"):
        decode_streaming([model], [data], [0])


def test_decode_streaming_batches_chunk_sizes_beyond_the_slots(fake_decoders: Path) -> None:
    """More units than slots: one process decodes several chunk sizes of a model and test set
    (one start); no more units than slots: a process each."""
    from chunkssl_espnet.recipe.decode import Model, decode_streaming

    model = Model.from_dir(fake_decoders / "exp" / "m", "valid.acc.ave.pth")
    data = fake_decoders / "data" / "test"
    root = streaming_root(model.model_dir, "test")
    decode_streaming([model], [data], [4, 8, 16], nj=2)
    commands = {c: json.loads((root / f"chunk{c}" / "run_info.json").read_text())["commands"]
                for c in (4, 8, 16)}
    assert commands[4] == commands[16] != commands[8]
    assert "--chunk_size 4 16" in commands[4][0] and "--chunk_size 8" in commands[8][0]
    for c in (4, 8, 16):
        assert read_scp(root / f"chunk{c}" / "text")["utt0"] == f"HYP {c}"
    decode_streaming([model], [data], [32, 64], nj=2)  # 2 units, 2 slots: a process each
    alone = {c: json.loads((root / f"chunk{c}" / "run_info.json").read_text())["commands"][0]
             for c in (32, 64)}
    assert alone[32] != alone[64] and "--chunk_size 32" in alone[32]
    # a failed process fails every unit it held, and no other
    with pytest.raises(RecipeError, match="fake streaming failure|chunk13"):
        decode_streaming([model], [data], [2, 6, 13], nj=2)  # 2 and 13: one process
    assert (root / "chunk6" / ".done").is_file()
    assert not (root / "chunk2").exists() and not (root / "chunk13").exists()


FAKE_TRAINER = r'''
import sys
from pathlib import Path
args = sys.argv[2:]
out = Path(args[args.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
if "fail" in out.name:
    sys.exit("fake training failure")
(out / "config.yaml").write_text(" ".join(args))
(out / "valid.acc.ave.pth").write_text("model")
with open(out.parent / "count", "a") as f:
    f.write(out.name + "\n")
'''


def test_train_side_by_side_skips_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chunkssl_espnet.recipe import train as train_mod
    from chunkssl_espnet.recipe.train import TrainJob, train, without_init

    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(train_mod, "python_module",
                        lambda module, *a: [sys.executable, str(script), module, *map(str, a)])
    init = tmp_path / "ssl.pth"
    init.write_text("")
    main = TrainJob("asr", tmp_path / "exp" / "ft", ["--output_dir", str(tmp_path / "exp" / "ft"),
                                                     "--init_param", f"{init}:encoder:encoder"])
    base = without_init(main, tmp_path / "exp" / "scratch")
    assert base.espnet_args == ["--output_dir", str(tmp_path / "exp" / "scratch")]
    models = train([main, base], concurrent=True, num_threads=1)
    assert models == [tmp_path / "exp" / "ft" / "valid.acc.ave.pth",
                      tmp_path / "exp" / "scratch" / "valid.acc.ave.pth"]
    assert sorted((tmp_path / "exp" / "count").read_text().split()) == ["ft", "scratch"]
    train([main, base])  # done: nothing runs again
    assert len((tmp_path / "exp" / "count").read_text().split()) == 2
    info = json.loads((tmp_path / "exp" / "ft" / "run_info.json").read_text())
    assert info["options"]["espnet_args"] == main.espnet_args

    bad = TrainJob("asr", tmp_path / "exp" / "fail", ["--output_dir", str(tmp_path / "exp/fail")])
    other = TrainJob("asr", tmp_path / "exp" / "ok2", ["--output_dir", str(tmp_path / "exp/ok2")])
    with pytest.raises(RecipeError, match="fail/train.log"):
        train([bad, other], concurrent=True)
    assert (tmp_path / "exp" / "ok2" / ".done").is_file()
    assert not (tmp_path / "exp" / "fail" / ".done").exists()
    missing = TrainJob("asr", tmp_path / "exp" / "x", ["--init_param", "nowhere.pth:a:b"])
    with pytest.raises(RecipeError, match="nowhere.pth does not exist"):
        train([missing])


def test_fine_tuning_normalises_with_the_pretraining_statistics(tmp_path, monkeypatch):
    """An encoder pre-trained in another recipe (another working directory) is fine-tuned on
    features normalised with its own statistics, found through its config.yaml, not with the
    statistics file of the same relative name in the fine-tuning recipe."""
    from chunkssl_espnet.recipe.train import espnet_train_args, pretraining_stats

    for name in ("ssl1", "asr1"):
        (tmp_path / name / "exp/stats/train").mkdir(parents=True)
        (tmp_path / name / "exp/stats/train/feats_stats.npz").write_text(name)
    (tmp_path / "ssl1/exp/ssl").mkdir()
    (tmp_path / "ssl1/exp/ssl/config.yaml").write_text(
        "output_dir: exp/ssl\nnormalize: global_mvn\n"
        "normalize_conf:\n  stats_file: exp/stats/train/feats_stats.npz\n")
    monkeypatch.chdir(tmp_path / "asr1")
    ssl = "../ssl1/exp/ssl/valid.loss.ave.pth"
    found = pretraining_stats(ssl)
    assert found is not None and found.read_text() == "ssl1"
    args = espnet_train_args("asr", "c.yaml", "data/train", "data/dev", "exp/stats", "exp/asr",
                             token_list="t.txt", bpemodel="b.model",
                             init_param=[f"{ssl}:encoder:encoder"])
    assert args[args.index("--normalize_conf") + 1] == f"stats_file={found}"
    # without pre-training, the recipe's own statistics (relative, as written)
    args = espnet_train_args("asr", "c.yaml", "data/train", "data/dev", "exp/stats", "exp/asr",
                             token_list="t.txt", bpemodel="b.model")
    assert args[args.index("--normalize_conf") + 1] == "stats_file=exp/stats/train/feats_stats.npz"
    # a pre-training in the same recipe keeps a relative path (ESPnet's pack matches it)
    monkeypatch.chdir(tmp_path / "ssl1")
    same = pretraining_stats("exp/ssl/valid.loss.ave.pth")
    assert same == Path("exp/stats/train/feats_stats.npz")
    # unpacked by ESPnet's unpack into pretrained/: paths relative to where it was unpacked
    (tmp_path / "asr1/pretrained/exp/ssl").mkdir(parents=True)
    (tmp_path / "asr1/pretrained/exp/stats/train").mkdir(parents=True)
    (tmp_path / "asr1/pretrained/exp/stats/train/feats_stats.npz").write_text("packed")
    (tmp_path / "asr1/pretrained/exp/ssl/config.yaml").write_text(
        "output_dir: exp/ssl\nnormalize: global_mvn\n"
        "normalize_conf:\n  stats_file: pretrained/exp/stats/train/feats_stats.npz\n")
    monkeypatch.chdir(tmp_path / "asr1")
    unpacked = pretraining_stats("pretrained/exp/ssl/valid.loss.ave.pth")
    assert unpacked == Path("pretrained/exp/stats/train/feats_stats.npz")


def test_statistics_jobs_per_data_size() -> None:
    from chunkssl_espnet.recipe.stats import stats_jobs

    assert stats_jobs(2, 64, 8) == 1  # a toy set: one ESPnet start, not two
    assert stats_jobs(2, 600, 100) == 2 and stats_jobs(8, 3000, 100) == 8
    assert stats_jobs(8, 3000, 3) == 3  # no more parts than validation utterances
    assert stats_jobs(4, 5, 5, min_utts_per_job=2) == 3 and stats_jobs(0, 5, 5) == 1


@pytest.mark.slow
def test_statistics_in_two_jobs_sum_the_features(tmp_path: Path, librivox_dir: Path) -> None:
    """``recipe stats`` split in 2 ESPnet jobs and summed as asr.sh sums them: the MVN
    statistics equal those of the fbank features computed here, and every utterance has a
    shape."""
    from chunkssl_espnet.features import compute_mvn_stats, kaldi_fbank, load_wav
    from chunkssl_espnet.recipe.stats import collect_stats

    wavs = {w.stem: str(w) for w in sorted(librivox_dir.glob("*.wav"))}
    data = write_data_dir(tmp_path / "data", wavs, {u: "spk1" for u in wavs})
    conf = Path(__file__).resolve().parents[1] / "conf" / "ssl_chunk_tiny.yaml"
    out = collect_stats(conf, data, data, tmp_path / "stats", nj=2, min_utts_per_job=2)
    assert len(json.loads((tmp_path / "stats" / "run_info.json").read_text())["commands"]) == 2
    got = np.load(out["stats_file"])
    want = compute_mvn_stats(kaldi_fbank(load_wav(p)[0]) for p in wavs.values())
    assert float(got["count"]) == float(want["count"])
    np.testing.assert_allclose(got["sum"], want["sum"], rtol=1e-5)
    np.testing.assert_allclose(got["sum_square"], want["sum_square"], rtol=1e-5)
    for split in ("train", "valid"):
        shapes = read_scp(out[f"{split}_shape"])
        assert set(shapes) == set(wavs)
        assert all(int(shapes[u]) == soundfile.info(wavs[u]).frames for u in wavs)

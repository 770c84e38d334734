"""Bad inputs tried as a new user would: every entry point that reads an input stops with a
non-zero exit and a message naming the file (and the utterance where there is one); none
decodes, trains or fits anything silently.

Inputs: a corrupt wav, a missing and an empty transcript, 8 kHz audio, a corrupt FSQ tokenizer
directory, a misspelled config key (nested under ``encoder_conf:``, and at the top level). Entry
points: the commands of egs2/mini_flite/asr1/run.sh (``recipe check-data``, ``recipe stats``,
``recipe train --task ssl|asr``, ``bin.tokenizer_train``), offline (``bin.asr_inference``) and
streaming (``bin.asr_inference_streaming``) decoding. Each pair is one real subprocess. A tiny ASR
model (1 epoch), its statistics, BPE and a random FSQ tokenizer are made once for the module on
the 5 LibriVox utterances, and the selected cases then run two at a time, since a process that
imports ESPnet costs about 9 s (in the optimised mode of conftest.py; 21 s without). The same
offline decoding on the good data is the control.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import soundfile

from chunkssl_espnet.data.datadir import read_scp, write_data_dir

pytestmark = pytest.mark.slow  # trains a tiny model; about 2.5 min on 2 idle cores

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SMALL = ["--encoder_conf", "output_size=32", "--encoder_conf", "attention_heads=2",
         "--encoder_conf", "linear_units=64", "--encoder_conf", "num_blocks=2",
         "--encoder_conf", "cnn_module_kernel=7"]
DECODER = ["--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=64",
           "--decoder_conf", "attention_heads=2"]
COMMON = ["--batch_type", "unsorted", "--batch_size", "5", "--num_workers", "0", "--seed", "0"]

# (input, entry point) for every entry point that reads that input
AUDIO_ENTRIES = ["check-data", "stats", "train-ssl", "train-asr", "asr_inference",
                 "asr_inference_streaming", "tokenizer_train"]
CASES = (
    [("corrupt_wav", e) for e in AUDIO_ENTRIES]
    + [("audio_8k", e) for e in AUDIO_ENTRIES]
    + [(bad, e) for bad in ("missing_transcript", "empty_transcript")
       for e in ("check-data", "train-asr")]
    + [("corrupt_tokenizer", "train-ssl")]
    + [("config_key", e) for e in ("stats", "train-ssl", "train-asr", "asr_inference",
                                    "asr_inference_streaming")]
    + [("config_key_top", e) for e in ("train-asr", "asr_inference")]
    + [("good", "asr_inference")]  # the control: the same command decodes good data
)


def _case_id(case: Tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


def _good_data_dir(root: Path, librivox_dir: Path) -> Tuple[Path, str]:
    """data/good (the 5 utterances, a full data directory) and the utterance spoilt below."""
    texts = {}
    for line in (librivox_dir / "transcription").read_text().splitlines():
        words, utt = line.rsplit("(", 1)
        texts[utt.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    wavs = {w.stem: str(w) for w in sorted(librivox_dir.glob("*.wav"))}
    good = write_data_dir(root / "data" / "good", wavs, {u: "spk1" for u in wavs},
                          {"text": {u: texts[u] for u in wavs}})
    return good, sorted(wavs)[2]


def _spoil(src: Path, dst: Path, wav: Optional[Dict] = None, text: Optional[Dict] = None) -> Path:
    """A copy of data dir ``src`` with some wav.scp or text entries replaced (None: removed)."""
    shutil.copytree(src, dst)
    for name, changes in (("wav.scp", wav), ("text", text)):
        if changes:
            table = {**read_scp(src / name), **changes}
            (dst / name).write_text("".join(f"{u} {v}".rstrip() + "\n" for u, v in
                                            sorted(table.items()) if v is not None))
    return dst


def _typo(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert text.count(old) == 1, (src, old)
    dst.write_text(text.replace(old, new))
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory, librivox_dir) -> Dict[str, object]:
    """The good and spoilt inputs, a tiny trained ASR model, and the results of the selected
    cases, run two at a time: ``{case id: CompletedProcess}``."""
    from chunkssl_espnet.bin import tokenizer_train
    from chunkssl_espnet.data.tokens import train_sentencepiece, write_token_list
    from chunkssl_espnet.features import compute_mvn_stats, kaldi_fbank, load_wav, save_mvn_stats

    root = tmp_path_factory.mktemp("bad_inputs")
    good, bad = _good_data_dir(root, librivox_dir)
    w: Dict[str, object] = {"root": root, "good": good, "bad": bad}
    # statistics and shapes as `recipe stats` writes them (computed here: no ESPnet process)
    feats, shapes = [], []
    for utt, path in read_scp(good / "wav.scp").items():
        audio, _ = load_wav(path)
        feats.append(kaldi_fbank(audio))
        shapes.append(f"{utt} {audio.numel()}\n")
    for split in ("train", "valid"):
        (root / "stats" / split).mkdir(parents=True)
        (root / "stats" / split / "speech_shape").write_text("".join(shapes))
    save_mvn_stats(compute_mvn_stats(feats), root / "stats" / "train" / "feats_stats.npz")
    w["stats"] = root / "stats" / "train" / "feats_stats.npz"
    bpe = train_sentencepiece(good / "text", root / "bpe" / "bpe", 40, has_uttids=True)
    write_token_list(bpe, root / "bpe" / "tokens.txt")
    tokenizer_train.run(tokenizer_train.get_parser().parse_args(
        ["--data_dir", str(good), "--stats_file", str(w["stats"]), "--out_dir",
         str(root / "tok")]))

    # the spoilt inputs
    garbage = root / "garbage.wav"
    garbage.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is no audio")
    audio, _ = soundfile.read(read_scp(good / "wav.scp")[bad], dtype="int16")
    narrow = root / "narrow_8k.wav"
    soundfile.write(narrow, audio[::2], 8000)
    data = {
        "good": good,
        "corrupt_wav": _spoil(good, root / "data" / "corrupt_wav", wav={bad: str(garbage)}),
        "audio_8k": _spoil(good, root / "data" / "audio_8k", wav={bad: str(narrow)}),
        "missing_transcript": _spoil(good, root / "data" / "missing", text={bad: None}),
        "empty_transcript": _spoil(good, root / "data" / "empty", text={bad: ""}),
    }
    w["data"], w["garbage"], w["narrow"] = data, garbage, narrow
    shutil.copytree(root / "tok", root / "tok_corrupt")
    (root / "tok_corrupt" / "config.json").write_text('{"kind": "random", "conf": {')
    w["tok_corrupt"] = root / "tok_corrupt"
    conf = REPO / "conf"
    w["ssl_typo"] = _typo(conf / "ssl_chunk_tiny.yaml", root / "ssl_typo.yaml",
                          "    chunk_sizes:", "    chunk_sizez:")
    w["asr_typo"] = _typo(conf / "asr_chunk_tiny.yaml", root / "asr_typo.yaml",
                          "    chunk_sizes:", "    chunk_sizez:")
    w["asr_top"] = _typo(conf / "asr_chunk_tiny.yaml", root / "asr_top.yaml",
                         "\nmax_epoch:", "\nmax_epochh:")

    # a tiny ASR model, trained as run.sh stage 7 trains one
    res = _run(root, _train(w, "asr", good, root / "model", conf / "asr_chunk_tiny.yaml"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    model = root / "model"
    w["model_typo"] = _typo(model / "config.yaml", root / "model_typo.yaml",
                            "    chunk_sizes:", "    chunk_sizez:")
    w["model_top"] = _typo(model / "config.yaml", root / "model_top.yaml",
                           "\nctc_conf:", "\nctc_confx:")

    return w


def _run(cwd: Path, cmd: List[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _train(w, task: str, data: Path, out: Path, config: Path,
           tok: Optional[Path] = None) -> List[object]:
    """``recipe train`` as run.sh stages 6 and 7 call it, at the tiny sizes of the tests."""
    root = w["root"]
    cmd = [PY, "-m", "chunkssl_espnet.recipe", "train", "--task", task, "--config", config,
           "--train_dir", data, "--valid_dir", data, "--stats_dir", root / "stats",
           "--output_dir", out, "--max_epoch", "1"]
    if task == "ssl":
        cmd += ["--tokenizer_dir", tok]
    else:
        cmd += ["--token_list", root / "bpe" / "tokens.txt", "--bpemodel", root / "bpe" /
                "bpe.model"]
    return cmd + ["--", *SMALL, *COMMON, *(DECODER if task == "asr" else [])]


def _command(w, bad: str, entry: str, out: Path) -> Tuple[List[object], List[str]]:
    """The command of ``entry`` on input ``bad`` (run.sh's options, outputs in ``out``), and
    what one line of its output must name."""
    root, conf = w["root"], REPO / "conf"
    data = w["data"].get(bad, w["good"])
    ssl_conf = w["ssl_typo"] if bad == "config_key" else conf / "ssl_chunk_tiny.yaml"
    asr_conf = {"config_key": w["asr_typo"], "config_key_top": w["asr_top"]}.get(
        bad, conf / "asr_chunk_tiny.yaml")
    model_conf = {"config_key": w["model_typo"], "config_key_top": w["model_top"]}.get(
        bad, root / "model" / "config.yaml")
    tok = w["tok_corrupt"] if bad == "corrupt_tokenizer" else root / "tok"
    model = ["--asr_model_file", root / "model" / "valid.acc.ave.pth"]
    commands = {
        "check-data": [PY, "-m", "chunkssl_espnet.recipe", "check-data", data],
        "stats": [PY, "-m", "chunkssl_espnet.recipe", "stats", "--config", ssl_conf,
                  "--train_dir", data, "--valid_dir", data, "--out_dir", out, "--", *SMALL],
        "train-ssl": _train(w, "ssl", data, out, ssl_conf, tok),
        "train-asr": _train(w, "asr", data, out, asr_conf),
        "asr_inference": [PY, "-m", "chunkssl_espnet.bin.asr_inference", "--asr_train_config",
                          model_conf, *model, "--data_path_and_name_and_type",
                          f"{data}/wav.scp,speech,sound", "--output_dir", out, "--ngpu", "0",
                          "--beam_size", "2", "--maxlenratio", "0.3"],
        "asr_inference_streaming": [PY, "-m", "chunkssl_espnet.bin.asr_inference_streaming",
                                    "--asr_train_config", model_conf, *model, "--data_dir",
                                    data, "--output_dir", out, "--chunk_size", "8",
                                    "--beam_size", "2"],
        "tokenizer_train": [PY, "-m", "chunkssl_espnet.bin.tokenizer_train", "--kind",
                            "random", "--data_dir", data, "--stats_file", w["stats"],
                            "--out_dir", out],
    }
    config = {"stats": ssl_conf, "train-ssl": ssl_conf, "train-asr": asr_conf}.get(
        entry, model_conf)
    must = {
        "good": [],
        "corrupt_wav": [str(w["garbage"]), w["bad"], "cannot read"],
        "audio_8k": [str(w["narrow"]), w["bad"], "8000 Hz"],
        "missing_transcript": [str(data / "text"), w["bad"]],
        "empty_transcript": [str(data / "text"), w["bad"], "empty transcript"],
        "corrupt_tokenizer": [str(tok), "config.json"],
        "config_key": [str(config), "chunk_sizez"],
        "config_key_top": [str(config), "max_epochh" if entry == "train-asr" else "ctc_confx"],
    }[bad]
    return commands[entry], must


@pytest.fixture(scope="module")
def results(request, work) -> Dict[str, subprocess.CompletedProcess]:
    """``{case id: finished process}`` of the cases pytest selected, run two at a time."""
    chosen = {item.callspec.id for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")}
    todo = [c for c in CASES if _case_id(c) in chosen]

    def one(case: Tuple[str, str]) -> subprocess.CompletedProcess:
        cmd, _ = _command(work, *case, work["root"] / "exp" / _case_id(case))
        return _run(work["root"], cmd)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(map(_case_id, todo), pool.map(one, todo)))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_stops_naming_the_file(case, work, results) -> None:
    res = results[_case_id(case)]
    out_dir = work["root"] / "exp" / _case_id(case)
    output = res.stdout + res.stderr
    if case[0] == "good":  # the control
        assert res.returncode == 0, output[-3000:]
        hyps = (out_dir / "1best_recog" / "text").read_text().splitlines()
        assert len(hyps) == 5
        return
    _, must = _command(work, *case, out_dir)
    assert res.returncode != 0, f"{case} did not stop:\n{output[-3000:]}"
    lines = [ln for ln in output.splitlines() if all(m in ln for m in must)]
    assert lines, f"{case}: no line names {must}:\n{output[-3000:]}"
    assert "error:" in lines[0], lines[0]
    print(f"{_case_id(case)}: {lines[0].strip()}")
    made = [p for pattern in ("text", "*.pth", "model.pt", "feats_stats.npz", "utt2num_samples")
            for p in out_dir.rglob(pattern)] if out_dir.exists() else []
    assert not made, f"{case} wrote outputs: {made}"

"""Models are self-contained: they load and work on another machine, packed with ESPnet's pack.

* Chunk SSL: ``config.yaml`` keeps the FSQ tokenizer's settings (``model_conf.tokenizer``), the
  checkpoint its tensors. Train, pack with ``python -m espnet2.bin.pack ssl`` (the MVN statistics
  as an ``--option``), delete the experiment and the tokenizer directory, unpack elsewhere: the
  rebuilt model gives the same validation loss on the same batch.
* ASR fine-tuned from it: ``pack asr``, unpacked in a new directory, decodes the same text.
* A tokenizer fitted under other MVN statistics than the model's is refused, naming both.

Paths are relative to the experiment root, as in the recipes: ESPnet's pack stores files under
their relative names and rewrites the config values equal to those names when unpacking.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkssl_espnet.espnet_plugin import ChunkASRTask, ChunkSSLTask
from tests.ssl_runs import CONFIG, TINY, make_ssl_workdir, one_thread

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--ngpu", "0", "--num_workers", "0", "--use_tensorboard", "false", "--seed", "0",
          "--batch_type", "unsorted", "--batch_size", "4"]


def _ssl_cmd(data: Path, out: str, stats: str, tok: str) -> list:
    return ["--config", str(CONFIG), *TINY, *COMMON,
            "--normalize_conf", f"stats_file={stats}", "--model_conf", f"tokenizer_dir={tok}",
            "--train_data_path_and_name_and_type", f"{data / 'train/wav.scp'},speech,sound",
            "--valid_data_path_and_name_and_type", f"{data / 'valid/wav.scp'},speech,sound",
            "--train_shape_file", str(data / "train/speech_shape"),
            "--valid_shape_file", str(data / "valid/speech_shape"),
            "--output_dir", out, "--max_epoch", "1"]  # fmt: skip


def _pack(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "espnet2.bin.pack", *args], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def _valid_loss(model, wavs) -> float:
    """The eval-mode loss (fixed masks of ``valid_seed``) of one batch of the given wavs."""
    import soundfile

    audio = [torch.from_numpy(soundfile.read(w, dtype="float32")[0]) for w in wavs]
    lens = torch.tensor([len(a) for a in audio])
    speech = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    model.eval()
    with torch.no_grad():
        loss, _, _ = model(speech, lens)
    return float(loss)


@pytest.fixture(scope="module")
def root(tmp_path_factory, librivox_dir):
    work = make_ssl_workdir(tmp_path_factory.getbasetemp() / "ssl_workdir", librivox_dir)
    root = tmp_path_factory.mktemp("self_contained")
    shutil.copytree(work / "tok", root / "tok")  # deleted by the test: a private copy
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with one_thread():
            ChunkSSLTask.main(cmd=_ssl_cmd(work / "data", "exp/ssl", "tok/feats_stats.npz",
                                           "tok"))
        yield root, work
    finally:
        os.chdir(cwd)


def test_ssl_config_holds_the_tokenizer_not_its_path(root):
    import yaml

    conf = yaml.safe_load((root[0] / "exp/ssl/config.yaml").read_text())["model_conf"]
    assert "tokenizer_dir" not in conf
    assert conf["tokenizer"]["kind"] == "random" and conf["tokenizer"]["source"] == "tok"
    state = torch.load(root[0] / "exp/ssl/valid.loss.ave.pth", map_location="cpu")
    assert {"tokenizer.proj", "tokenizer.mean", "tokenizer.transform"} <= set(state)


def test_packed_ssl_model_loads_without_tokenizer_dir(root, monkeypatch):
    root, work = root
    monkeypatch.chdir(root)
    wavs = sorted((work / "wav").glob("*.wav"))[:3]
    model, _ = ChunkSSLTask.build_model_from_file("exp/ssl/config.yaml",
                                                  "exp/ssl/valid.loss.ave.pth", "cpu")
    before = _valid_loss(model, wavs)
    _pack("ssl", "--ssl_train_config", "exp/ssl/config.yaml", "--ssl_model_file",
          "exp/ssl/valid.loss.ave.pth", "--option", "tok/feats_stats.npz",
          "--outpath", "packed/ssl.zip")
    shutil.move("exp/ssl", "moved_ssl")  # the experiment is gone from where it was trained
    shutil.rmtree("tok")
    from espnet2.main_funcs.pack_funcs import unpack

    files = unpack("packed/ssl.zip", root / "elsewhere")
    model, _ = ChunkSSLTask.build_model_from_file(files["ssl_train_config"],
                                                  files["ssl_model_file"], "cpu")
    assert model.tokenizer is not None and bool(model.tokenizer.fitted)
    assert _valid_loss(model, wavs) == pytest.approx(before, abs=1e-6)
    shutil.move("moved_ssl", "exp/ssl")


def test_packed_asr_model_decodes_the_same(root, librivox_dir, tmp_path):
    """Fine-tune (1 epoch) from the SSL encoder, pack, unpack elsewhere: same hypotheses."""
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.main_funcs.pack_funcs import unpack

    from chunkssl_espnet.data.tokens import write_char_token_list
    from chunkssl_espnet.features import load_wav

    work = tmp_path / "asr_root"
    work.mkdir()
    shutil.copytree(root[1] / "tok", work / "stats")
    d = work / "data"
    d.mkdir()
    wavs = sorted(librivox_dir.glob("*.wav"))
    texts = {}
    for line in (librivox_dir / "transcription").read_text().splitlines():
        words, utt = line.rsplit("(", 1)
        texts[utt.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    (d / "wav.scp").write_text("".join(f"{w.stem} {w}\n" for w in wavs))
    (d / "text").write_text("".join(f"{w.stem} {texts[w.stem]}\n" for w in wavs))
    (d / "speech_shape").write_text(
        "".join(f"{w.stem} {load_wav(w)[0].numel()}\n" for w in wavs))
    write_char_token_list(d / "text", work / "tokens.txt")
    ssl = root[0] / "exp/ssl/valid.loss.ave.pth"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with one_thread():
            ChunkASRTask.main(cmd=[
                "--config", str(REPO / "conf/asr_chunk_tiny.yaml"), *COMMON,
                "--encoder_conf", "output_size=32", "--encoder_conf", "attention_heads=2",
                "--encoder_conf", "linear_units=64", "--encoder_conf", "num_blocks=1",
                "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=64",
                "--decoder_conf", "attention_heads=2",
                "--normalize_conf", "stats_file=stats/feats_stats.npz",
                "--token_list", "tokens.txt", "--token_type", "char",
                "--train_data_path_and_name_and_type", "data/wav.scp,speech,sound",
                "--train_data_path_and_name_and_type", "data/text,text,text",
                "--valid_data_path_and_name_and_type", "data/wav.scp,speech,sound",
                "--valid_data_path_and_name_and_type", "data/text,text,text",
                "--train_shape_file", "data/speech_shape", "--valid_shape_file",
                "data/speech_shape", "--output_dir", "exp/asr", "--max_epoch", "1",
                "--init_param", f"{ssl}:encoder:encoder",
            ])  # fmt: skip
            model_file = next(Path("exp/asr").glob("*.ave.pth"))
            audio = [load_wav(w)[0].numpy() for w in wavs]

            def decode(config, model):
                s2t = Speech2Text(config, model, device="cpu", beam_size=2, ctc_weight=0.5,
                                  maxlenratio=0.3, nbest=1)
                return [s2t(a)[0][2] for a in audio]

            before = decode("exp/asr/config.yaml", str(model_file))
            _pack("asr", "--asr_train_config", "exp/asr/config.yaml", "--asr_model_file",
                  str(model_file), "--option", "stats/feats_stats.npz",
                  "--outpath", "packed/asr.zip")
        files = unpack(work / "packed/asr.zip", tmp_path / "unpacked")
    finally:
        os.chdir(cwd)
    shutil.rmtree(work)  # nothing of the training folder remains
    with one_thread():
        after = decode(files["asr_train_config"], files["asr_model_file"])
    assert after == before


def test_tokenizer_fitted_under_other_mvn_is_refused(root, tmp_path):
    root, work = root
    stats = dict(np.load(work / "tok/feats_stats.npz"))
    stats["sum"] = stats["sum"] + stats["count"] * 0.5  # means shifted by 0.5
    np.savez(tmp_path / "other_stats.npz", **stats)
    with pytest.raises(ValueError, match="tokenizer.*fitted on features normalised") as e:
        ChunkSSLTask.main(cmd=_ssl_cmd(work / "data", str(tmp_path / "x"),
                                       str(tmp_path / "other_stats.npz"), str(work / "tok")))
    assert str(work / "tok") in str(e.value) and "other_stats.npz" in str(e.value)

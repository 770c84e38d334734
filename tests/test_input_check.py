"""The checks run by the entry points before ESPnet reads their inputs (bin/input_check.py):
the sample rate comes from the config and the command line as ESPnet merges them, transcripts
are checked per phase, and unknown config keys are named with the file (or the command line)
that holds them."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from chunkssl_espnet.bin.input_check import (
    DEFAULT_FS,
    check_data_inputs,
    option_value,
)
from chunkssl_espnet.data.datadir import DataDirError, write_data_dir

REPO = Path(__file__).resolve().parents[1]


def _data(tmp_path: Path, rate: int = 16000, texts=("A B", "C D")) -> Path:
    wavs = {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i in range(len(texts)):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, np.zeros(rate // 2, dtype=np.int16), rate)
        wavs[f"u{i}"] = str(path)
    return write_data_dir(tmp_path / "data", wavs, {u: "s" for u in wavs},
                          {"text": dict(zip(wavs, texts))})


def _streams(d: Path, phase: str = "train", text: bool = True):
    out = [f"--{phase}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound"]
    return out + ([f"--{phase}_data_path_and_name_and_type", f"{d}/text,text,text"]
                  if text else [])


def test_default_rate_is_the_features_rate() -> None:
    from chunkssl_espnet.features import SAMPLE_RATE

    assert DEFAULT_FS == SAMPLE_RATE


def test_sample_rate_from_config_then_command_line(tmp_path: Path) -> None:
    d = _data(tmp_path)
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"frontend_conf": {"fs": 8000, "n_mels": 80}}))
    check_data_inputs(_streams(d))  # no config: the features' 16 kHz
    with pytest.raises(DataDirError, match="'u0'.*16000 Hz, but the model expects 8000 Hz"):
        check_data_inputs(["--config", str(conf), *_streams(d)])
    # the command line wins over the config, as in ESPnet (--frontend_conf key=value)
    check_data_inputs(["--config", str(conf), "--frontend_conf", "fs=16000", *_streams(d)])
    with pytest.raises(DataDirError, match="expects 22050 Hz"):
        check_data_inputs([*_streams(d, "valid"), "--frontend_conf", "fs=22050"])
    with pytest.raises(ValueError, match="frontend_conf.fs must be a whole number"):
        check_data_inputs(["--frontend_conf", "fs=16k", *_streams(d)])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        check_data_inputs(["--config", str(tmp_path / "nope.yaml")])


def test_transcripts_are_checked_per_phase(tmp_path: Path) -> None:
    good = _data(tmp_path / "good")
    bad = _data(tmp_path / "bad", texts=("A B", " "))
    check_data_inputs([*_streams(good), *_streams(good, "valid")])
    check_data_inputs([*_streams(good), *_streams(bad, "valid", text=False)])  # no text read
    with pytest.raises(DataDirError, match=r"bad/data/text: empty transcript for utterance 'u1'"):
        check_data_inputs([*_streams(good), *_streams(bad, "valid")])


def test_option_value() -> None:
    argv = ["--asr_train_config", "a.yaml", "--beam_size", "2", "--asr_train_config", "b.yaml"]
    assert option_value(argv, "--asr_train_config") == "b.yaml"
    assert option_value(argv, "--st_train_config") is None


def test_bin_training_refuses_8k_audio_before_espnet_runs(tmp_path: Path) -> None:
    """``python -m chunkssl_espnet.bin.asr_train`` itself (not only the recipe) refuses."""
    from chunkssl_espnet.bin.asr_train import main

    d = _data(tmp_path, rate=8000)
    with pytest.raises(SystemExit, match=r"^error: .*wav.scp: utterance 'u0' .*u0.wav\) is "
                                         "sampled at 8000 Hz"):
        main(["--config", str(REPO / "conf/asr_chunk_tiny.yaml"), *_streams(d),
              "--output_dir", str(tmp_path / "exp")])
    assert not (tmp_path / "exp").exists()


def test_config_keys_named_with_their_file(tmp_path: Path) -> None:
    from chunkssl_espnet.bin import load_plugin
    from chunkssl_espnet.bin.input_check import check_model_config, check_training_config

    plugin = load_plugin()
    tasks = {"ssl": plugin.ChunkSSLTask, "asr": plugin.ChunkASRTask, "st": plugin.ChunkSTTask}
    for shipped in sorted((REPO / "conf").glob("*_chunk_*.yaml")):  # no false alarm
        check_training_config(tasks[shipped.name.split("_")[0]], ["--config", str(shipped)])
    conf = REPO / "conf/ssl_chunk_tiny.yaml"
    argv = ["--config", str(conf), "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match=r"^the command line \(--encoder_conf\): encoder_conf: "
                                         "unknown key 'chunk_sizez' for encoder: chunk_conformer"):
        check_training_config(plugin.ChunkSSLTask, [*argv, "--encoder_conf", "chunk_sizez=4"])
    values = yaml.safe_load(conf.read_text())
    values["loss"][0]["conf"]["group_sizee"] = 3
    values["frontend_conf"]["n_mel"] = 80
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=f"^{bad}: frontend_conf: unknown key 'n_mel' for "
                                         "frontend: kaldi_fbank"):
        check_training_config(plugin.ChunkSSLTask, ["--config", str(bad)])
    del values["frontend_conf"]["n_mel"]
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=f"^{bad}: loss: unknown key 'group_sizee' for "
                                         r"loss\[0\]: group_fsq"):
        check_training_config(plugin.ChunkSSLTask, ["--config", str(bad)])
    # a model's config.yaml, as decoding reads it: its top-level keys are checked too
    values = vars(plugin.ChunkSSLTask.get_parser().parse_args(argv))
    model = tmp_path / "config.yaml"
    model.write_text(yaml.safe_dump({**values, "version": "x", "distributed": False}))
    check_model_config(plugin.ChunkSSLTask, model)
    model.write_text(yaml.safe_dump({**values, "encoderr": "chunk_conformer"}))
    with pytest.raises(ValueError, match=f"^{model}: unknown top-level key 'encoderr'"):
        check_model_config(plugin.ChunkSSLTask, model)


def test_library_functions_raise_and_only_mains_exit(tmp_path: Path) -> None:
    """Library code raises exceptions a caller can handle; ``main()`` alone turns them into
    an ``error: ...`` line and an exit status."""
    from chunkssl_espnet.bin.chunk_override import split_chunk_options
    from chunkssl_espnet.bin.input_check import exit_on_input_error
    from chunkssl_espnet.stream_decode import decode_data_dir

    with pytest.raises(ValueError, match="need --asr_train_config and --output_dir"):
        split_chunk_options(["--decoding_chunk_size", "8"], "--asr_train_config")
    with pytest.raises(FileNotFoundError, match="nope.yaml: training config not found"):
        split_chunk_options(["--decoding_chunk_size", "8", "--asr_train_config",
                             str(tmp_path / "nope.yaml"), "--output_dir", str(tmp_path)],
                            "--asr_train_config")
    with pytest.raises(FileNotFoundError, match="nodir/wav.scp not found"):
        decode_data_dir(None, str(tmp_path / "nodir"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "wav.scp").write_text("")
    with pytest.raises(DataDirError, match="lists no utterance"):
        decode_data_dir(None, str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(SystemExit, match="^error: .*lists no utterance$"):
        with exit_on_input_error():
            decode_data_dir(None, str(tmp_path / "empty"), str(tmp_path / "out"))

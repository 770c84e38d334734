"""Speed perturbation of a data directory, on real LibriVox audio and the real sox."""

import shutil
from pathlib import Path

import pytest
import soundfile

from chunkssl_espnet.data import cli
from chunkssl_espnet.data.datadir import read_scp, write_data_dir, write_utt2num_samples
from chunkssl_espnet.data.speed_perturb import speed_perturb_data_dir

pytestmark = pytest.mark.skipif(shutil.which("sox") is None,
                                reason="needs sox (apt-get install sox)")


def _data_dir(tmp_path: Path, librivox_dir: Path, n: int = 2) -> Path:
    wavs = sorted(librivox_dir.glob("*.wav"))[:n]
    utts = {f"spk{i}-utt{i}": str(w) for i, w in enumerate(wavs)}
    d = write_data_dir(tmp_path / "train", utts, {u: u.split("-")[0] for u in utts},
                       texts={"text": {u: f"WORDS OF {u.upper()}" for u in utts}})
    write_utt2num_samples(d)
    return d


def test_speed_perturbation_writes_kaldi_ids_lengths_and_transcripts(
    tmp_path: Path, librivox_dir: Path
) -> None:
    src = _data_dir(tmp_path, librivox_dir)
    dst = speed_perturb_data_dir(src, tmp_path / "train_sp", [0.9, 1.0, 1.1], tmp_path / "sp")
    wav, spk, text = (read_scp(dst / n) for n in ("wav.scp", "utt2spk", "text"))
    n_src = read_scp(src / "utt2num_samples")
    n_dst = read_scp(dst / "utt2num_samples")
    assert sorted(wav) == sorted(f"{p}{u}" for p in ("", "sp0.9-", "sp1.1-") for u in n_src)
    for utt, n in n_src.items():
        assert wav[utt] == read_scp(src / "wav.scp")[utt]  # factor 1 keeps the original
        for f in (0.9, 1.1):
            new = f"sp{f:g}-{utt}"
            assert spk[new] == f"sp{f:g}-{utt.split('-')[0]}" and text[new] == text[utt]
            # sox speed f resamples: the copy lasts 1/f of the original, to a few samples
            assert abs(int(n_dst[new]) - int(n) / f) < 0.002 * int(n)
            assert soundfile.info(wav[new]).samplerate == 16000
    # a re-run keeps the copies (newer than their sources) and writes the same directory
    stamp = {u: Path(p).stat().st_mtime_ns for u, p in wav.items()}
    before = (dst / "wav.scp").read_text()
    speed_perturb_data_dir(src, dst, [0.9, 1.0, 1.1], tmp_path / "sp")
    assert {u: Path(p).stat().st_mtime_ns for u, p in wav.items()} == stamp
    assert (dst / "wav.scp").read_text() == before


def test_speed_perturbation_errors_name_the_problem(tmp_path: Path, librivox_dir: Path) -> None:
    src = _data_dir(tmp_path, librivox_dir, n=1)
    with pytest.raises(ValueError, match="distinct and positive"):
        speed_perturb_data_dir(src, tmp_path / "x", [0.9, 0.9], tmp_path / "sp")
    utt = next(iter(read_scp(src / "wav.scp")))
    (src / "wav.scp").write_text(f"{utt} sox in.wav -t wav - speed 0.9 |\n")
    with pytest.raises(ValueError, match=f"utterance {utt} is a pipe command"):
        speed_perturb_data_dir(src, tmp_path / "x", [1.1], tmp_path / "sp")


def test_speed_perturbation_command_line(tmp_path: Path, librivox_dir: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    src = _data_dir(tmp_path, librivox_dir, n=1)
    assert cli.main(["speed-perturb", str(src), str(tmp_path / "sp_dir"), "--factors", "1.1",
                     "--audio-dir", str(tmp_path / "sp")]) == 0
    assert "OK, 1 utterances" in capsys.readouterr().out
    assert list(read_scp(tmp_path / "sp_dir" / "wav.scp")) == ["sp1.1-spk0-utt0"]

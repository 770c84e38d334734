"""Kaldi-style data directory tools: validation errors name file/line/id, fix, split, subset;
the atomic writers."""

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile

from chunkssl_espnet.data.datadir import (
    DataDirError,
    atomic_path,
    atomic_write_text,
    check_sample_rates,
    fix_data_dir,
    read_audio_headers,
    read_scp,
    split_scp,
    subset_data_dir,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_data_dir,
    write_scp,
    write_utt2num_samples,
)


def make_dir(tmp_path: Path, n: int = 4, segments: bool = False) -> Path:
    """A valid data dir with ``n`` utterances of two speakers and real wav files."""
    wav_dir = tmp_path / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav: Dict[str, str] = {}
    seg: Optional[Dict[str, str]] = {} if segments else None
    utt2spk, text = {}, {}
    for i in range(n):
        spk = f"spk{i % 2}"
        utt = f"{spk}-utt{i}"
        rec = f"{spk}-rec{i}"
        path = wav_dir / f"{utt}.wav"
        soundfile.write(path, np.zeros(1600 * (i + 1), dtype=np.int16), 16000)
        if seg is not None:
            wav[rec] = str(path)
            seg[utt] = f"{rec} 0.00 0.05"
        else:
            wav[utt] = str(path)
        utt2spk[utt] = spk
        text[utt] = f"WORDS OF {i}"
    return write_data_dir(tmp_path / "data", wav, utt2spk, {"text": text}, seg)


def test_atomic_path_replaces_on_success_only(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "stats.npz"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.suffix == ".npz" and not tmp.exists()
        np.savez(tmp, x=np.arange(3))  # numpy would add .npz to a name without it
    assert np.load(out)["x"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert np.load(out)["x"].tolist() == [0, 1, 2]  # the old file is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["stats.npz"]  # no temporary left
    assert atomic_write_text(tmp_path / "t", "é\n").read_bytes() == "é\n".encode()


def test_write_scp_sorts_in_c_order(tmp_path: Path) -> None:
    write_scp(tmp_path / "f", {"b": "2", "B": "1", "a-1": "x", "a": "y"})
    assert [line.split()[0] for line in open(tmp_path / "f")] == ["B", "a", "a-1", "b"]
    with pytest.raises(DataDirError, match="invalid id"):
        write_scp(tmp_path / "g", {"has space": "1"})


def test_utt2spk_to_spk2utt() -> None:
    assert utt2spk_to_spk2utt({"b-2": "b", "a-1": "a", "b-1": "b"}) == {
        "a": ["a-1"], "b": ["b-1", "b-2"]}


def test_valid_dir_passes(tmp_path: Path) -> None:
    assert validate_data_dir(make_dir(tmp_path)) == 4
    assert validate_data_dir(make_dir(tmp_path / "s", segments=True)) == 4


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("text", "spk1-utt1 A\nspk0-utt0 B\nspk0-utt2 C\nspk1-utt3 D\n",
         r"text:2: id 'spk0-utt0'.*not sorted"),
        ("text", "spk0-utt0 A\nspk0-utt0 B\n", r"text:2: duplicated id 'spk0-utt0'"),
        ("text", "spk0-utt0 A\nspk0-utt2\nspk1-utt1 B\nspk1-utt3 C\n",
         r"text:2: empty transcript.*spk0-utt2"),
        ("text", "spk0-utt0 A\nspk1-utt1 B\nspk1-utt3 C\n",
         r"text: utterance 'spk0-utt2'.*missing"),
        ("spk2utt", "spk0 spk0-utt0\nspk1 spk1-utt1 spk1-utt3\n", r"spk2utt:1:.*'spk0' disagree"),
        ("utt2spk", "spk0-utt0 spk0\nspk0-utt2 spk0\nspk1-utt1\nspk1-utt3 spk1\n",
         r"utt2spk:3:.*spk1-utt1"),
    ],
)
def test_validation_errors_name_file_line_and_id(tmp_path: Path, name: str, content: str,
                                                 match: str) -> None:
    d = make_dir(tmp_path)
    (d / name).write_text(content)
    with pytest.raises(DataDirError, match=match):
        validate_data_dir(d)


def test_missing_audio_and_text(tmp_path: Path) -> None:
    d = make_dir(tmp_path)
    Path(read_scp(d / "wav.scp")["spk1-utt3"]).unlink()
    with pytest.raises(DataDirError, match=r"wav.scp: audio file for 'spk1-utt3' does not exist"):
        validate_data_dir(d)
    assert validate_data_dir(d, check_audio=False) == 4
    (d / "text").unlink()
    with pytest.raises(FileNotFoundError, match="text: transcript file is missing"):
        validate_data_dir(d, check_audio=False)
    assert validate_data_dir(d, need_text=False, check_audio=False) == 4
    with pytest.raises(FileNotFoundError, match="data directory does not exist"):
        validate_data_dir(tmp_path / "nope")


def test_bad_segments(tmp_path: Path) -> None:
    d = make_dir(tmp_path, segments=True)
    (d / "segments").write_text(
        "spk0-utt0 spk0-rec0 0 0.05\nspk0-utt2 spk0-rec2 0.3 0.1\nspk1-utt1 spk1-rec1 0 1\n"
        "spk1-utt3 spk1-rec3 0 1\n")
    with pytest.raises(DataDirError, match=r"segments:2: utterance 'spk0-utt2' has start"):
        validate_data_dir(d)


def test_fix_data_dir_keeps_intersection(tmp_path: Path) -> None:
    d = make_dir(tmp_path)
    (d / "text").write_text("spk1-utt3 D\nspk0-utt0 A\nspk1-utt1\nspk9-x Z\n")  # unsorted, empty
    (d / "spk2utt").write_text("junk junk\n")
    assert fix_data_dir(d) == 2
    assert list(read_scp(d / "utt2spk")) == ["spk0-utt0", "spk1-utt3"]
    assert list(read_scp(d / "wav.scp")) == ["spk0-utt0", "spk1-utt3"]
    assert read_scp(d / "spk2utt") == {"spk0": "spk0-utt0", "spk1": "spk1-utt3"}
    assert validate_data_dir(d) == 2


def test_split_and_subset(tmp_path: Path) -> None:
    d = make_dir(tmp_path, n=5, segments=True)
    parts = split_scp(d / "segments", 2, tmp_path / "split")
    assert [p.name for p in parts] == ["segments.1", "segments.2"]
    assert [len(read_scp(p)) for p in parts] == [2, 3]
    assert split_scp(d / "wav.scp", 5, tmp_path / "split")[0].name == "wav.1.scp"
    with pytest.raises(DataDirError, match="cannot split 5 lines into 6 parts"):
        split_scp(d / "wav.scp", 6, tmp_path / "split")
    assert subset_data_dir(d, tmp_path / "sub", n=2) == 2
    assert validate_data_dir(tmp_path / "sub") == 2
    assert len(read_scp(tmp_path / "sub" / "wav.scp")) == 2
    assert subset_data_dir(d, tmp_path / "sub2", ids=["spk1-utt3"]) == 1
    with pytest.raises(DataDirError, match="unknown utterance ids, e.g. 'nope'"):
        subset_data_dir(d, tmp_path / "sub3", ids=["nope"])


def test_utt2num_samples(tmp_path: Path) -> None:
    d = make_dir(tmp_path, n=3)
    write_utt2num_samples(d)
    assert read_scp(d / "utt2num_samples") == {"spk0-utt0": "1600", "spk0-utt2": "4800",
                                               "spk1-utt1": "3200"}
    s = make_dir(tmp_path / "s", n=2, segments=True)
    write_utt2num_samples(s)
    assert set(read_scp(s / "utt2num_samples").values()) == {"800"}
    assert validate_data_dir(s) == 2


def test_check_sample_rates_names_file_and_utterance(tmp_path: Path) -> None:
    d = make_dir(tmp_path, n=3)
    assert check_sample_rates(d / "wav.scp", 16000) == 3
    wav = read_scp(d / "wav.scp")
    soundfile.write(wav["spk0-utt2"], np.zeros(800, dtype=np.int16), 8000)
    with pytest.raises(DataDirError, match=r"wav.scp: utterance 'spk0-utt2' \(.*spk0-utt2.wav\) "
                                           r"is sampled at 8000 Hz, but the model expects 16000"):
        check_sample_rates(d / "wav.scp", 16000)
    with pytest.raises(DataDirError, match="'spk0-utt0'.*16000 Hz, but the model expects 8000"):
        check_sample_rates(d / "wav.scp", 8000)
    Path(wav["spk1-utt1"]).write_bytes(b"RIFF not a wave file")
    with pytest.raises(DataDirError, match="cannot read audio of utterance 'spk1-utt1'"):
        read_audio_headers(d / "wav.scp")
    Path(wav["spk1-utt1"]).unlink()
    with pytest.raises(DataDirError, match="audio file of utterance 'spk1-utt1' not found"):
        read_audio_headers(d / "wav.scp")

"""Corpus preparation on generated replicas of the LibriSpeech, Libri-Light and MuST-C layouts."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from chunkssl_espnet.data.datadir import DataDirError, read_scp, validate_data_dir
from chunkssl_espnet.data.librilight import pack_voice_activity, prepare_librilight
from chunkssl_espnet.data.librispeech import prepare_librispeech
from chunkssl_espnet.data.must_c import prepare_must_c

SR = 16000


def tone(path: Path, seconds: float, freq: float = 220.0) -> Path:
    """A short sine wave; the format (wav or flac) follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * freq * t), SR, subtype="PCM_16")
    return path


# --- LibriSpeech -----------------------------------------------------------------------------
def librispeech(root: Path) -> Path:
    """``LibriSpeech/dev-clean/<spk>/<chapter>/`` with two chapters of two utterances each."""
    for spk, chapter in (("1272", "128104"), ("2035", "147960")):
        chap = root / "LibriSpeech" / "dev-clean" / spk / chapter
        lines = []
        for k in range(2):
            utt = f"{spk}-{chapter}-{k:04d}"
            tone(chap / f"{utt}.flac", 0.2 + 0.1 * k)
            lines.append(f"{utt} MISTER QUILTER IS THE APOSTLE NUMBER {k}")
        (chap / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech(tmp_path: Path) -> None:
    root = librispeech(tmp_path / "db")
    out = prepare_librispeech(root, tmp_path / "data", ["dev-clean"])["dev-clean"]
    assert out == tmp_path / "data" / "dev_clean"
    assert validate_data_dir(out) == 4
    assert read_scp(out / "utt2spk")["2035-147960-0001"] == "2035-147960"
    assert read_scp(out / "text")["1272-128104-0000"] == "MISTER QUILTER IS THE APOSTLE NUMBER 0"
    assert read_scp(out / "wav.scp")["1272-128104-0000"].endswith("1272-128104-0000.flac")
    # the LibriSpeech folder itself is accepted as root
    prepare_librispeech(root / "LibriSpeech", tmp_path / "data2", "dev-clean")


def test_librispeech_subset_listed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the recipe lists its training, validation and test subsets, which may overlap
    from chunkssl_espnet.data import librispeech as module

    calls = []
    prepare_subset = module.prepare_librispeech_subset
    monkeypatch.setattr(module, "prepare_librispeech_subset",
                        lambda *a, **k: calls.append(a[2]) or prepare_subset(*a, **k))
    root = librispeech(tmp_path / "db")
    out = prepare_librispeech(root, tmp_path / "data", ["dev-clean", "dev-clean"])
    assert list(out) == ["dev-clean"] and calls == ["dev-clean"]


def test_librispeech_errors(tmp_path: Path) -> None:
    root = librispeech(tmp_path / "db")
    with pytest.raises(FileNotFoundError, match="not a LibriSpeech root"):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "data", ["dev-clean"])
    with pytest.raises(FileNotFoundError, match="subset 'test-clean' does not exist"):
        prepare_librispeech(root, tmp_path / "data", ["test-clean"])
    chap = root / "LibriSpeech" / "dev-clean" / "2035" / "147960"
    (chap / "2035-147960-0001.flac").unlink()
    with pytest.raises(FileNotFoundError, match="audio of '2035-147960-0001' is missing"):
        prepare_librispeech(root, tmp_path / "data", ["dev-clean"])
    (chap / "2035-147960.trans.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"147960.trans.txt: transcript file is missing"):
        prepare_librispeech(root, tmp_path / "data", ["dev-clean"])


# --- Libri-Light -----------------------------------------------------------------------------
def librilight(root: Path) -> Path:
    """``small/<speaker>/<book>/<name>.flac`` plus ``<name>.json`` with voice activity."""
    for spk, book, name, vad in (
        ("100", "sea_fairies_0812_librivox_64kb_mp3", "01_baum_sea_fairies_64kb",
         [[0.1, 0.9], [1.0, 1.6], [1.8, 2.9]]),
        ("1001", "gods_country_0904_librivox_64kb_mp3", "03_curwood_64kb", [[0.0, 2.5]]),
    ):
        tone(root / "small" / spk / book / f"{name}.flac", 3.0)
        meta = {"speaker": spk, "book_meta": {"id": "1"}, "snr": 9.5, "voice_activity": vad}
        (root / "small" / spk / book / f"{name}.json").write_text(json.dumps(meta))
    return root


def test_librilight_whole_files_and_segments(tmp_path: Path) -> None:
    root = librilight(tmp_path / "ll")
    out = prepare_librilight(root, tmp_path / "whole", "small")
    assert validate_data_dir(out, need_text=False) == 2
    assert not (out / "text").exists() and not (out / "segments").exists()
    assert set(read_scp(out / "utt2spk").values()) == {"100", "1001"}
    seg = prepare_librilight(root, tmp_path / "seg", "small", max_segment_s=1.2, min_segment_s=0.5)
    segments = read_scp(seg / "segments")
    # speaker 100: VAD [0.1, 0.9] alone (merging [1.0, 1.6] would exceed 1.2 s), [1.0, 1.6],
    # [1.8, 2.9]; speaker 1001: the 2.5 s interval cut into 1.2 + 1.2 (+ 0.1 s, dropped).
    assert [v.split(maxsplit=1)[1] for v in segments.values()] == [
        "0.10 0.90", "1.00 1.60", "1.80 2.90", "0.00 1.20", "1.20 2.40"]
    assert validate_data_dir(seg, need_text=False) == 5


def test_pack_voice_activity() -> None:
    assert pack_voice_activity([[0, 1], [1.5, 2], [2.2, 5]], 4.0, 2.5) == [(0, 2), (2.2, 4.0)]


def test_librilight_errors(tmp_path: Path) -> None:
    root = librilight(tmp_path / "ll")
    with pytest.raises(FileNotFoundError, match="subset 'small' not found"):
        prepare_librilight(tmp_path / "nowhere", tmp_path / "data", "small")
    book = root / "small" / "1001" / "gods_country_0904_librivox_64kb_mp3"
    (book / "03_curwood_64kb.flac").unlink()
    with pytest.raises(FileNotFoundError, match="03_curwood_64kb.flac: audio file is missing"):
        prepare_librilight(root, tmp_path / "data", "small")
    tone(book / "03_curwood_64kb.flac", 1.0)
    (book / "03_curwood_64kb.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"03_curwood_64kb.json: metadata .* missing"):
        prepare_librilight(root, tmp_path / "data", "small")


# --- MuST-C ----------------------------------------------------------------------------------
def must_c(root: Path, split: str = "dev") -> Path:
    """``en-de/data/<split>/{wav/ted_*.wav, txt/<split>.{yaml,en,de}}``: two talks, 3 segments."""
    d = root / "en-de" / "data" / split
    tone(d / "wav" / "ted_767.wav", 3.0)
    tone(d / "wav" / "ted_1001.wav", 2.0)
    yaml = [
        "- {duration: 1.200000, offset: 0.300000, rW: 5, uW: 0, speaker_id: spk.767, "
        "wav: ted_767.wav}",
        "- {duration: 1.000000, offset: 1.700000, rW: 4, uW: 0, speaker_id: spk.767, "
        "wav: ted_767.wav}",
        "- {duration: 1.500000, offset: 0.000000, rW: 6, uW: 0, speaker_id: spk.1001, "
        "wav: ted_1001.wav}",
    ]
    en = ["Hello, world: it's me.", "(Laughter) Thank you!", "So, we begin here."]
    de = ["Hallo Welt, ich bin es.", "(Lachen) Danke schön!", "Also, wir beginnen hier."]
    (d / "txt").mkdir(parents=True)
    for name, lines in ((f"{split}.yaml", yaml), (f"{split}.en", en), (f"{split}.de", de)):
        (d / "txt" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_must_c(tmp_path: Path) -> None:
    root = must_c(tmp_path / "MUSTC_v1.0")
    out = prepare_must_c(root, tmp_path / "data", "en-de", ["dev"])["dev"]
    assert out.name == "dev.en-de"
    assert validate_data_dir(out) == 3
    segments = read_scp(out / "segments")
    assert segments["spk.767-ted_767-00001700-00002700"] == "ted_767 1.700 2.700"
    assert list(read_scp(out / "wav.scp")) == ["ted_1001", "ted_767"]
    de = read_scp(out / "text.tc.de")
    assert de["spk.767-ted_767-00000300-00001500"] == "Hallo Welt, ich bin es."
    lc = read_scp(out / "text.lc.rm.en")
    assert lc["spk.767-ted_767-00000300-00001500"] == "hello world it's me"
    assert read_scp(out / "utt2spk")["spk.1001-ted_1001-00000000-00001500"] == "spk.1001"


def test_must_c_errors(tmp_path: Path) -> None:
    root = must_c(tmp_path / "MUSTC_v1.0")
    with pytest.raises(FileNotFoundError, match="not a MuST-C root"):
        prepare_must_c(tmp_path / "nowhere", tmp_path / "data", "en-de", ["dev"])
    with pytest.raises(FileNotFoundError, match="split 'train' does not exist"):
        prepare_must_c(root, tmp_path / "data", "en-de", ["train"])
    txt = root / "en-de" / "data" / "dev" / "txt"
    (txt / "dev.de").write_text("Nur eine Zeile.\n")
    with pytest.raises(DataDirError, match="dev.de has 1 lines but .*dev.yaml lists 3 segments"):
        prepare_must_c(root, tmp_path / "data", "en-de", ["dev"])
    (txt / "dev.de").unlink()
    with pytest.raises(FileNotFoundError, match=r"dev.de: transcript file is missing"):
        prepare_must_c(root, tmp_path / "data", "en-de", ["dev"])
    must_c(tmp_path / "again")
    (tmp_path / "again" / "en-de" / "data" / "dev" / "wav" / "ted_1001.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"ted_1001.wav: audio file listed at .*yaml:3"):
        prepare_must_c(tmp_path / "again", tmp_path / "data", "en-de", ["dev"])

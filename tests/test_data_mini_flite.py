"""The flite mini corpora: a handful of sentences, real synthesis, format, splits, idempotence."""

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from chunkssl_espnet.data import mini_flite
from chunkssl_espnet.data.datadir import read_scp, validate_data_dir

needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="flite is not installed (apt-get install flite)")
needs_fortunes = pytest.mark.skipif(not (mini_flite.FORTUNE_DIR / "fortunes").is_file(),
                                    reason="fortunes not installed (apt-get install fortunes-min "
                                           "fortunes)")
needs_freedict = pytest.mark.skipif(not mini_flite.FREEDICT_DICT.is_file(),
                                    reason="apt-get install dict-freedict-eng-deu")


# Our own lines in the packages' formats (the packages' text is GPL and stays out of the repo).
FORTUNES = """Every good cook knows when to leave the kitchen alone.
%
Small rivers run quietly past the old stone mill.  -- A. Nobody
%
Too short here.
A sentence with 42 digits is dropped by the filter here.
Patience is the art of waiting while doing something useful!
%
The cat slept on the warm windowsill all afternoon long.
%
Bright stars shine above the sleeping little village tonight.
"""
DICT = """apple /apl/
 Apfel {m}
      "The apple fell far from the tree today."  - Der Apfel fiel heute weit vom Stamm.
      "She reads a long book every single week."  - Sie liest jede Woche ein langes Buch.
      "He bought sth. for the old house."  - Er kaufte etw. für das alte Haus.
      "We walked home through the quiet park."  - Wir gingen durch den ruhigen Park nach Hause.
      "The train leaves at noon on Sundays."  - Der Zug fährt, mittags, sonntags.
      "My brother plays the piano every evening."  - Mein Bruder spielt jeden Abend Klavier.
"""


def fortune_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "fortunes").write_text(FORTUNES)
    return d


def dict_file(tmp_path: Path) -> Path:
    path = tmp_path / "freedict-eng-deu.dict.dz"
    path.write_bytes(gzip.compress(DICT.encode("utf-8")))
    return path


def test_loaders_on_replicas(tmp_path: Path) -> None:
    assert mini_flite.load_fortune_sentences(fortune_dir(tmp_path), ["fortunes"]) == [
        "Every good cook knows when to leave the kitchen alone.",
        "Small rivers run quietly past the old stone mill.",
        "Patience is the art of waiting while doing something useful!",
        "The cat slept on the warm windowsill all afternoon long.",
        "Bright stars shine above the sleeping little village tonight.",
    ]
    pairs = mini_flite.load_freedict_pairs(dict_file(tmp_path))
    assert [en for en, _ in pairs] == [
        "The apple fell far from the tree today.", "She reads a long book every single week.",
        "We walked home through the quiet park.", "My brother plays the piano every evening."]
    assert pairs[3][1] == "Mein Bruder spielt jeden Abend Klavier."


@needs_fortunes
def test_fortune_sentences_are_clean() -> None:
    sentences = mini_flite.load_fortune_sentences()
    assert len(sentences) > 1000 and len(set(sentences)) == len(sentences)
    for s in sentences[:200]:
        assert re.fullmatch(r"[A-Z][A-Za-z ,;'-]+[.!?]", s) and 6 <= len(s.split()) <= 24


def test_plan_is_deterministic_and_holds_out_the_test_voice() -> None:
    items = [(f"Sentence number {i}.", {"text": f"SENTENCE NUMBER {i}"}) for i in range(30)]
    plan = mini_flite.plan_utterances(items, 20, 4, 6, test_voice="awb", seed=3)
    assert plan == mini_flite.plan_utterances(items, 20, 4, 6, test_voice="awb", seed=3)
    assert {u.voice for u in plan if u.split == "test"} == {"awb"}
    assert "awb" not in {u.voice for u in plan if u.split != "test"}
    test_text = {u.spoken for u in plan if u.split == "test"}
    assert not test_text & {u.spoken for u in plan if u.split != "test"}
    assert all(0.85 <= u.duration_stretch <= 1.15 and 85 <= u.f0_mean <= 210 for u in plan)
    with pytest.raises(ValueError, match="only 30 sentences"):
        mini_flite.plan_utterances(items, 30, 1, 1)


@needs_flite
def test_generate_mini_flite(tmp_path: Path) -> None:
    fortunes = fortune_dir(tmp_path)
    dirs = mini_flite.generate_mini_flite(tmp_path / "audio", tmp_path / "data", n_train=3,
                                          n_valid=1, n_test=1, seed=1, n_jobs=2,
                                          fortune_dir=fortunes, fortune_files=["fortunes"])
    assert sorted(dirs) == ["test", "train", "valid"]
    assert [validate_data_dir(dirs[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    assert list(read_scp(dirs["test"] / "utt2spk").values()) == ["awb"]
    for split in dirs.values():
        for utt, path in read_scp(split / "wav.scp").items():
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert read_scp(split / "utt2num_samples")[utt] == str(info.frames)
        for text in read_scp(split / "text").values():
            assert re.fullmatch(r"[A-Z' ]+", text)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").glob("*/*.wav")}
    assert mini_flite.synthesize_all(
        mini_flite.plan_utterances(
            [(s, {}) for s in mini_flite.load_fortune_sentences(fortunes, ["fortunes"])], 3, 1,
            1, seed=1),
        tmp_path / "audio") == 0  # idempotent: nothing re-synthesised
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").glob("*/*.wav")}


@needs_freedict
def test_freedict_pairs() -> None:
    pairs = mini_flite.load_freedict_pairs()
    assert len(pairs) > 1000 and all(len(en.split()) >= 5 for en, _ in pairs)


@needs_flite
def test_generate_mini_st(tmp_path: Path) -> None:
    dirs = mini_flite.generate_mini_st(tmp_path / "audio", tmp_path / "data", n_train=2,
                                       n_valid=1, n_test=1, n_jobs=1,
                                       dict_path=dict_file(tmp_path))
    de = read_scp(dirs["train"] / "text.tc.de")
    en = read_scp(dirs["train"] / "text.tc.en")
    assert list(de) == list(en) and len(de) == 2
    assert validate_data_dir(dirs["test"]) == 1


@needs_flite
def test_unknown_voice_and_format_conversion(tmp_path: Path) -> None:
    plan = mini_flite.plan_utterances([("Hello there my friend.", {"text": "x"})], 0, 0, 1,
                                      voices=("nosuch",), test_voice="nosuch")
    with pytest.raises(RuntimeError, match="flite has no voice"):
        mini_flite.synthesize_all(plan, tmp_path)
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    wav = tmp_path / "stereo.wav"
    soundfile.write(wav, np.zeros((2205, 2)), 22050, subtype="FLOAT")
    mini_flite.ensure_format(wav)
    info = soundfile.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 1600)


def test_missing_flite_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"install the Debian package 'flite'"):
        mini_flite.synthesize("Hello.", "slt", tmp_path / "x.wav")
    with pytest.raises(FileNotFoundError, match="dict-freedict-eng-deu"):
        mini_flite.load_freedict_pairs(tmp_path / "none.dict.dz")


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox (apt-get install sox)")
def test_perturbation_is_repeatable(tmp_path: Path, librivox_dir: Path) -> None:
    """The same speed and pitch perturbation of the same file gives the same bytes twice (sox
    dithers with a random seed unless told -R), and changes the audio."""
    from chunkssl_espnet.data.voices import perturb

    src = sorted(librivox_dir.glob("*.wav"))[0]
    outs = []
    for i in range(2):
        wav = tmp_path / f"copy{i}.wav"
        shutil.copy(src, wav)
        perturb(wav, 1.1, 100.0)
        outs.append(wav.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != src.read_bytes()
    assert soundfile.info(tmp_path / "copy0.wav").samplerate == 16000

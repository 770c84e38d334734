"""Replicas of the LibriSpeech, Libri-Light and MuST-C layouts made of real speech, for the
end-to-end runs of the corpus recipes (tests/test_recipe_corpora_e2e.py).

The audio is the five LibriVox utterances of the Debian package pocketsphinx-testdata (24.7 s of
read English, 16 kHz, with transcripts; the ``librivox_dir`` fixture of conftest.py). Every subset
of a replica reuses them: a recipe run on a replica shows that every stage works, not what a model
learns. The layouts are those that ``chunkssl_espnet.data`` reads (see its ``librispeech``,
``librilight`` and ``must_c`` modules); tests/test_data_corpora.py has smaller, synthetic ones for
the error cases.
"""

import json
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile

SR = 16000
#: Silence between the utterances of a long file (Libri-Light) or a talk (MuST-C), seconds.
GAP_S = 0.3
#: German translations of the five LibriVox sentences (ids as in pocketsphinx's transcription).
GERMAN = {
    "0870": "Und Herr John Dashwood hatte dann Muße zu bedenken, wie viel er klugerweise für "
            "sie tun könnte.",
    "0880": "Er war kein übel gesinnter junger Mann.",
    "0890": "Es sei denn, eher kaltherzig und eher selbstsüchtig zu sein heißt, übel gesinnt "
            "zu sein.",
    "0920": "Hätte er eine liebenswürdigere Frau geheiratet, wäre er vielleicht noch "
            "angesehener geworden, als er war.",
    "0930": "Er hätte sogar selbst liebenswürdig werden können.",
}
#: The two shortest utterances (3.0 s and 3.3 s): the held-out and test subsets.
SHORT = ("0880", "0930")


def librivox_utterances(librivox_dir: Path) -> Dict[str, Tuple[np.ndarray, str]]:
    """``{short id: (samples, lower-case transcript)}`` of pocketsphinx's LibriVox test data
    (``<s> text </s> (sense_and_sensibility_01_austen_64kb-0870)`` lines)."""
    out = {}
    for line in (librivox_dir / "transcription").read_text().splitlines():
        m = re.fullmatch(r"<s> (.*) </s> \((\S+)\)", line.strip())
        if m is None:
            continue
        text, name = m.groups()
        audio, sr = soundfile.read(librivox_dir / f"{name}.wav", dtype="int16")
        assert sr == SR, f"{name}.wav: {sr} Hz"
        out[name.rsplit("-", 1)[1]] = (audio, " ".join(text.split()))
    assert sorted(out) == sorted(GERMAN), f"unexpected utterances in {librivox_dir}: {sorted(out)}"
    return out


def _concat(parts: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[Tuple[float, float]]]:
    """The parts one after the other with ``GAP_S`` of silence before each; their intervals."""
    gap = np.zeros(int(GAP_S * SR), dtype=np.int16)
    audio, spans, t = [], [], 0
    for p in parts:
        audio += [gap, p]
        t += len(gap)
        spans.append((t / SR, (t + len(p)) / SR))
        t += len(p)
    return np.concatenate(audio + [gap]), spans


def librispeech_replica(root: Path, librivox_dir: Path) -> Path:
    """``<root>/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/`` with flac
    files and ``<spk>-<chapter>.trans.txt``: all five utterances in train-clean-100, the two
    short ones in dev-clean and in test-clean (other speaker and chapter ids)."""
    utts = librivox_utterances(librivox_dir)
    for subset, spk, chapter, ids in (("train-clean-100", "103", "1240", sorted(utts)),
                                      ("dev-clean", "1272", "128104", SHORT),
                                      ("test-clean", "1089", "134686", SHORT)):
        chap = root / "LibriSpeech" / subset / spk / chapter
        chap.mkdir(parents=True)
        lines = []
        for k, short in enumerate(ids):
            audio, text = utts[short]
            utt = f"{spk}-{chapter}-{k:04d}"
            soundfile.write(chap / f"{utt}.flac", audio, SR, subtype="PCM_16")
            lines.append(f"{utt} {text.upper()}")
        (chap / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def librilight_replica(root: Path, librivox_dir: Path) -> Path:
    """``<root>/small/<speaker>/<book>/<name>.{flac,json}``: two long files (three and two
    utterances with silence between), each with its voice activity, as Libri-Light's."""
    utts = librivox_utterances(librivox_dir)
    for spk, book, name, ids in (
        ("100", "sense_sensibility_0870_librivox_64kb_mp3", "01_austen_64kb",
         ["0870", "0880", "0890"]),
        ("1001", "sense_sensibility_0920_librivox_64kb_mp3", "02_austen_64kb", ["0920", "0930"]),
    ):
        folder = root / "small" / spk / book
        folder.mkdir(parents=True)
        audio, spans = _concat([utts[i][0] for i in ids])
        soundfile.write(folder / f"{name}.flac", audio, SR, subtype="PCM_16")
        meta = {"speaker": spk, "book_meta": {"id": book}, "snr": 12.0,
                "voice_activity": [[round(a, 2), round(b, 2)] for a, b in spans]}
        (folder / f"{name}.json").write_text(json.dumps(meta))
    return root


def _sentence(text: str) -> str:
    """A transcript as MuST-C's true-case English: capitalised, with a full stop."""
    return text[0].upper() + text[1:].replace(" a amiable", " amiable") + "."


def must_c_replica(root: Path, librivox_dir: Path) -> Path:
    """``<root>/en-de/data/{train,dev,tst-COMMON}/{wav/<talk>.wav, txt/<split>.{yaml,en,de}}``:
    one talk per split (all five utterances in train, the two short ones in dev and tst-COMMON),
    one segment per utterance, English and German line-aligned with the yaml."""
    utts = librivox_utterances(librivox_dir)
    for split, talk, ids in (("train", 767, sorted(utts)), ("dev", 1001, SHORT),
                             ("tst-COMMON", 1096, SHORT)):
        d = root / "en-de" / "data" / split
        (d / "wav").mkdir(parents=True)
        (d / "txt").mkdir()
        audio, spans = _concat([utts[i][0] for i in ids])
        soundfile.write(d / "wav" / f"ted_{talk}.wav", audio, SR, subtype="PCM_16")
        yaml = [f"- {{duration: {b - a:.6f}, offset: {a:.6f}, rW: {len(utts[i][1].split())}, "
                f"uW: 0, speaker_id: spk.{talk}, wav: ted_{talk}.wav}}"
                for i, (a, b) in zip(ids, spans)]
        en = [_sentence(utts[i][1]) for i in ids]
        de = [GERMAN[i] for i in ids]
        for suffix, lines in (("yaml", yaml), ("en", en), ("de", de)):
            (d / "txt" / f"{split}.{suffix}").write_text("\n".join(lines) + "\n",
                                                        encoding="utf-8")
    return root

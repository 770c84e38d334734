"""The self-contained mini corpora of the main-job recipes, synthesised with flite at run time.

ASR (``generate_mini_flite``): English sentences from Debian ``fortunes`` (whitelisted files),
spoken by flite voices with seeded, varied prosody; one voice is held out for the test set, and
test sentences are disjoint from train and valid. ST (``generate_mini_st``): English-German
example pairs from Debian ``dict-freedict-eng-deu``, English side spoken. The text is GPL: it is
read from the installed packages when the recipe runs, never committed.

Audio is 16 kHz mono 16-bit wav (checked with soundfile, converted with sox if a voice differs).
Generation is deterministic for a seed, whatever ``n_jobs``; it is idempotent (a wav whose
synthesis parameters are unchanged in ``<audio_dir>/synth.tsv`` is kept) and every file is
written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import shutil
import subprocess
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from chunkssl_espnet.data.datadir import (
    atomic_path,
    atomic_write_text,
    read_scp,
    validate_data_dir,
    write_data_dir,
    write_utt2num_samples,
)
from chunkssl_espnet.data.textnorm import librispeech_style, lowercase_remove_punct

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

FORTUNE_DIR = Path("/usr/share/games/fortunes")
#: Fortune files without offensive content.
FORTUNE_FILES = ("fortunes", "wisdom", "literature", "people", "work", "education", "science",
                 "food", "pets", "kids", "art")
FREEDICT_DICT = Path("/usr/share/dictd/freedict-eng-deu.dict.dz")
VOICES = ("slt", "rms", "awb", "kal16")
SAMPLE_RATE = 16000
DURATION_STRETCH = (0.85, 1.15)
F0_MEAN = (85.0, 210.0)

_SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'-]+[.!?]")
_EXAMPLE = re.compile(rb'\n[ \t]+"([^"\n]+)"[ \t]+- ([^\n]+)')
_EN_PAIR = re.compile(r"[A-Z][A-Za-z ,'-]+[.!?]")
_DE_PAIR = re.compile(r"[A-Za-zÄÖÜäöüß][A-Za-zÄÖÜäöüß ,'-]+[.!?]")
_ABBREV = re.compile(r"\b(sb|sth|jdn|jdm|jds|etw)\b")


@dataclasses.dataclass(frozen=True)
class SynthUtterance:
    """One utterance to synthesise: who says what, how, and its transcripts per text file."""

    utt_id: str
    split: str
    voice: str
    spoken: str
    duration_stretch: float
    f0_mean: float
    texts: Tuple[Tuple[str, str], ...]

    def manifest_line(self) -> str:
        """The synthesis parameters, as ``<utt-id> <voice> <stretch> <f0> <spoken text>``."""
        return (f"{self.utt_id} {self.voice} {self.duration_stretch:.3f} {self.f0_mean:.1f} "
                f"{self.spoken}")


def require_tool(name: str, package: str) -> str:
    """Path of the executable ``name``, or a RuntimeError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"'{name}' not found on PATH: install the Debian package '{package}' "
                           f"(apt-get install {package})")
    return path


def _require_file(path: Path, package: str) -> None:
    """Raise a FileNotFoundError naming the Debian package that provides ``path``."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install the Debian package '{package}' "
                                f"(apt-get install {package})")


def load_fortune_sentences(
    fortune_dir: PathLike = FORTUNE_DIR,
    files: Sequence[str] = FORTUNE_FILES,
    min_words: int = 6,
    max_words: int = 24,
) -> List[str]:
    """Unique clean sentences of the fortune files, in file order.

    Records are separated by ``%`` lines; a record is split into sentences at ``.``/``!``/``?``;
    a sentence is kept when it matches ``[A-Z][A-Za-z ,;'-]+[.!?]`` with 6 to 24 words.
    """
    fortune_dir = Path(fortune_dir)
    seen: Dict[str, None] = {}
    for name in files:
        path = fortune_dir / name
        _require_file(path, "fortunes-min" if name == "fortunes" else "fortunes")
        text = path.read_text(encoding="utf-8", errors="replace")
        for record in re.split(r"^%\s*$", text, flags=re.M):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(record.split())):
                n_words = len(sentence.split())
                if _SENTENCE.fullmatch(sentence) and min_words <= n_words <= max_words:
                    seen.setdefault(sentence)
    return list(seen)


def _gunzip(data: bytes) -> bytes:
    """Decompress all gzip members at once (``gzip.open().read()`` is twice as slow here)."""
    out = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(d.decompress(data))
        data = d.unused_data
    return b"".join(out)


def load_freedict_pairs(
    dict_path: PathLike = FREEDICT_DICT, min_words: int = 5
) -> List[Tuple[str, str]]:
    """English-German example sentence pairs (``   "English."  - Deutsch.``), unique by English.

    Kept: both sides letters-only sentences (no ``/ ; ( )`` or digits), at least ``min_words``
    English words, no placeholder abbreviations (``sb.``, ``jdn.``), no more commas in German
    than in English (a comma there usually lists alternative translations).
    """
    dict_path = Path(dict_path)
    _require_file(dict_path, "dict-freedict-eng-deu")
    pairs: Dict[str, str] = {}
    raw = _gunzip(dict_path.read_bytes())
    # One regex over the bytes: a Python loop over the 2 million lines takes seconds.
    for en_raw, de_raw in _EXAMPLE.findall(raw):
        en, de = en_raw.decode("utf-8").strip(), de_raw.decode("utf-8").strip()
        if not (_EN_PAIR.fullmatch(en) and _DE_PAIR.fullmatch(de)):
            continue
        if len(en.split()) < min_words or _ABBREV.search(f"{en} {de}"):
            continue
        if de.count(",") > en.count(","):
            continue
        pairs.setdefault(en, de)
    return list(pairs.items())


def ensure_format(wav: Path, sample_rate: int = SAMPLE_RATE) -> None:
    """Make ``wav`` mono 16-bit PCM at ``sample_rate``, converting in place with sox if needed.

    Raises:
        RuntimeError: the file is unreadable or empty, or sox is needed but missing or fails.
    """
    import soundfile

    try:
        info = soundfile.info(str(wav))
    except Exception as e:
        raise RuntimeError(f"{wav}: unreadable audio from flite: {e}") from e
    if info.frames == 0:
        raise RuntimeError(f"{wav}: flite wrote no audio")
    if (info.samplerate, info.channels, info.subtype) == (sample_rate, 1, "PCM_16"):
        return
    sox = require_tool("sox", "sox")
    with atomic_path(wav) as tmp:
        cmd = [sox, "-q", "-R", str(wav), "-r", str(sample_rate), "-c", "1", "-b", "16", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{wav}: sox conversion failed: {res.stderr.strip()}")


def synthesize(
    text: str,
    voice: str,
    out_wav: PathLike,
    duration_stretch: float = 1.0,
    f0_mean: Optional[float] = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Speak ``text`` with flite into ``out_wav`` (atomic; 16 kHz mono 16-bit)."""
    flite = require_tool("flite", "flite")
    out_wav = Path(out_wav)
    cmd = [flite, "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}"]
    if f0_mean is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0_mean:.1f}"]
    with atomic_path(out_wav) as tmp:
        res = subprocess.run(cmd + ["-t", text, "-o", str(tmp)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"flite failed for {out_wav.name}: {res.stderr.strip()}")
        ensure_format(tmp, sample_rate)
    return out_wav


def available_voices() -> List[str]:
    """Voices compiled into flite (``flite -lv``); flite silently falls back on unknown names."""
    res = subprocess.run([require_tool("flite", "flite"), "-lv"], capture_output=True, text=True)
    return res.stdout.replace("Voices available:", "").split()


def plan_utterances(
    items: Sequence[Tuple[str, Dict[str, str]]],
    n_train: int,
    n_valid: int,
    n_test: int,
    voices: Sequence[str] = VOICES,
    test_voice: str = "awb",
    seed: int = 0,
) -> List[SynthUtterance]:
    """Assign items (spoken text, transcripts) to splits, voices and prosody, deterministically.

    The items are shuffled with ``seed``; the first ``n_test`` form the test set (spoken by
    ``test_voice`` only), the next ``n_valid`` and ``n_train`` the valid and train sets (spoken by
    the other voices, drawn at random). Prosody is drawn uniformly from ``DURATION_STRETCH`` and
    ``F0_MEAN``. Utterance ids are ``<voice>-<index>``, so the voice is the speaker id prefix.
    """
    if test_voice not in voices:
        raise ValueError(f"test_voice {test_voice!r} must be one of the voices {list(voices)}")
    train_voices = [v for v in voices if v != test_voice]
    if not train_voices and n_train + n_valid > 0:
        raise ValueError("need at least one voice besides the held-out test voice")
    total = n_train + n_valid + n_test
    if total > len(items):
        raise ValueError(f"asked for {total} utterances but only {len(items)} sentences exist")
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    splits = ["test"] * n_test + ["valid"] * n_valid + ["train"] * n_train
    plan = []
    for split, idx in zip(splits, order):
        spoken, texts = items[idx]
        voice = test_voice if split == "test" else rng.choice(train_voices)
        stretch, f0 = rng.uniform(*DURATION_STRETCH), rng.uniform(*F0_MEAN)
        plan.append(SynthUtterance(f"{voice}-{idx:05d}", split, voice, spoken, round(stretch, 3),
                                   round(f0, 1), tuple(sorted(texts.items()))))
    return plan


def _synthesize_one(args: Tuple[SynthUtterance, str]) -> Tuple[str, str]:
    """Process-pool worker: returns ``(utt_id, error message or "")``."""
    utt, out_wav = args
    try:
        synthesize(utt.spoken, utt.voice, out_wav, utt.duration_stretch, utt.f0_mean)
        return utt.utt_id, ""
    except Exception as e:  # reported with the utterance id by the caller
        return utt.utt_id, str(e)


def _params(utt: SynthUtterance) -> str:
    """The manifest value of ``utt`` (everything after the id)."""
    return utt.manifest_line().split(" ", 1)[1]


def _collect(results: Iterable[Tuple[str, str]], bar: tqdm) -> Dict[str, str]:
    """Drain worker results into ``{utt_id: error}``, advancing the progress bar."""
    failed = {}
    for utt_id, err in results:
        if err:
            failed[utt_id] = err
        bar.update()
    return failed


def wav_path(audio_dir: PathLike, utt: SynthUtterance) -> Path:
    """Where the audio of ``utt`` lives: ``<audio_dir>/<voice>/<utt-id>.wav``."""
    return Path(audio_dir) / utt.voice / f"{utt.utt_id}.wav"


def synthesize_all(plan: Sequence[SynthUtterance], audio_dir: PathLike, n_jobs: int = 1) -> int:
    """Synthesise every planned utterance not already on disk with the same parameters.

    Returns:
        The number of wav files generated (0 when everything was already there).

    Raises:
        RuntimeError: flite is missing, a voice is unknown, or synthesis failed (ids named).
    """
    audio_dir = Path(audio_dir)
    manifest = audio_dir / "synth.tsv"
    known = set(available_voices())
    unknown = sorted({u.voice for u in plan} - known)
    if unknown:
        raise RuntimeError(f"flite has no voice {unknown} (available: {' '.join(sorted(known))})")
    done = read_scp(manifest) if manifest.is_file() else {}
    todo = [
        u for u in plan
        if done.get(u.utt_id) != _params(u) or not wav_path(audio_dir, u).is_file()
    ]
    jobs = [(u, str(wav_path(audio_dir, u))) for u in todo]
    failed: Dict[str, str] = {}
    with tqdm(total=len(jobs), desc="flite", unit="utt", disable=None) as bar:
        if n_jobs <= 1 or len(jobs) <= 1:
            results = map(_synthesize_one, jobs)
            failed = _collect(results, bar)
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                failed = _collect(pool.map(_synthesize_one, jobs, chunksize=4), bar)
    done.update({u.utt_id: _params(u) for u in plan if u.utt_id not in failed})
    atomic_write_text(manifest, "".join(f"{k} {v}\n" for k, v in sorted(done.items())))
    if failed:
        first = sorted(failed)[0]
        raise RuntimeError(f"synthesis failed for {len(failed)} utterances, e.g. "
                           f"'{first}': {failed[first]}")
    return len(todo)


def write_split_dirs(
    plan: Sequence[SynthUtterance], audio_dir: PathLike, data_dir: PathLike
) -> Dict[str, Path]:
    """Write one validated data directory per split (with ``utt2num_samples``)."""
    out: Dict[str, Path] = {}
    for split in sorted({u.split for u in plan}):
        utts = [u for u in plan if u.split == split]
        names = sorted({name for u in utts for name, _ in u.texts})
        texts = {name: {u.utt_id: dict(u.texts)[name] for u in utts} for name in names}
        wav = {u.utt_id: str(wav_path(audio_dir, u).resolve()) for u in utts}
        utt2spk = {u.utt_id: u.voice for u in utts}
        out[split] = write_data_dir(Path(data_dir) / split, wav, utt2spk, texts=texts)
        write_utt2num_samples(out[split])
        validate_data_dir(out[split])
    return out


def generate_mini_flite(
    audio_dir: PathLike,
    data_dir: PathLike,
    n_train: int = 2000,
    n_valid: int = 150,
    n_test: int = 200,
    voices: Sequence[str] = VOICES,
    test_voice: str = "awb",
    seed: int = 0,
    n_jobs: int = 2,
    fortune_dir: PathLike = FORTUNE_DIR,
    fortune_files: Sequence[str] = FORTUNE_FILES,
) -> Dict[str, Path]:
    """Generate the mini ASR corpus: ``<data_dir>/{train,valid,test}`` with ``text`` in
    LibriSpeech style (upper case, no punctuation), audio under ``<audio_dir>/<voice>/``.

    ``test_voice`` defaults to ``awb``: a held-out speaker (Scottish accent) of the same synthesis
    family as ``slt`` and ``rms``; ``kal16`` is an older diphone voice that sounds further apart.

    Returns:
        ``{split: data directory}``.
    """
    sentences = load_fortune_sentences(fortune_dir, fortune_files)
    items = [(s, {"text": librispeech_style(s)}) for s in sentences]
    plan = plan_utterances(items, n_train, n_valid, n_test, voices, test_voice, seed)
    n_new = synthesize_all(plan, audio_dir, n_jobs)
    logger.info("mini_flite: %d utterances planned, %d synthesised", len(plan), n_new)
    return write_split_dirs(plan, audio_dir, data_dir)


def generate_mini_st(
    audio_dir: PathLike,
    data_dir: PathLike,
    n_train: int = 2000,
    n_valid: int = 150,
    n_test: int = 200,
    voices: Sequence[str] = VOICES,
    test_voice: str = "awb",
    seed: int = 0,
    n_jobs: int = 2,
    dict_path: PathLike = FREEDICT_DICT,
) -> Dict[str, Path]:
    """Generate the mini en-de ST corpus from FreeDict example pairs, English side spoken.

    Each split has ``text.tc.en``, ``text.tc.de`` (true case, as in the dictionary) and
    ``text.lc.rm.en`` (ESPnet's ASR-source form).
    """
    pairs = load_freedict_pairs(dict_path)
    items = [
        (en, {"text.tc.en": en, "text.tc.de": de, "text.lc.rm.en": lowercase_remove_punct(en)})
        for en, de in pairs
    ]
    plan = plan_utterances(items, n_train, n_valid, n_test, voices, test_voice, seed)
    n_new = synthesize_all(plan, audio_dir, n_jobs)
    logger.info("mini_st: %d utterances planned, %d synthesised", len(plan), n_new)
    return write_split_dirs(plan, audio_dir, data_dir)

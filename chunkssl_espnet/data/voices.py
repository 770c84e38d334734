"""Speakers of the generated corpora: flite, festival and espeak-ng voices, varied by prosody, sox.

A :class:`Rendition` says who speaks a sentence and how: a voice (flite ``slt``, ``rms``, ``awb``,
``kal16``; festival ``ked``, Debian's ``festvox-kdlpc16k``; espeak-ng's accents and variants,
``ESPEAK_VOICES``), its prosody (duration stretch and, for flite and espeak-ng, the mean f0
target) and a sox perturbation: ``speed`` (tempo, pitch and formants
together, as Kaldi's 0.9/1.0/1.1 speed perturbation) and ``pitch`` (cents; sox shifts the whole
spectrum, so formants move with f0, like another vocal-tract length). Together they make many
virtual speakers out of a few voices.

:func:`render_all` synthesises a list of renditions into 16 kHz mono 16-bit wav files, in
parallel, deterministically, atomically and idempotently (a file whose parameters are unchanged
in ``<audio_dir>/synth.tsv`` is kept). Festival is run once per batch of utterances (its start-up
costs 0.5 s).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from tqdm import tqdm

from chunkssl_espnet.data.datadir import atomic_path, atomic_write_text, read_scp
from chunkssl_espnet.data.mini_flite import (
    F0_MEAN,
    SAMPLE_RATE,
    available_voices,
    ensure_format,
    require_tool,
    synthesize,
)

PathLike = Union[str, os.PathLike]

#: Festival voices: our name -> (Scheme voice function, Debian package).
FESTIVAL_VOICES: Dict[str, Tuple[str, str]] = {"ked": ("voice_ked_diphone", "festvox-kdlpc16k")}
#: Utterances per festival process.
FESTIVAL_BATCH = 64
#: espeak-ng English accents (formant synthesis: speakers of another synthesiser than flite's).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")
#: espeak-ng voice variants (male and female timbres) combined with each accent.
ESPEAK_VARIANTS = ("m1", "m3", "m5", "f1", "f3", "f5")
#: espeak-ng speakers: our name (no ``-``: it is the speaker id prefix) -> ``accent+variant``.
ESPEAK_VOICES: Dict[str, str] = {f"esp{a.replace('-', '')}{v}": f"{a}+{v}"
                                 for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS}
#: espeak-ng's speaking rate (words per minute) at duration stretch 1.
ESPEAK_WPM = 165


@dataclasses.dataclass(frozen=True)
class Rendition:
    """One utterance to synthesise.

    Attributes:
        utt_id: ``<voice>-<tag><n>``; the voice is the speaker id prefix.
        voice: a flite voice, a key of ``FESTIVAL_VOICES`` or of ``ESPEAK_VOICES``.
        spoken: the text given to the synthesiser.
        stretch: duration stretch (> 1 slower).
        f0: mean f0 target in Hz (flite; espeak-ng maps it onto its pitch scale; 0 keeps the
            voice's own).
        speed: sox speed factor (1.0: none).
        pitch: sox pitch shift in cents (0: none).
    """

    utt_id: str
    voice: str
    spoken: str
    stretch: float = 1.0
    f0: float = 0.0
    speed: float = 1.0
    pitch: float = 0.0

    @property
    def engine(self) -> str:
        if self.voice in FESTIVAL_VOICES:
            return "festival"
        return "espeak" if self.voice in ESPEAK_VOICES else "flite"

    def params(self) -> str:
        """The synthesis parameters as one manifest value (everything but the id)."""
        return (f"{self.voice} {self.stretch:.3f} {self.f0:.1f} {self.speed:.3f} "
                f"{self.pitch:.0f} {self.spoken}")


def wav_path(audio_dir: PathLike, r: Rendition) -> Path:
    """``<audio_dir>/<voice>/<utt-id>.wav``."""
    return Path(audio_dir) / r.voice / f"{r.utt_id}.wav"


def run_sox(src: Path, dst: Path, effects: Sequence[str]) -> None:
    """Write ``dst``: ``src`` through the sox ``effects``, as 16 kHz mono 16-bit, atomically.
    sox runs repeatable (``-R``: a fixed seed for its dither), so the output is the same at every
    run."""
    sox = require_tool("sox", "sox")
    with atomic_path(dst) as tmp:
        cmd = [sox, "-q", "-R", str(src), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
               str(tmp), *effects, "rate", str(SAMPLE_RATE)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{src}: sox {' '.join(effects)} failed: {res.stderr.strip()}")


def perturb(wav: Path, speed: float, pitch: float) -> None:
    """Apply sox ``speed`` and ``pitch`` to ``wav`` in place (a no-op for 1.0 and 0)."""
    if speed == 1.0 and pitch == 0.0:
        return
    effects = []
    if pitch != 0.0:
        effects += ["pitch", f"{pitch:.0f}"]
    if speed != 1.0:
        effects += ["speed", f"{speed:.3f}"]
    run_sox(wav, wav, effects)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_batch(jobs: Sequence[Tuple[Rendition, str]]) -> List[Tuple[str, str]]:
    """Synthesise renditions of one festival voice in one process; ``[(utt_id, error)]``."""
    festival = require_tool("festival", "festival")
    voice_fn, package = FESTIVAL_VOICES[jobs[0][0].voice]
    tmps = {}
    lines = [f"({voice_fn})"]
    for r, out in jobs:
        fd, tmp = tempfile.mkstemp(prefix=f".{r.utt_id}.", suffix=".wav", dir=Path(out).parent)
        os.close(fd)
        tmps[r.utt_id] = tmp
        lines.append(f"(Parameter.set 'Duration_Stretch {r.stretch:.3f})")
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(r.spoken)})) "
                     f"{_scheme_string(tmp)} 'riff)")
    fd, script = tempfile.mkstemp(suffix=".scm")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        res = subprocess.run([festival, "-b", script], capture_output=True, text=True)
    finally:
        os.unlink(script)
    out: List[Tuple[str, str]] = []
    for r, wav in jobs:
        tmp = Path(tmps[r.utt_id])
        try:
            if res.returncode != 0 or "SIOD ERROR" in res.stderr:
                raise RuntimeError(f"festival failed (is {package} installed? apt-get install "
                                   f"{package}): {res.stderr.strip()[-300:]}")
            ensure_format(tmp)
            perturb(tmp, r.speed, r.pitch)
            os.replace(tmp, wav)
            out.append((r.utt_id, ""))
        except Exception as e:  # reported with the utterance id by the caller
            out.append((r.utt_id, str(e)))
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _flite_one(job: Tuple[Rendition, str]) -> List[Tuple[str, str]]:
    r, wav = job
    try:
        with atomic_path(wav) as tmp:
            synthesize(r.spoken, r.voice, tmp, r.stretch, r.f0 or None)
            perturb(tmp, r.speed, r.pitch)
        return [(r.utt_id, "")]
    except Exception as e:  # reported with the utterance id by the caller
        return [(r.utt_id, str(e))]


def espeak_pitch(f0: float) -> int:
    """espeak-ng's pitch (0-99, default 50) for a mean f0 target: ``F0_MEAN`` maps onto 20-80."""
    if not f0:
        return 50
    lo, hi = F0_MEAN
    return round(20 + 60 * min(max((f0 - lo) / (hi - lo), 0.0), 1.0))


def _espeak_one(job: Tuple[Rendition, str]) -> List[Tuple[str, str]]:
    r, wav = job
    try:
        espeak = require_tool("espeak-ng", "espeak-ng")
        with atomic_path(wav) as tmp:
            cmd = [espeak, "-v", ESPEAK_VOICES[r.voice], "-s", str(round(ESPEAK_WPM / r.stretch)),
                   "-p", str(espeak_pitch(r.f0)), "-w", str(tmp), r.spoken]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"espeak-ng failed: {res.stderr.strip()[-300:]}")
            ensure_format(tmp)
            perturb(tmp, r.speed, r.pitch)
        return [(r.utt_id, "")]
    except Exception as e:  # reported with the utterance id by the caller
        return [(r.utt_id, str(e))]


def _run(task: Tuple[str, list]) -> List[Tuple[str, str]]:
    kind, payload = task
    if kind == "festival":
        return _festival_batch(payload)
    return _espeak_one(payload) if kind == "espeak" else _flite_one(payload)


def render_all(renditions: Sequence[Rendition], audio_dir: PathLike, n_jobs: int = 1) -> int:
    """Synthesise every rendition not already on disk with the same parameters.

    Returns:
        The number of wav files generated.

    Raises:
        RuntimeError: a voice is unknown, a tool is missing, or synthesis failed (ids named).
    """
    audio_dir = Path(audio_dir)
    manifest = audio_dir / "synth.tsv"
    flite_voices = {r.voice for r in renditions if r.engine == "flite"}
    if flite_voices:
        unknown = sorted(flite_voices - set(available_voices()))
        if unknown:
            raise RuntimeError(f"flite has no voice {unknown} (available: "
                               f"{' '.join(available_voices())}; festival voices: "
                               f"{' '.join(FESTIVAL_VOICES)})")
    done = read_scp(manifest) if manifest.is_file() else {}
    todo = [r for r in renditions
            if done.get(r.utt_id) != r.params() or not wav_path(audio_dir, r).is_file()]
    for r in todo:
        wav_path(audio_dir, r).parent.mkdir(parents=True, exist_ok=True)
    tasks: List[Tuple[str, list]] = []
    by_voice: Dict[str, list] = {}
    for r in todo:
        job = (r, str(wav_path(audio_dir, r)))
        if r.engine == "festival":
            by_voice.setdefault(r.voice, []).append(job)
        else:
            tasks.append((r.engine, job))  # type: ignore[arg-type]
    for jobs in by_voice.values():
        tasks += [("festival", jobs[i : i + FESTIVAL_BATCH])
                  for i in range(0, len(jobs), FESTIVAL_BATCH)]
    failed: Dict[str, str] = {}
    with tqdm(total=len(todo), desc="synthesis", unit="utt", disable=None) as bar:
        def collect(results):
            for batch in results:
                for utt_id, err in batch:
                    if err:
                        failed[utt_id] = err
                    bar.update()

        if n_jobs <= 1 or len(tasks) <= 1:
            collect(map(_run, tasks))
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                collect(pool.map(_run, tasks, chunksize=4))
    done.update({r.utt_id: r.params() for r in renditions if r.utt_id not in failed})
    atomic_write_text(manifest, "".join(f"{k} {v}\n" for k, v in sorted(done.items())))
    if failed:
        first = sorted(failed)[0]
        raise RuntimeError(f"synthesis failed for {len(failed)} utterances, e.g. "
                           f"'{first}': {failed[first]}")
    return len(todo)

"""The mini ASR corpus plan: pool-only voices change only the pool; espeak-ng speakers."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from chunkssl_espnet.data.mini_asr import Sentences, plan_corpus
from chunkssl_espnet.data.voices import ESPEAK_VOICES, Rendition, render_all, wav_path

WORDS = "the cat sat on a warm mat while old dogs slept by doors".split()


def sentences() -> Sentences:
    text = [" ".join(WORDS[i % 13 : i % 13 + 4 + i % 5]).upper() for i in range(60)]
    return Sentences(labelled=text[:20], valid=text[20:25], test=text[25:30],
                     pool_only=text[30:], vocabulary=sorted({w.upper() for w in WORDS}))


def test_pool_voices_change_only_the_pools_extra_renditions() -> None:
    s = sentences()
    base = plan_corpus(s, 80, seed=3, perturb="pool")
    espeak = sorted(ESPEAK_VOICES)[:6]
    mixed = plan_corpus(s, 80, seed=3, perturb="pool", pool_voices=espeak, pool_voice_share=0.5)
    for split in base:
        if split != "pool":
            assert mixed[split] == base[split], split
    assert mixed["pool"][:20] == base["pool"][:20]  # the labelled set leads the pool
    extra = [r for r, _ in mixed["pool"][20:]]
    n_pool_only = sum(r.voice in espeak for r in extra)
    assert 10 <= n_pool_only <= 50  # about half of the 60 extra renditions
    assert all(r.utt_id.split("-")[0] == r.voice for r in extra)  # speaker id prefix
    assert [t for _, t in mixed["pool"]] == [t for _, t in base["pool"]]
    assert all(r.voice not in espeak for split in mixed if split != "pool"
               for r, _ in mixed[split])
    with pytest.raises(ValueError, match="pool-only voices"):
        plan_corpus(s, 80, pool_voices=["slt"])
    with pytest.raises(ValueError, match="pool_voice_share"):
        plan_corpus(s, 80, pool_voices=espeak, pool_voice_share=1.5)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="needs espeak-ng and sox (apt-get install espeak-ng sox)")
def test_espeak_renditions_are_16k_and_follow_the_prosody(tmp_path: Path) -> None:
    text = "The cat slept on the warm windowsill."
    voice = "espenusf1"
    slow = Rendition(f"{voice}-p00000", voice, text, stretch=1.15, f0=100.0)
    fast = Rendition(f"{voice}-p00001", voice, text, stretch=0.85, f0=200.0)
    assert render_all([slow, fast], tmp_path, n_jobs=2) == 2
    audio = {}
    for r in (slow, fast):
        info = soundfile.info(wav_path(tmp_path, r))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        audio[r.utt_id], _ = soundfile.read(wav_path(tmp_path, r))
    assert len(audio[slow.utt_id]) > 1.2 * len(audio[fast.utt_id])
    assert np.abs(audio[fast.utt_id]).max() > 0.05
    assert render_all([slow, fast], tmp_path) == 0  # unchanged parameters: kept

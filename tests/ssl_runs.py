"""Helpers of the scale-out tests (test_distributed, test_resume): tiny SSL data, ESPnet runs.

The work dir is made once per pytest session (under the session's base temp dir, with a marker
written last) and shared by the test modules:

* ``data/train``: the 5 LibriVox utterances cut into 14 segments of exactly 1.5 s. Equal lengths
  make every batch unpadded, give every utterance the same weight in ESPnet's loss averaging and
  make every rank draw the same amount of random numbers per step;
* ``data/valid``: 4 of those segments;
* ``tok``: a random FSQ tokenizer fitted on ``data/train``, with the global MVN stats it computed
  (``tok/feats_stats.npz``, ESPnet's format), which serve as ``--normalize_conf stats_file``.
  This stands in for ESPnet's ``--collect_stats`` stage (a separate ~30 s process here), which
  these tests do not exercise; the shape files are written directly (``<uttid> <samples>``).

Runs use conf/ssl_chunk_tiny.yaml made tinier on the command line (1 block, d=32), without
dropout, with a fixed chunk size of 8 encoder frames (no dynamic chunk draw), one intra-op
thread per process (2 shared cores), and a 4-step warm-up so that a few epochs visibly learn.
"""

import logging
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "conf" / "ssl_chunk_tiny.yaml"
SEGMENT_SAMPLES = 24000  # 1.5 s at 16 kHz
# 0.3 s: 28 fbank frames, 7 encoder frames, one chunk of 8: nothing is scored (copies start at
# the second chunk)
SHORT_SAMPLES = 4800
TINY = [
    "--encoder_conf", "num_blocks=1", "--encoder_conf", "output_size=32",
    "--encoder_conf", "attention_heads=2", "--encoder_conf", "linear_units=64",
    "--encoder_conf", "dropout_rate=0.0", "--encoder_conf", "dynamic_chunk_training=false",
    "--encoder_conf", "static_chunk_size=8", "--scheduler_conf", "warmup_steps=4",
]  # fmt: skip


def _write_data_dir(directory: Path, utts: Sequence[tuple]) -> None:
    """``utts``: (uttid, path) or (uttid, path, samples), in the order of the files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "wav.scp").write_text("".join(f"{u[0]} {u[1]}\n" for u in utts))
    (directory / "speech_shape").write_text(
        "".join(f"{u[0]} {u[2] if len(u) > 2 else SEGMENT_SAMPLES}\n" for u in utts)
    )


def make_ssl_workdir(root: Path, librivox_dir: Path) -> Path:
    """Make (once per session) the data dirs and the tokenizer described in the module doc."""
    done = root / ".done"
    if done.is_file():
        return root
    import soundfile

    from chunkssl_espnet.bin import tokenizer_train

    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    utts = []
    for src in sorted(librivox_dir.glob("*.wav")):
        audio, rate = soundfile.read(src, dtype="int16")
        assert rate == 16000, f"{src}: {rate} Hz"
        for i in range(len(audio) // SEGMENT_SAMPLES):
            uttid = f"{src.stem.split('-')[-1]}_{i:02d}"
            path = wav_dir / f"{uttid}.wav"
            soundfile.write(path, audio[i * SEGMENT_SAMPLES : (i + 1) * SEGMENT_SAMPLES], rate)
            utts.append((uttid, path))
    _write_data_dir(root / "data" / "train", utts)
    _write_data_dir(root / "data" / "valid", utts[::4])
    short = []
    for uttid, path in utts[:8]:
        audio, rate = soundfile.read(path, dtype="int16")
        spath = wav_dir / f"short_{uttid}.wav"
        soundfile.write(spath, audio[:SHORT_SAMPLES], rate)
        short.append((f"short_{uttid}", spath, SHORT_SAMPLES))
    long = [(u, p, SEGMENT_SAMPLES) for u, p in utts]
    # In file order, for unsorted batches of 4 split batch[rank::2] over 2 ranks: rank 1 gets only
    # short utterances in the first batch, no rank scores anything in the second, both in the third.
    _write_data_dir(root / "data" / "train_mixed", [long[0], short[0], long[1], short[1],
                                                    *short[2:6], *long[2:6]])
    _write_data_dir(root / "data" / "valid_mixed", [long[6], short[6]])
    args = tokenizer_train.get_parser().parse_args(
        ["--kind", "random", "--data_dir", str(root / "data" / "train"), "--out_dir",
         str(root / "tok")]
    )  # fmt: skip
    tokenizer_train.run(args)
    done.write_text("ok\n")
    return root


def ssl_args(workdir: Path, output_dir: Path, *extra: str, train: str = "train",
             valid: str = "valid") -> List[str]:
    """ssl_train arguments of a tiny CPU run on the work dir; ``extra`` come last and win."""
    data, tok = workdir / "data", workdir / "tok"
    return [
        "--config", str(CONFIG), *TINY,
        "--normalize_conf", f"stats_file={tok / 'feats_stats.npz'}",
        "--model_conf", f"tokenizer_dir={tok}",
        "--train_data_path_and_name_and_type", f"{data / train / 'wav.scp'},speech,sound",
        "--valid_data_path_and_name_and_type", f"{data / valid / 'wav.scp'},speech,sound",
        "--train_shape_file", str(data / train / "speech_shape"),
        "--valid_shape_file", str(data / valid / "speech_shape"),
        "--batch_type", "sorted", "--ngpu", "0", "--num_workers", "0", "--resume", "true",
        "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch with one intra-op thread (as the subprocesses do), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def train_in_process(args: Sequence[str]) -> List[str]:
    """One ESPnet SSL training run in this process (saves a ~20 s interpreter start per run).

    Returns the messages ESPnet logged at INFO and above (to the root logger, as ``logging.info``).
    """
    from chunkssl_espnet.espnet_plugin import ChunkSSLTask

    root, handler = logging.getLogger(), _Collect()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with one_thread():
            ChunkSSLTask.main(cmd=list(args))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return handler.messages


def subprocess_env() -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # an outer launcher's variables would make a plain run distributed
    return env


@contextmanager
def popen(cmd: Sequence[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` (stdout and stderr to ``log``); kill it and its group if the test fails."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=subprocess_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()


def python_module(module: str) -> List[str]:
    return [sys.executable, "-m", module]


def wait_ok(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.args} still running after {timeout} s; log {log}") from None
    assert rc == 0, f"exit {rc}:\n{log.read_text()[-4000:]}"


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


EPOCH_STARTED = re.compile(r"(\d+)/(\d+)epoch started")


def epochs_started(log: str) -> List[int]:
    """Epochs whose start ESPnet's trainer logged (rank 0, at INFO) in the text ``log``."""
    return [int(m.group(1)) for m in EPOCH_STARTED.finditer(log)]


def load_checkpoint(output_dir: Path) -> dict:
    return torch.load(output_dir / "checkpoint.pth", map_location="cpu", weights_only=False)


def summary(ckpt: dict) -> dict:
    """What a checkpoint says about progress: epochs, optimizer/scheduler steps, per-epoch losses.

    ``optimizer_steps`` is Adam's step count, ``scheduler_steps`` WarmupLR's; ``global_step`` is
    the SSL model's buffer, which counts training forwards (micro-batches, not optimizer steps).
    """
    stats = ckpt["reporter"]["stats"]
    adam = ckpt["optimizers"][0]["state"]
    return {
        "epoch": ckpt["reporter"]["epoch"],
        "epochs": sorted(stats),
        "optimizer_steps": {int(s["step"]) for s in adam.values()},
        "scheduler_steps": ckpt["schedulers"][0]["last_epoch"],
        "global_step": int(ckpt["model"]["global_step"]),
        "train_total_count": [int(stats[e]["train"]["total_count"]) for e in sorted(stats)],
        "train_loss": [float(stats[e]["train"]["loss"]) for e in sorted(stats)],
        "valid_loss": [float(stats[e]["valid"]["loss"]) for e in sorted(stats)],
    }

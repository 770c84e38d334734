"""Resume after a hard kill: ESPnet's ``--resume true`` continues from ``checkpoint.pth``.

A training subprocess is SIGKILLed once its first epoch is saved and ESPnet has logged the start
of a later epoch (the start is logged after the previous epoch's checkpoint, model file and links
are written, so the kill lands in training or validation of that later epoch, not in a save; the
test checks that the checkpoint left behind holds the epoch before the last one started).
The same command with ``--resume true`` then finishes the run, which must end where an
uninterrupted run ends: same epochs, same optimizer, scheduler and ``global_step`` counts, same
per-epoch iteration counts, and the same losses. Epochs have a fixed number of iterations
(``--num_iters_per_epoch``), as in large-scale pre-training, so the resumed run must also
rebuild the iterator's position in the shuffled data from the epoch number.

The losses are compared to 1e-4: ESPnet reseeds the global RNG with ``seed + epoch`` at every
epoch and the checkpoint holds the model, the optimizer, the scheduler and the reporter, so the
resumed epochs repeat the uninterrupted ones draw for draw (one intra-op thread in both runs);
measured, they are identical to the last bit.
"""

import os
import signal
import threading

import pytest

from tests.ssl_runs import (
    epochs_started,
    load_checkpoint,
    make_ssl_workdir,
    popen,
    python_module,
    ssl_args,
    summary,
    train_in_process,
    wait_for,
)

pytestmark = pytest.mark.slow

EPOCHS = 4
ITERS = 6  # per epoch, of 2 utterances


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, librivox_dir):
    return make_ssl_workdir(tmp_path_factory.getbasetemp() / "ssl_workdir", librivox_dir)


def kill_in_later_epoch(proc, log, out: dict) -> None:
    """Watcher thread: SIGKILL ``proc`` once an epoch after the first has started."""
    try:
        def later_epoch() -> bool:
            return any(e >= 2 for e in epochs_started(log.read_text(errors="replace")))

        wait_for(lambda: later_epoch() or proc.poll() is not None, 600, "epoch 2 to start")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        out["rc"] = proc.wait()
        out["started"] = epochs_started(log.read_text(errors="replace"))
    except BaseException as e:  # reported by the test
        out["error"] = e


@pytest.fixture(scope="module")
def runs(workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    common = ["--max_epoch", str(EPOCHS), "--num_iters_per_epoch", str(ITERS),
              "--batch_size", "2", "--seed", "3"]  # fmt: skip
    killed_args = ssl_args(workdir, root / "exp_killed", *common)
    log = root / "killed.log"
    watch: dict = {}
    with popen(python_module("chunkssl_espnet.bin.ssl_train") + killed_args, log, root) as proc:
        watcher = threading.Thread(target=kill_in_later_epoch, args=(proc, log, watch))
        watcher.start()
        # the uninterrupted reference runs here meanwhile
        train_in_process(ssl_args(workdir, root / "exp_full", *common))
        watcher.join(timeout=600)
        assert not watcher.is_alive(), f"the killed run never reached epoch 2; log {log}"
    if "error" in watch:
        raise watch["error"]
    assert watch["rc"] == -signal.SIGKILL, f"exit {watch['rc']}:\n{log.read_text()[-4000:]}"
    at_kill = load_checkpoint(root / "exp_killed")
    killed = {"rc": watch["rc"], "started": watch["started"], "log": log.read_text(),
              "checkpoint": summary(at_kill)}  # fmt: skip
    resumed_log = "\n".join(train_in_process(killed_args))
    return {"killed": killed, "resumed": summary(load_checkpoint(root / "exp_killed")),
            "resumed_log": resumed_log, "full": summary(load_checkpoint(root / "exp_full"))}


def test_killed_mid_run(runs):
    killed = runs["killed"]
    assert killed["rc"] == -signal.SIGKILL, killed["log"][-3000:]
    assert "The training was finished" not in killed["log"]
    last_started = killed["started"][-1]
    # the checkpoint holds the epoch before the one that was running: the kill was mid-epoch
    assert 2 <= last_started <= EPOCHS
    assert killed["checkpoint"]["epoch"] == last_started - 1
    assert killed["checkpoint"]["epochs"] == list(range(1, last_started))


def test_resumed_from_checkpoint(runs):
    # a run that started over would end the same (training is deterministic): check it resumed
    log, last_started = runs["resumed_log"], runs["killed"]["started"][-1]
    assert "The training was resumed using" in log, log[-3000:]
    assert epochs_started(log)[0] == last_started


def test_resumed_run_ends_like_uninterrupted(runs):
    full, resumed = runs["full"], runs["resumed"]
    steps = EPOCHS * ITERS
    assert full["epochs"] == resumed["epochs"] == list(range(1, EPOCHS + 1))
    assert full["optimizer_steps"] == resumed["optimizer_steps"] == {steps}
    assert full["scheduler_steps"] == resumed["scheduler_steps"] == steps
    assert full["global_step"] == resumed["global_step"] == steps
    assert full["train_total_count"] == resumed["train_total_count"]
    assert full["train_loss"] == pytest.approx(resumed["train_loss"], abs=1e-4)
    assert full["valid_loss"] == pytest.approx(resumed["valid_loss"], abs=1e-4)

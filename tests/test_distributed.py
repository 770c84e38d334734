"""Scale-out through ESPnet's own trainer: 2-process CPU DDP equals 1 process, and AMP passes.

The 2-process run is started the way a recipe does on one node: ``torchrun --nproc_per_node 2``
with ``--ngpu 0 --dist_backend gloo`` (ESPnet's mode (d), an external launcher: WORLD_SIZE, RANK
and LOCAL_RANK come from the environment; ``--multiprocessing_distributed`` spawns one process per
GPU and is switched off when ngpu <= 1, so it cannot run on CPU). Each rank loads the shard
``batch[rank::2]`` of every batch of 4, DDP averages the gradients, and ESPnet reduces the loss
and the stats as weighted averages over the ranks, the weight being the number of scored frames
(``sample_size`` of the group loss).

Reference: 1 process over the same global batches of 4. The data (tests/ssl_runs.py,
``train_mixed``) are 1.5 s and 0.3 s utterances in an order that makes rank 1's first batch hold
only 0.3 s utterances, which are shorter than two chunks of 8 frames and score nothing; in the
second batch no rank scores anything; in the third both do. Masks are drawn per utterance from a
seed of its position in the global batch (ChunkSSLModel.mask_seeds), chunk size is fixed and
dropout is 0, so both runs compute the same numbers up to float rounding: their losses must agree
to 1e-5, epoch by epoch, and no parameter may turn NaN in the step that scores nothing.

Before the fix (stats of None on a rank that scores nothing, weights by utterance), the 2-process
run desynchronised ESPnet's key-by-key all-reduce and its loss weighted rank 1's empty shard like
a full one.

``--use_amp true`` is passed to both runs: on CPU ESPnet builds its GradScaler and autocast, and
both disable themselves (a no-op), so this checks that the flag passes through to a finished run.
"""

import math

import pytest
import torch

from tests.ssl_runs import (
    load_checkpoint,
    make_ssl_workdir,
    popen,
    python_module,
    ssl_args,
    summary,
    train_in_process,
    wait_ok,
)

pytestmark = pytest.mark.slow

EPOCHS = 4
STEPS_PER_EPOCH = 3  # 12 utterances in batches of 4
TOL = 1e-5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, librivox_dir):
    return make_ssl_workdir(tmp_path_factory.getbasetemp() / "ssl_workdir", librivox_dir)


@pytest.fixture(scope="module")
def runs(workdir, tmp_path_factory):
    """The 2-process run (a subprocess) and, meanwhile, the 1-process reference (in this
    process); returns both checkpoints' summaries and the final checkpoints."""
    root = tmp_path_factory.mktemp("ddp")
    common = ["--max_epoch", str(EPOCHS), "--use_amp", "true", "--seed", "0",
              "--optim_conf", "lr=0.004", "--scheduler_conf", "warmup_steps=2",
              "--batch_type", "unsorted", "--batch_size", "4", "--valid_batch_size", "2"]
    data = {"train": "train_mixed", "valid": "valid_mixed"}
    two = ssl_args(workdir, root / "exp_2proc", *common, "--dist_backend", "gloo", **data)
    cmd = python_module("torch.distributed.run") + [
        "--standalone", "--nproc_per_node", "2",
        "-m", "chunkssl_espnet.bin.ssl_train", *two,
    ]  # fmt: skip
    log = root / "2proc.log"
    with popen(cmd, log, cwd=root) as proc:
        train_in_process(ssl_args(workdir, root / "exp_1proc", *common, **data))
        wait_ok(proc, log, timeout=600)
    ckpt1, ckpt2 = load_checkpoint(root / "exp_1proc"), load_checkpoint(root / "exp_2proc")
    return {"1proc": summary(ckpt1), "2proc": summary(ckpt2), "ckpt1": ckpt1, "ckpt2": ckpt2,
            "log": log.read_text()}  # fmt: skip


def test_ddp_ran_two_ranks(runs):
    # ESPnet tags rank 0's log lines with ":0/2"; the other ranks only log errors
    assert ":0/2]" in runs["log"], runs["log"][-3000:]
    assert "The training was finished at" in runs["log"]


def test_same_optimizer_steps(runs):
    one, two = runs["1proc"], runs["2proc"]
    for s in (one, two):
        assert s["epochs"] == list(range(1, EPOCHS + 1))
        assert s["optimizer_steps"] == {EPOCHS * STEPS_PER_EPOCH}
        assert s["scheduler_steps"] == EPOCHS * STEPS_PER_EPOCH
        assert s["global_step"] == EPOCHS * STEPS_PER_EPOCH


def test_losses_equal_one_process(runs):
    one, two = runs["1proc"], runs["2proc"]
    for key in ("train_loss", "valid_loss"):
        assert all(math.isfinite(x) for x in one[key] + two[key]), (key, one[key], two[key])
        for epoch, (a, b) in enumerate(zip(one[key], two[key]), 1):
            assert abs(a - b) <= TOL * max(1.0, abs(a)), (
                f"epoch {epoch} {key}: 1 process {a:.7f}, 2 processes {b:.7f}"
            )
    for s in (one, two):  # both learned
        assert s["valid_loss"][-1] < s["valid_loss"][0], s["valid_loss"]


def test_no_nan_parameters(runs):
    for ckpt in (runs["ckpt1"], runs["ckpt2"]):
        for name, value in ckpt["model"].items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), name


def test_amp_flag_passes_through(runs):
    # ESPnet saves the GradScaler's state only when --use_amp built one (empty: disabled on CPU)
    for ckpt in (runs["ckpt1"], runs["ckpt2"]):
        assert ckpt["scaler"] is not None

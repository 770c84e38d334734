"""Scale-out through ESPnet's own trainer: 2-process CPU DDP, gradient accumulation and AMP.

The 2-process run is started the way a recipe does on one node: ``torchrun --nproc_per_node 2``
with ``--ngpu 0 --dist_backend gloo`` (ESPnet's mode (d), an external launcher: WORLD_SIZE, RANK
and LOCAL_RANK come from the environment; ``--multiprocessing_distributed`` spawns one process per
GPU and is switched off when ngpu <= 1, so it cannot run on CPU). Each rank loads a shard of every
batch (``batch[rank::2]``), DDP averages the gradients, and ESPnet reduces the loss and the stats
as weighted averages over the ranks (weight = utterances).

Reference: 1 process with the same global batch, all 14 utterances per optimizer step, taken as 2
micro-batches of 7 with ``--accum_grad 2``; the 2-process run takes batches of 14, 7 per rank. So
both take one optimizer step per epoch on the mean gradient of the same 14 unpadded utterances
(equal weights: all are 1.5 s long), from the same initial weights (ESPnet seeds every process
with ``--seed`` before building the model). The validation loss is computed with 1 utterance per
process in both runs and the masks of ``valid_seed``, so on the same weights it is the same number.

Why a tolerance and not equality: the training masks of each step are drawn from a seed that
ChunkSSLModel takes from torch's global RNG (which ESPnet reseeds with ``seed + epoch`` in every
rank alike) and offsets by the rank, so the two ranks mask differently, as two micro-batches of one
process do, but with other numbers: the runs see different masks, like two runs of different seeds
on the same initial weights. Chunk size is fixed (``dynamic_chunk_training=false``) and dropout is
0, so the masks are the only draws that differ. A full-batch step averages their noise over 14
utterances (with batches of 2 the two runs ended up to 0.15 apart). Measured on this set-up, 8
epochs, seeds 0-3, |2-process minus 1-process| final valid loss: 0.138, 0.001, 0.072 and < 0.1
(seed 3), final train loss up to 0.06 where measured; training lowers the valid loss by about 1.0
from epoch 1 to 8. (Before masks were offset by rank, half of the 2-process masks equalled the
1-process ones and the valid losses were at most 0.04 apart.) The tolerances are 0.25 on the final
valid loss (1.8 times the largest difference seen, a quarter of the learning) and 0.3 on the final
train loss; both runs must also have learned (valid loss down by more than 0.5).

``--use_amp true`` is passed to both runs: on CPU ESPnet builds its GradScaler and autocast, and
both disable themselves (a no-op), so this checks that the flag passes through to a finished run.
"""

import math

import pytest

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

EPOCHS = 8
VALID_TOL = 0.25
TRAIN_TOL = 0.3
LEARNED = 0.5  # valid loss decrease from epoch 1 to the end, each run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, librivox_dir):
    return make_ssl_workdir(tmp_path_factory.getbasetemp() / "ssl_workdir", librivox_dir)


@pytest.fixture(scope="module")
def runs(workdir, tmp_path_factory):
    """The 2-process run (a subprocess) and, meanwhile, the 1-process reference (in this
    process); returns both checkpoints' summaries and the final checkpoints."""
    root = tmp_path_factory.mktemp("ddp")
    common = ["--max_epoch", str(EPOCHS), "--use_amp", "true", "--seed", "0",
              "--optim_conf", "lr=0.004", "--scheduler_conf", "warmup_steps=2"]  # fmt: skip
    two = ssl_args(workdir, root / "exp_2proc", *common, "--batch_size", "14",
                   "--valid_batch_size", "2", "--dist_backend", "gloo")  # fmt: skip
    cmd = python_module("torch.distributed.run") + [
        "--standalone", "--nproc_per_node", "2",
        "-m", "chunkssl_espnet.bin.ssl_train", *two,
    ]  # fmt: skip
    log = root / "2proc.log"
    with popen(cmd, log, cwd=root) as proc:
        train_in_process(ssl_args(workdir, root / "exp_1proc", *common, "--batch_size", "7",
                                  "--valid_batch_size", "1", "--accum_grad", "2"))  # fmt: skip
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
        assert s["optimizer_steps"] == {EPOCHS}  # one full-batch step per epoch
        assert s["scheduler_steps"] == EPOCHS
    # the model's global_step counts forwards: 2 micro-batches per step with accum_grad 2
    assert one["global_step"] == 2 * EPOCHS
    assert two["global_step"] == EPOCHS


def test_losses_match_within_tolerance(runs):
    one, two = runs["1proc"], runs["2proc"]
    for key in ("train_loss", "valid_loss"):
        assert all(math.isfinite(x) for x in one[key] + two[key]), (key, one[key], two[key])
    a, b = one["valid_loss"][-1], two["valid_loss"][-1]
    assert abs(a - b) < VALID_TOL, f"final valid loss: 1 process {a:.4f}, 2 processes {b:.4f}"
    a, b = one["train_loss"][-1], two["train_loss"][-1]
    assert abs(a - b) < TRAIN_TOL, f"final train loss: 1 process {a:.4f}, 2 processes {b:.4f}"
    for s in (one, two):
        assert s["valid_loss"][-1] < s["valid_loss"][0] - LEARNED, s["valid_loss"]


def test_amp_flag_passes_through(runs):
    # ESPnet saves the GradScaler's state only when --use_amp built one (empty: disabled on CPU)
    for ckpt in (runs["ckpt1"], runs["ckpt2"]):
        assert ckpt["scaler"] is not None

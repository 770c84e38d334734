"""``ChunkSSLModel.encode``: targets, loss mask, offline branch, mask seeds (docs/method.md §3-7).

The model is built the way ESPnet's trainer builds it (``ChunkSSLTask.build_model``) from
conf/ssl_chunk_tiny.yaml made tiny on the command line (d 16, 2 blocks, no dropout, fixed chunk
size 8), with a global MVN stats file and a random FSQ tokenizer fitted on the real LibriVox
utterances of the batch: a padded batch of 3 cuts of 1.6, 1.2 and 0.5 s (39, 29 and 12 encoder
frames, so 5, 4 and 2 chunks of 8).

The DDP test spawns 2 real gloo processes on CPU (about 10 s, mostly imports).
"""

import math
from pathlib import Path

import pytest
import torch

from chunkssl_espnet.copy_append import copy_append_forward
from chunkssl_espnet.features import apply_mvn, compute_mvn_stats, kaldi_fbank, load_wav
from chunkssl_espnet.masking import utterance_masks
from chunkssl_espnet.ssl_model import MAX_GLOBAL_BATCH, ChunkSSLModel

REPO = Path(__file__).resolve().parents[1]
CUTS = [(1, 25600), (4, 19200), (0, 8000)]  # (utterance index, samples)
CHUNK = 8
TINY = [
    "--encoder_conf", "output_size=16", "--encoder_conf", "attention_heads=2",
    "--encoder_conf", "linear_units=32", "--encoder_conf", "num_blocks=2",
    "--encoder_conf", "cnn_module_kernel=5", "--encoder_conf", "dropout_rate=0.0",
    "--encoder_conf", "dynamic_chunk_training=false",
    "--encoder_conf", f"static_chunk_size={CHUNK}",
    "--encoder_conf", f"decoding_chunk_size={CHUNK}",
]  # fmt: skip
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, librivox_dir):
    """The model, its fitted tokenizer, the padded batch and the reference normalised fbank."""
    from chunkssl_espnet.espnet_plugin import ChunkSSLTask
    from chunkssl_espnet.features import save_mvn_stats
    from chunkssl_espnet.tokenizer import build_tokenizer

    tmp = tmp_path_factory.mktemp("ssl_model")
    wavs = sorted(librivox_dir.glob("*.wav"))
    audio = [load_wav(wavs[i])[0][:n] for i, n in CUTS]
    raw = [kaldi_fbank(a) for a in audio]
    stats = compute_mvn_stats(raw)
    save_mvn_stats(stats, tmp / "feats_stats.npz")
    normed = [apply_mvn(f, stats) for f in raw]  # (T_i, 80) each, the independent reference
    tok = build_tokenizer("random").fit([(f[None], torch.tensor([f.shape[0]])) for f in normed])
    tok.save(tmp / "tok")
    args = ChunkSSLTask.get_parser().parse_args([
        "--config", str(REPO / "conf/ssl_chunk_tiny.yaml"), *TINY,
        "--normalize_conf", f"stats_file={tmp / 'feats_stats.npz'}",
        "--model_conf", f"tokenizer_dir={tmp / 'tok'}", "--output_dir", str(tmp / "exp"),
    ])  # fmt: skip
    torch.manual_seed(0)
    model = ChunkSSLTask.build_model(args)
    assert isinstance(model, ChunkSSLModel)
    speech = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    lens = torch.tensor([a.numel() for a in audio])
    return {"model": model, "tok": tok, "speech": speech, "lens": lens, "normed": normed}


def _encode(model, speech, lens, training: bool, seed: int = 0):
    model.train(training)
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.encode(speech, lens)


def _model_feats(model, speech, lens):
    """The normalised fbank the model computes: (B, T, 80), (B,)."""
    with torch.no_grad():
        feats, flens = model._extract_feats(speech, lens)
        return model.normalize(feats, flens)


def test_targets_are_codes_of_clean_fbank_frames(setup):
    """Target j of an utterance is the tokenizer's code of its normalised clean fbank frames
    4j..4j+3, computed here utterance by utterance; -1 beyond its length; masking leaves them
    unchanged (two training calls draw different masks and give the same targets)."""
    m, tok = setup["model"], setup["tok"]
    out = _encode(m, setup["speech"], setup["lens"], training=True, seed=1)
    again = _encode(m, setup["speech"], setup["lens"], training=True, seed=2)
    assert not torch.equal(out["loss_mask"], again["loss_mask"])
    assert torch.equal(out["fsq_targets"], again["fsq_targets"])
    targets = out["fsq_targets"]
    assert targets.shape == (3, 39, 3) and targets.dtype == torch.int64
    for b, f in enumerate(setup["normed"]):
        n = f.shape[0] // 4
        stacked = f[: 4 * n].reshape(n, 4 * 80)  # row j = frames 4j, 4j+1, 4j+2, 4j+3
        ref = tok.fsq.group_indices(tok.fsq.quantize(tok.project(stacked)), 3)
        agree = (targets[b, :n] == ref).all(-1).float().mean().item()
        assert agree == 1.0, (b, agree)
        assert (targets[b, n:] == -1).all()
        assert len(set(ref[:, 0].tolist())) > n // 3  # the codes move with the speech


def test_chunked_loss_mask_is_masked_valid_predicted(setup):
    """Chunk size 8: the loss mask is the drawn span mask on valid frames of the chunks after the
    first, never a first-chunk or padding frame, with ``floor(0.45 n + u)`` (u in [0, 1), at most
    n - 1) masked frames per predicted chunk of n frames; the scored outputs are those of the
    copy-and-append pass over the fbank masked with the same seeds."""
    m = setup["model"]
    out = _encode(m, setup["speech"], setup["lens"], training=False)
    feats, flens = _model_feats(m, setup["speech"], setup["lens"])
    olens = m.encoder.embed_lengths(flens)
    assert olens.tolist() == [39, 29, 12]
    seeds = [m.valid_seed * MAX_GLOBAL_BATCH + i for i in range(3)]
    assert m.mask_seeds(3) == seeds
    frame_mask, masked = utterance_masks(feats, flens, olens, CHUNK, seeds)
    pos = torch.arange(frame_mask.shape[1])[None, :]
    predicted = (pos >= CHUNK) & (pos < olens[:, None])
    loss_mask = out["loss_mask"]
    assert torch.equal(loss_mask, frame_mask & predicted)
    assert not loss_mask[:, :CHUNK].any() and not (loss_mask & (pos >= olens[:, None])).any()
    for b, n_valid in enumerate(olens.tolist()):
        for s in range(CHUNK, n_valid, CHUNK):
            n = min(CHUNK, n_valid - s)
            k = int(loss_mask[b, s : s + n].sum())
            assert math.floor(0.45 * n) <= k <= min(math.floor(0.45 * n) + 1, n - 1), (b, s, k)
    assert int(loss_mask.sum()) > 10
    ref = copy_append_forward(m.encoder, feats, flens, CHUNK, frame_mask, -1, masked)
    assert (out["encoder_output"][-1] - ref.copies).abs().max() < 1e-5
    assert len(out["encoder_output"]) == 2 and torch.equal(out["encoder_output_lengths"], olens)


def test_offline_branch_masks_the_utterance_itself(setup):
    """Chunk size -1: no copies; the loss mask is the span mask on every valid frame (the first
    8 too), ``floor(0.45 n + u)`` frames of the n of each utterance, and the output is the
    encoder's over the masked utterance, which differs from its output over the clean one."""
    m = setup["model"]
    m.encoder.set_decoding_chunk(-1)
    try:
        out = _encode(m, setup["speech"], setup["lens"], training=False)
    finally:
        m.encoder.set_decoding_chunk(CHUNK)
    feats, flens = _model_feats(m, setup["speech"], setup["lens"])
    olens = m.encoder.embed_lengths(flens)
    frame_mask, masked = utterance_masks(feats, flens, olens, -1, m.mask_seeds(3))
    valid = torch.arange(frame_mask.shape[1])[None, :] < olens[:, None]
    loss_mask = out["loss_mask"]
    assert torch.equal(loss_mask, frame_mask) and not (frame_mask & ~valid).any()
    assert loss_mask[:, :CHUNK].any()
    for b, n in enumerate(olens.tolist()):
        assert math.floor(0.45 * n) <= int(loss_mask[b].sum()) <= math.floor(0.45 * n) + 1
    with torch.no_grad():
        on_masked = m.encoder.forward_masked(masked, flens, -1, -1)[0]
        on_clean = m.encoder.forward_masked(feats, flens, -1, -1)[0]
    y = out["encoder_output"][-1]
    assert (y - on_masked)[valid].abs().max() < 1e-5
    assert (y - on_clean)[loss_mask].abs().mean() > 0.1


def test_eval_masks_are_fixed_training_masks_are_not(setup):
    m, speech, lens = setup["model"], setup["speech"], setup["lens"]
    a = _encode(m, speech, lens, training=False, seed=1)
    b = _encode(m, speech, lens, training=False, seed=2)  # the global RNG does not matter
    assert torch.equal(a["loss_mask"], b["loss_mask"])
    assert torch.equal(a["encoder_output"][-1], b["encoder_output"][-1])
    c = _encode(m, speech, lens, training=True, seed=1)
    d = _encode(m, speech, lens, training=True, seed=2)
    e = _encode(m, speech, lens, training=True, seed=1)
    assert not torch.equal(c["loss_mask"], d["loss_mask"])
    assert torch.equal(c["loss_mask"], e["loss_mask"])  # reproducible from ESPnet's seed
    m.train(False)
    m.valid_seed = 7
    try:
        f = _encode(m, speech, lens, training=False)
    finally:
        m.valid_seed = 0
    assert not torch.equal(a["loss_mask"], f["loss_mask"])


def _rank_worker(rank: int, world: int, init_file: str, model, speech, lens, out_dir: str):
    """One DDP rank: encode the shard ``batch[rank::world]`` in eval and in training mode."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        shard, shard_lens = speech[rank::world], lens[rank::world]
        shard = shard[:, : int(shard_lens.max())]
        result = {"seeds_eval": None, "seeds_train": None}
        for training in (False, True):
            model.train(training)
            torch.manual_seed(0)  # ESPnet seeds every rank alike
            seeds = model.mask_seeds(shard.shape[0])
            torch.manual_seed(0)
            with torch.no_grad():
                out = model.encode(shard, shard_lens)
            key = "train" if training else "eval"
            result[f"seeds_{key}"] = seeds
            result[f"mask_{key}"] = out["loss_mask"]
            result[f"out_{key}"] = out["encoder_output"][-1]
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_mask_their_shard_like_one_process(setup, tmp_path):
    """2 real gloo ranks over the global batch [A, A, B, B] (A, B: the 1.6 s and 1.2 s cuts):
    each rank holds the same audio [A, B], yet local utterance i of rank r gets the seed, the
    mask and the output of global utterance r + 2 i of a single-process step, so the two ranks
    mask differently, in eval and in training."""
    import torch.multiprocessing as mp

    m = setup["model"]
    speech = setup["speech"][[0, 0, 1, 1]]
    lens = setup["lens"][[0, 0, 1, 1]]
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), m, speech, lens, str(tmp_path)),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    olens = m.encoder.embed_lengths(_model_feats(m, speech, lens)[1])
    for key, training in (("eval", False), ("train", True)):
        m.train(training)
        torch.manual_seed(0)
        seeds = m.mask_seeds(4)
        one = _encode(m, speech, lens, training=training, seed=0)
        for r, res in enumerate(ranks):
            assert res[f"seeds_{key}"] == seeds[r::2], (key, r)
            for i in range(2):
                g = r + 2 * i
                n = int(olens[g])
                assert torch.equal(res[f"mask_{key}"][i, :n], one["loss_mask"][g, :n]), (key, r)
                diff = (res[f"out_{key}"][i, :n] - one["encoder_output"][-1][g, :n]).abs()
                assert diff.max() < 1e-5, (key, r, i)
        assert not torch.equal(ranks[0][f"mask_{key}"], ranks[1][f"mask_{key}"])  # same audio

"""FSQ tokenizers, codebook usage and the tokenizer_train CLI (docs/method.md §3)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from chunkssl_espnet.bin import tokenizer_train
from chunkssl_espnet.features import apply_mvn, compute_mvn_stats, kaldi_fbank, load_wav
from chunkssl_espnet.tokenizer import (
    TOKENIZERS,
    FSQTokenizer,
    RandomFSQTokenizer,
    TrainedFSQTokenizer,
    build_tokenizer,
    codebook_usage,
    load_tokenizer,
    train_autoencoder,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def librivox_batches(librivox_dir):
    """The 5 utterances as normalised fbank, one (feats (1, T, 80), lens (1,)) batch each."""
    raw = [kaldi_fbank(*load_wav(p)) for p in sorted(librivox_dir.glob("*.wav"))]
    stats = compute_mvn_stats(raw)
    return [(apply_mvn(f, stats)[None], torch.tensor([f.shape[0]])) for f in raw]


@pytest.fixture(scope="module")
def trained_2m(librivox_batches):
    tok = TrainedFSQTokenizer("2M", hidden=128, seed=0)
    err = train_autoencoder(tok, librivox_batches, epochs=20, batch_size=64, progress=False)
    return tok, err


def _usage(tok: FSQTokenizer, batches) -> dict:
    idx = torch.cat([tok(f, n)[0].flatten() for f, n in batches])
    grp = torch.cat([tok.group_targets(f, n, 3)[0].reshape(-1, 3) for f, n in batches])
    return codebook_usage(idx, grp, tok.fsq.group_sizes(3))


def _synthetic(seed: int = 0, batch: int = 3, frames: int = 50):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, frames, 80, generator=g)
    lens = torch.tensor([frames] + [frames - 7 * (i + 1) for i in range(batch - 1)])
    return feats, lens


def _check_codebook_is_used(usage: dict) -> None:
    assert usage["num_frames"] == 614  # 2463 fbank frames of 5 utterances, 4 per target
    assert usage["distinct_indices"] > 0.75 * usage["num_frames"]
    for ppl, vocab in zip(usage["group_perplexity"], usage["group_sizes"]):
        assert ppl > vocab / 4


def test_random_2m_uses_its_codebook_on_librivox(librivox_batches):
    tok = RandomFSQTokenizer("2M", seed=0).fit(librivox_batches)
    _check_codebook_is_used(_usage(tok, librivox_batches))


def test_trained_2m_uses_its_codebook_on_librivox(librivox_batches, trained_2m):
    tok, err = trained_2m
    assert err < 0.4  # MSE per value of normalised fbank; predicting the mean gives 1.0
    _check_codebook_is_used(_usage(tok, librivox_batches))
    assert all(not p.requires_grad for p in tok.parameters())


def test_targets_shapes_padding_and_batch_invariance(librivox_batches):
    tok = RandomFSQTokenizer("2M", seed=0).fit(librivox_batches)
    feats = torch.nn.utils.rnn.pad_sequence([f[0] for f, _ in librivox_batches], batch_first=True)
    lens = torch.cat([n for _, n in librivox_batches])
    idx, out_lens = tok(feats, lens)
    grp, grp_lens = tok.group_targets(feats, lens)
    assert idx.dtype == torch.int64 and idx.shape == (5, feats.shape[1] // 4)
    assert grp.shape == (*idx.shape, 3) and torch.equal(out_lens, lens // 4)
    assert torch.equal(grp_lens, out_lens)
    for b, (f, n) in enumerate(librivox_batches):
        alone, _ = tok(f, n)
        valid = int(out_lens[b])
        assert torch.equal(idx[b, :valid], alone[0])
        assert (idx[b, valid:] == -1).all() and (grp[b, valid:] == -1).all()
    assert idx[idx >= 0].max() < tok.fsq.codebook_size
    joined = grp[..., 0] + 125 * grp[..., 1] + 125**2 * grp[..., 2]
    assert torch.equal(joined[idx >= 0], idx[idx >= 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(tok(feats, lens)[0], idx)  # fp32 inside autocast


@pytest.mark.parametrize("whiten", [False, True])
def test_random_standardisation(librivox_batches, whiten):
    tok = RandomFSQTokenizer("2M", seed=0, whiten=whiten).fit(librivox_batches)
    x = torch.cat([tok.stack_input(f, n)[0][0] for f, n in librivox_batches])
    z = tok.project(x) / tok.scale  # (N, 9)
    cov = torch.cov(z.T, correction=0)
    assert torch.allclose(z.mean(0), torch.zeros(9), atol=1e-4)
    assert torch.allclose(cov.diagonal(), torch.ones(9), atol=1e-3)
    off_diag = (cov - torch.diag(cov.diagonal())).abs().max()
    assert off_diag < 1e-3 if whiten else off_diag > 0.1  # random projections are correlated


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_determinism_by_seed(kind):
    feats, lens = _synthetic()

    def make(seed: int) -> FSQTokenizer:
        tok = build_tokenizer(
            kind, levels="1k", seed=seed, **({"hidden": 32} if kind == "trained" else {})
        )
        if kind == "random":
            return tok.fit([(feats, lens)])
        train_autoencoder(tok, [(feats, lens)], epochs=2, batch_size=16, progress=False)
        return tok

    a, b, c = make(0), make(0), make(1)
    assert torch.equal(a(feats, lens)[0], b(feats, lens)[0])
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a(feats, lens)[0], c(feats, lens)[0])


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_save_load_round_trip(tmp_path, kind):
    feats, lens = _synthetic(1)
    tok = build_tokenizer(kind, levels=[8, 5, 5, 5], seed=3)
    if kind == "random":
        tok.fit([(feats, lens)])
    else:
        train_autoencoder(tok, [(feats, lens)], epochs=1, batch_size=32, progress=False)
    stats = compute_mvn_stats([feats[0]])
    tok.set_mvn(stats, "unit test")
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [
        "config.json",
        "feats_stats.npz",
        "model.pt",
    ]
    loaded = load_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tok) and loaded.config() == tok.config()
    assert torch.equal(loaded(feats, lens)[0], tok(feats, lens)[0])
    assert torch.equal(loaded.group_targets(feats, lens)[0], tok.group_targets(feats, lens)[0])
    assert np.array_equal(loaded.mvn_stats["sum"], stats["sum"])
    assert loaded.mvn_source == "unit test"
    assert all(not p.requires_grad for p in loaded.parameters())


def test_clear_errors(tmp_path):
    tok = RandomFSQTokenizer("1k")
    feats, lens = _synthetic()
    with pytest.raises(RuntimeError, match="fit"):
        tok(feats, lens)
    tok.fit([(feats, lens)])
    with pytest.raises(ValueError, match="80"):
        tok(torch.zeros(2, 40, 40), torch.tensor([40, 40]))
    with pytest.raises(ValueError, match="longer"):
        tok(feats, torch.tensor([51, 50, 50]))
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer("kmeans")
    with pytest.raises(ValueError, match="level"):
        build_tokenizer("random", levels=[5, 1])
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_tokenizer(tmp_path / "no_such_dir")
    tok.save(tmp_path / "tok")
    (tmp_path / "tok" / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"tok.*corrupt.*model\.pt"):
        load_tokenizer(tmp_path / "tok")
    (tmp_path / "tok" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tok.*corrupt config\.json"):
        load_tokenizer(tmp_path / "tok")
    (tmp_path / "tok" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"tok.*model\.pt is missing"):
        load_tokenizer(tmp_path / "tok")
    tok.save(tmp_path / "tok2")
    cfg = json.loads((tmp_path / "tok2" / "config.json").read_text())
    cfg["conf"]["levels"] = [5, 5]
    (tmp_path / "tok2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"tok2.*mismatching model\.pt"):
        load_tokenizer(tmp_path / "tok2")


def test_codebook_usage_by_hand():
    idx = torch.tensor([0, 0, 7, 7, -1])
    grp = torch.tensor([[0, 0], [0, 0], [1, 1], [1, 1], [-1, -1]])
    usage = codebook_usage(idx, grp, [4, 2])
    assert usage["num_frames"] == 4 and usage["distinct_indices"] == 2
    assert usage["codebook_size"] == 8
    assert usage["group_perplexity"] == pytest.approx([2.0, 2.0])
    assert usage["group_used_fraction"] == [0.5, 1.0]


# ------------------------------------------------------------------------------------------------
# CLI


def _data_dir(tmp_path: Path, librivox_dir: Path) -> Path:
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    wavs = sorted(librivox_dir.glob("*.wav"))
    (data / "wav.scp").write_text("".join(f"{p.stem} {p}\n" for p in wavs))
    return data


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "chunkssl_espnet.bin.tokenizer_train", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", ["random", "trained"])
def test_cli_end_to_end(tmp_path, librivox_dir, librivox_batches, kind):
    data = _data_dir(tmp_path, librivox_dir)
    out = tmp_path / f"tok_{kind}"
    proc = _cli("--kind", kind, "--levels", "2M", "--data_dir", str(data), "--out_dir", str(out),
                "--epochs", "1", "--seed", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("config.json", "model.pt", "feats_stats.npz", "usage.json"):
        assert (out / name).is_file(), name
    usage = json.loads((out / "usage.json").read_text())
    assert usage["kind"] == kind and usage["num_utts"] == 5 and usage["num_frames"] == 614
    assert usage["codebook_size"] == 5**9 and len(usage["group_perplexity"]) == 3
    assert f"distinct indices: {usage['distinct_indices']} of 1953125" in proc.stdout
    assert "perplexity" in proc.stdout
    if kind == "trained":
        assert 0 < usage["reconstruction_mse"] < 1.5
        assert "reconstruction error" in proc.stdout
    # The saved tokenizer reproduces the report on the CLI's own (normalised) features.
    tok = load_tokenizer(out)
    assert tok.mvn_source == "computed by tokenizer_train"
    assert int(tok.mvn_stats["count"]) == sum(int(n) for _, n in librivox_batches)
    assert _usage(tok, librivox_batches)["distinct_indices"] == usage["distinct_indices"]


def test_cli_error_names_utterance_and_file(tmp_path, librivox_dir):
    data = _data_dir(tmp_path, librivox_dir)
    with open(data / "wav.scp", "a") as f:
        f.write(f"utt_missing {tmp_path / 'missing.wav'}\n")
    with pytest.raises(SystemExit) as exc:
        tokenizer_train.main(["--data_dir", str(data), "--out_dir", str(tmp_path / "out")])
    message = str(exc.value.code)
    assert message.startswith("tokenizer_train: error:")
    assert "utt_missing" in message and "missing.wav" in message
    assert not (tmp_path / "out").exists()


def test_cli_feats_scp_and_stats_file(tmp_path, librivox_dir, capsys):
    raw = {p.stem: kaldi_fbank(*load_wav(p)) for p in sorted(librivox_dir.glob("*.wav"))}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as w:
        for uttid, f in raw.items():
            w(uttid, f.numpy())
    stats = compute_mvn_stats(raw.values())
    np.savez(tmp_path / "stats.npz", **stats)
    out = tmp_path / "tok"
    tokenizer_train.main(["--kind", "random", "--levels", "1k", "--feats_scp",
                          str(tmp_path / "feats.scp"), "--stats_file", str(tmp_path / "stats.npz"),
                          "--out_dir", str(out), "--max_utts", "3"])  # fmt: skip
    usage = json.loads((out / "usage.json").read_text())
    assert usage["num_utts"] == 3 and usage["codebook_size"] == 1000
    assert usage["num_frames"] == sum(f.shape[0] // 4 for f in list(raw.values())[:3])
    tok = load_tokenizer(out)
    assert tok.mvn_source == str(tmp_path / "stats.npz")
    assert usage["distinct_indices"] > 100 and math.isfinite(usage["group_perplexity"][0])
    assert "distinct indices" in capsys.readouterr().out

"""Registration in ESPnet's ClassChoices, and what importing the plug-in does to the process."""

import subprocess
import sys

import pytest
import torch

from chunkssl_espnet import espnet_plugin
from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.streaming import check_streamable_normalize


def test_keys_are_registered_in_every_task():
    for task in (espnet_plugin._asr, espnet_plugin._ssl, espnet_plugin._st):
        assert task.encoder_choices.get_class("chunk_conformer") is ChunkConformerEncoder
        assert "kaldi_fbank" in task.frontend_choices.classes
    assert "group_fsq" in espnet_plugin._ssl.loss_choices.classes
    assert "chunk_ssl" in espnet_plugin._ssl.model_choices.classes


def test_registering_again_is_a_no_op():
    before = {k: dict(t.encoder_choices.classes) for k, t in
              (("asr", espnet_plugin._asr), ("st", espnet_plugin._st))}
    espnet_plugin.register()
    for key, task in (("asr", espnet_plugin._asr), ("st", espnet_plugin._st)):
        assert dict(task.encoder_choices.classes) == before[key]


def test_a_key_held_by_another_class_is_refused():
    choices = espnet_plugin._asr.encoder_choices

    class Other(ChunkConformerEncoder):
        pass

    with pytest.raises(ValueError, match="'chunk_conformer'.*held by chunkssl_espnet"):
        espnet_plugin._add(choices, "chunk_conformer", Other)
    assert choices.classes["chunk_conformer"] is ChunkConformerEncoder
    # ESPnet's own keys are not overwritten either
    with pytest.raises(ValueError, match="'conformer'.*held by espnet2"):
        espnet_plugin._add(choices, "Conformer", ChunkConformerEncoder)
    assert choices.classes["conformer"] is not ChunkConformerEncoder
    with pytest.raises(TypeError, match="is not a"):
        espnet_plugin._add(choices, "not_an_encoder", torch.nn.Linear)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_library_import_leaves_the_streams_alone_and_entry_points_are_quiet():
    """As a library, importing the plug-in shows what ESPnet prints (the offline nltk errors go
    to stderr as with ``import espnet2.tasks.asr``); an entry point hides them."""
    lib = _run("import chunkssl_espnet.espnet_plugin")
    assert lib.returncode == 0, lib.stderr[-2000:]
    assert "[nltk_data]" in lib.stderr
    cli = subprocess.run([sys.executable, "-m", "chunkssl_espnet.bin.asr_train", "--help"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "--encoder" in cli.stdout and "chunk_conformer" in cli.stdout
    assert "[nltk_data]" not in cli.stdout + cli.stderr


def test_streaming_refuses_a_normalize_it_cannot_reproduce(tmp_path):
    import numpy as np
    from espnet2.layers.global_mvn import GlobalMVN
    from espnet2.layers.utterance_mvn import UtteranceMVN

    stats = tmp_path / "feats_stats.npz"
    np.savez(stats, count=np.array([10.0]), sum=np.zeros(80), sum_square=np.full(80, 10.0))
    check_streamable_normalize(None, "conf.yaml")
    check_streamable_normalize(GlobalMVN(stats), "conf.yaml")
    with pytest.raises(ValueError, match="conf.yaml: streaming cannot reproduce normalize: "
                                         "UtteranceMVN"):
        check_streamable_normalize(UtteranceMVN(), "conf.yaml")


class _EncDec(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 3)
        self.decoder = torch.nn.Linear(3, 2)


def _asr_args(*argv):
    return espnet_plugin.ChunkASRTask.get_parser().parse_args(
        ["--optim", "adam", "--optim_conf", "lr=0.01", *argv])


def test_encoder_lr_scale_gives_the_encoder_its_own_rate_through_the_scheduler():
    from espnet2.schedulers.warmup_lr import WarmupLR

    model = _EncDec()
    (plain,) = espnet_plugin.ChunkASRTask.build_optimizers(_asr_args(), model)
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["lr"] == 0.01
    (optim,) = espnet_plugin.ChunkASRTask.build_optimizers(
        _asr_args("--encoder_lr_scale", "0.1"), model)
    enc, rest = optim.param_groups
    assert {id(p) for p in enc["params"]} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.decoder.parameters()}
    sched = WarmupLR(optim, warmup_steps=10)
    for _ in range(15):
        optim.step()
        sched.step()
        assert enc["lr"] == pytest.approx(0.1 * rest["lr"], rel=1e-12)
    # an Adam step moves each parameter by about its group's rate: the encoder 10x less
    (optim,) = espnet_plugin.ChunkASRTask.build_optimizers(
        _asr_args("--encoder_lr_scale", "0.1"), model)
    before = [p.detach().clone() for p in (model.encoder.weight, model.decoder.weight)]
    model.decoder(model.encoder(torch.randn(8, 4))).square().sum().backward()
    optim.step()
    moved = [float((p.detach() - b).abs().max()) for p, b in
             zip((model.encoder.weight, model.decoder.weight), before)]
    assert moved[0] == pytest.approx(0.001, rel=1e-3) and moved[1] == pytest.approx(0.01, rel=1e-3)


def test_encoder_lr_scale_rejects_a_negative_scale():
    with pytest.raises(ValueError, match="encoder_lr_scale must be >= 0"):
        espnet_plugin.ChunkASRTask.build_optimizers(_asr_args("--encoder_lr_scale", "-1"),
                                                    _EncDec())

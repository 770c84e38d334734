"""ST through ESPnet's ST task with our encoder: training with an auxiliary source CTC, offline
decoding with ESPnet's st_inference, and streaming ST by local agreement with BLEU and AL."""

import json

import pytest
import torch

from chunkssl_espnet.espnet_plugin import ChunkSTTask
from tests.test_integration_asr import COMMON, REPO, SMALL, _data


@pytest.fixture(scope="module")
def st_exp(tmp_path_factory, librivox_dir):
    from chunkssl_espnet.data.tokens import write_char_token_list

    root = tmp_path_factory.mktemp("st")
    d = _data(root, librivox_dir)
    # a toy "translation": the upper-cased transcript, so the target side has its own token list
    lines = (d / "text").read_text().splitlines()
    (d / "text.tgt").write_text("".join(f"{ln.split(' ', 1)[0]} {ln.split(' ', 1)[1].upper()}\n"
                                        for ln in lines))
    write_char_token_list(d / "text", root / "src_tokens.txt")
    write_char_token_list(d / "text.tgt", root / "tgt_tokens.txt")
    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{d}/text.tgt,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{d}/text,src_text,text"]
    conf = str(REPO / "conf/st_chunk_tiny.yaml")
    ChunkSTTask.main(cmd=["--collect_stats", "true", "--config", conf, "--normalize", "none",
                          "--token_list", str(root / "tgt_tokens.txt"),
                          "--src_token_list", str(root / "src_tokens.txt"), "--token_type", "char",
                          "--src_token_type", "char", *data,
                          "--train_shape_file", f"{d}/wav.scp", "--valid_shape_file",
                          f"{d}/wav.scp", "--output_dir", str(root / "stats"), *COMMON, *SMALL])
    ChunkSTTask.main(cmd=["--config", conf,
                          "--normalize_conf", f"stats_file={root}/stats/train/feats_stats.npz",
                          "--token_list", str(root / "tgt_tokens.txt"),
                          "--src_token_list", str(root / "src_tokens.txt"), "--token_type", "char",
                          "--src_token_type", "char", *data,
                          "--train_shape_file", f"{root}/stats/train/speech_shape",
                          "--valid_shape_file", f"{root}/stats/valid/speech_shape",
                          "--output_dir", str(root / "st"), "--max_epoch", "8",
                          "--optim_conf", "lr=0.005", "--scheduler_conf", "warmup_steps=4",
                          "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=64",
                          "--decoder_conf", "attention_heads=2", *COMMON, *SMALL])
    return root, d


def test_st_trains_with_source_ctc(st_exp):
    root, _ = st_exp
    ckpt = torch.load(root / "st/checkpoint.pth", map_location="cpu", weights_only=False)
    stats = ckpt["reporter"]["stats"]
    assert stats[1]["train"]["loss_asr"] > 0  # the auxiliary source CTC is trained
    assert stats[8]["train"]["loss"] < stats[1]["train"]["loss"]


def test_st_offline_and_streaming(st_exp, tmp_path):
    from chunkssl_espnet.bin.st_inference import main as st_offline
    from chunkssl_espnet.bin.st_inference_streaming import main as st_stream

    root, d = st_exp
    model = ["--st_train_config", str(root / "st/config.yaml"),
             "--st_model_file", str(root / "st/valid.acc.ave.pth")]
    st_offline([*model, "--data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                "--output_dir", str(tmp_path / "off"), "--beam_size", "2", "--maxlenratio", "0.3",
                "--ngpu", "0", "--decoding_chunk_size", "16"])
    assert len((tmp_path / "off/1best_recog/text").read_text().splitlines()) == 5
    st_stream([*model, "--data_dir", str(d), "--output_dir", str(tmp_path / "on"),
               "--chunk_size", "16", "--beam_size", "2", "--maxlenratio", "0.3",
               "--ref", str(d / "text.tgt")])
    summary = json.loads((tmp_path / "on/summary.json").read_text())
    assert {"bleu", "average_lagging_ms", "rtf", "mean_chunk_latency_ms"} <= set(summary)
    per_utt = json.loads((tmp_path / "on/latency.json").read_text())
    hyps = dict(ln.split(" ", 1) if " " in ln else (ln, "")
                for ln in (tmp_path / "on/text").read_text().splitlines())
    assert set(hyps) == set(per_utt) and len(hyps) == 5
    refs = dict(ln.split(" ", 1) for ln in (d / "text.tgt").read_text().splitlines())
    for utt, entry in per_utt.items():
        delays = entry["delays_ms"]
        assert delays == sorted(delays)  # committed tokens are never retracted or re-timed
        assert all(0 < x <= entry["audio_s"] * 1000 + 1e-6 for x in delays)
        assert (entry["average_lagging_ms"] is None) == (not delays)
        # AL in one unit: a delay per output word (the reference length counts words)
        assert len(delays) == len(hyps[utt].split()), (utt, hyps[utt])
        assert len(entry["token_delays_ms"]) >= len(delays)
        if delays and len(delays) <= len(refs[utt].split()):
            # a causal system that writes no more words than the reference lags, never leads
            assert entry["average_lagging_ms"] >= 0, (utt, entry)
    assert any(e["delays_ms"] for e in per_utt.values()), "no utterance produced a translation"


def test_streaming_st_silences_only_espnet_beam_search(st_exp, librivox_dir, caplog):
    """ESPnet's beam search logs every hypothesis at INFO, after every chunk: the ST decoder
    hides those records only. A probe logging from inside the search (a forward hook on the
    decoder's output layer) still comes through, so logging is not disabled as a whole, and the
    search logger's level is restored afterwards."""
    import logging

    from chunkssl_espnet.features import load_wav
    from chunkssl_espnet.streaming import Speech2TextStreamingST, decode_stream

    root, _ = st_exp
    st = Speech2TextStreamingST(root / "st/config.yaml", root / "st/valid.acc.ave.pth",
                                chunk_size=16, beam_size=2, maxlenratio=0.3)
    probe = logging.getLogger("tests.probe")
    st.model.decoder.output_layer.register_forward_hook(
        lambda *_: probe.info("decoder step inside the beam search"))
    search = logging.getLogger("espnet.nets.beam_search")
    level = search.level
    audio, _ = load_wav(sorted(librivox_dir.glob("*.wav"))[1])
    caplog.set_level(logging.INFO)
    decode_stream(st, audio[:48000], [8000])
    assert any(r.name == "tests.probe" for r in caplog.records)
    assert not [r for r in caplog.records if r.name == search.name and r.levelno < logging.WARNING]
    assert search.level == level

"""ONNX export and sherpa-onnx decoding of a trained streaming CTC model (docs/deploy.md).

One module-scoped model: ESPnet statistics and ASR training on the 5 real LibriVox utterances
(it overfits them, so CTC greedy transcribes every one), with left chunks 2 and 4 in training,
exported by the real entry point at two chunk sizes. onnxruntime on the graph must equal
``forward_chunk`` + CTC log-softmax chunk after chunk; sherpa-onnx's ``OnlineRecognizer``, fed
random 10-500 ms pieces, must give our streaming CTC greedy tokens exactly.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("sherpa_onnx")

from chunkssl_espnet.deploy.onnx_step import StreamingStep  # noqa: E402
from chunkssl_espnet.deploy.sherpa import (  # noqa: E402
    create_recognizer,
    decode_pieces,
    tail_padding,
)
from chunkssl_espnet.espnet_plugin import ChunkASRTask  # noqa: E402
from chunkssl_espnet.features import kaldi_fbank, load_wav  # noqa: E402
from chunkssl_espnet.streaming import (  # noqa: E402
    Speech2TextStreaming,
    decode_stream,
    random_piece_sizes,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--encoder_conf", "output_size=32", "--encoder_conf", "attention_heads=2",
         "--encoder_conf", "linear_units=64", "--encoder_conf", "num_blocks=2",
         "--encoder_conf", "cnn_module_kernel=7", "--encoder_conf", "left_chunks_choices=[2,4]",
         "--encoder_conf", "dropout_rate=0.0"]
TRAIN = ["--ngpu", "0", "--num_workers", "0", "--batch_type", "unsorted", "--batch_size", "1",
         "--use_tensorboard", "false", "--seed", "0", "--max_epoch", "60",
         "--optim_conf", "lr=0.01", "--scheduler_conf", "warmup_steps=25", "--specaug", "none",
         "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=64",
         "--decoder_conf", "attention_heads=2", "--decoder_conf", "dropout_rate=0.0"]
#: (chunk_size, num_left_chunks) of the exports: both left contexts of the training
EXPORTS = [(4, 4), (8, 2)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, librivox_dir):
    from chunkssl_espnet.data.tokens import write_char_token_list
    from tests.test_integration_asr import _data

    root = tmp_path_factory.mktemp("deploy")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        d = _data(root, librivox_dir)
        data = ["--train_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                "--valid_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                "--train_data_path_and_name_and_type", f"{d}/text,text,text",
                "--valid_data_path_and_name_and_type", f"{d}/text,text,text"]
        write_char_token_list(d / "text", root / "tokens.txt")
        conf = ["--config", str(REPO / "conf/asr_chunk_tiny.yaml"), "--token_list",
                "tokens.txt", "--token_type", "char"]
        ChunkASRTask.main(cmd=[*conf, "--collect_stats", "true", "--normalize", "none", *data,
                               "--train_shape_file", f"{d}/wav.scp", "--valid_shape_file",
                               f"{d}/wav.scp", "--output_dir", "stats", *TRAIN, *SMALL])
        ChunkASRTask.main(cmd=[*conf, "--normalize_conf",
                               f"stats_file={root}/stats/train/feats_stats.npz", *data,
                               "--train_shape_file", "stats/train/speech_shape",
                               "--valid_shape_file", "stats/valid/speech_shape",
                               "--output_dir", "asr", *TRAIN, *SMALL])
        for c, left in EXPORTS:
            subprocess.run([sys.executable, "-m", "chunkssl_espnet.bin.export_onnx",
                            "--model_dir", "asr", "--model_file", "valid.acc.ave.pth",
                            "--chunk_size", str(c), "--num_left_chunks", str(left),
                            "--out_dir", f"onnx_c{c}_l{left}", *(["--int8"] if c == 8 else [])],
                           check=True)
        yield root
    finally:
        os.chdir(cwd)


def _wavs(librivox_dir):
    return sorted(librivox_dir.glob("*.wav"))


@pytest.mark.parametrize("chunk,left", EXPORTS)
def test_onnxruntime_equals_forward_chunk(trained, librivox_dir, chunk, left):
    """The graph's log-probabilities are those of forward_chunk + CTC log-softmax, chunk after
    chunk, on the real utterances (the MVN, the sub-sampling context state, the cache masks)."""
    import onnxruntime as ort

    from chunkssl_espnet.encoder.subsampling import LEFT_CONTEXT

    model, _ = ChunkASRTask.build_model_from_file(trained / "asr/config.yaml",
                                                  trained / "asr/valid.acc.ave.pth", "cpu")
    model.eval()
    step = StreamingStep(model, chunk, left)
    sess = ort.InferenceSession(str(trained / f"onnx_c{chunk}_l{left}/model.onnx"),
                                providers=["CPUExecutionProvider"])
    worst = 0.0
    for wav in _wavs(librivox_dir):
        audio, _ = load_wav(wav)
        feats = kaldi_fbank(audio)[None]
        norm, _ = model.normalize(feats.clone(), torch.tensor([feats.shape[1]]))
        att, cnn = model.encoder.init_cache(1)
        a_, c_, off = (t.numpy() for t in step.init_states())
        w = step.window
        for k in range(feats.shape[1] // w):
            lo = w * k - (LEFT_CONTEXT if k else 0)
            with torch.no_grad():
                ys, att, cnn = model.encoder.forward_chunk(norm[:, lo : w * (k + 1)], chunk * k,
                                                           chunk * left, att, cnn)
                ref = model.ctc.log_softmax(ys)[0].numpy()
            lp, a_, c_ = sess.run(None, {
                "x": feats[:, w * k : w * (k + 1)].numpy(), "offset": off,
                "required_cache_size": np.array([chunk * left]), "att_cache": a_,
                "cnn_cache": c_, "att_mask": step.att_mask(torch.from_numpy(off)).numpy()})
            off = off + lp.shape[1]
            worst = max(worst, float(np.abs(lp[0] - ref).max()))
        assert k >= left + 1, wav.name  # the cache was full and slid
    print(f"chunk {chunk}, left {left}: max |log p diff| {worst:.2e}")
    assert worst <= 1e-3


def test_sherpa_fbank_equals_ours(trained, librivox_dir):
    """The runtime's Kaldi fbank (set by feature_config) against the training fbank."""
    rec = create_recognizer(trained / "onnx_c4_l4")
    worst, beyond, values = [], 0, 0
    for wav in _wavs(librivox_dir):
        audio, _ = load_wav(wav)
        ours = kaldi_fbank(audio).numpy()
        s = rec.create_stream()
        s.accept_waveform(16000, audio.numpy())
        s.input_finished()
        theirs = np.asarray(s.get_frames(0, ours.shape[0])).reshape(ours.shape)
        diff = np.abs(ours - theirs)
        worst.append(float(diff.max()))
        beyond += int((diff > 1e-3).sum())
        values += diff.size
    print("max |fbank diff| per clip:", [f"{w:.1e}" for w in worst], f"{beyond} of {values} "
          "values beyond 1e-3")
    # fp32 rounding in silence: the one value beyond 1e-3 (1.6e-3, a log energy of 4.0) is
    # 1.2e-3 from the fp64 fbank in torchaudio's fp32 result, 0.5e-3 in the runtime's
    assert max(worst) <= 2e-3 and beyond <= 1e-4 * values, worst


@pytest.mark.parametrize("chunk,left", EXPORTS)
def test_sherpa_equals_streaming_ctc_greedy(trained, librivox_dir, chunk, left):
    """sherpa-onnx fed random 10-500 ms pieces gives, token for token, our streaming CTC greedy
    search (PyTorch, same chunk size and left chunks, same tail padding), which transcribes."""
    s2t = Speech2TextStreaming(trained / "asr/config.yaml", trained / "asr/valid.acc.ave.pth",
                               chunk_size=chunk, num_left_chunks=left, beam_size=1)
    rec = create_recognizer(trained / f"onnx_c{chunk}_l{left}")
    tokens = s2t.model.token_list
    emitted = []
    for i, wav in enumerate(_wavs(librivox_dir)):
        audio, _ = load_wav(wav)
        audio = torch.cat([audio, torch.zeros(tail_padding(audio.numel(), 4 * chunk))])
        pieces = random_piece_sizes(audio.numel(), seed=i)
        decode_stream(s2t, audio, pieces)
        ours = [tokens[t] for t in s2t.search.greedy]
        theirs = decode_pieces(rec, audio.numpy(), pieces[::-1]).tokens
        assert theirs == ours, wav.name
        emitted.append(len(ours))
    print(f"tokens per utterance: {emitted}")
    assert sum(n >= 3 for n in emitted) >= 0.9 * len(emitted)


def test_sherpa_batch_of_streams_at_different_positions(trained, librivox_dir):
    """Two streams, one started later, decoded by decode_streams calls in turn, give what each
    gives alone."""
    rec = create_recognizer(trained / "onnx_c8_l2")
    audios = []
    for wav in _wavs(librivox_dir)[:2]:
        a, _ = load_wav(wav)
        a = a.numpy()
        audios.append(np.concatenate([a, np.zeros(tail_padding(a.size, 32), np.float32)]))
    alone = [decode_pieces(rec, a, [1600]).tokens for a in audios]
    streams = [rec.create_stream() for _ in audios]
    pos = [0, -8000]  # the second stream starts 0.5 s later
    while any(p < a.size for p, a in zip(pos, audios)):
        for k, (s, a) in enumerate(zip(streams, audios)):
            if 0 <= pos[k] < a.size:
                s.accept_waveform(16000, a[pos[k] : pos[k] + 1600])
                if pos[k] + 1600 >= a.size:
                    s.input_finished()
            pos[k] += 1600
        ready = [s for s in streams if rec.is_ready(s)]
        while ready:
            rec.decode_streams(ready)
            ready = [s for s in streams if rec.is_ready(s)]
    together = [list(rec.get_result_all(s).tokens) for s in streams]
    assert together == alone and all(len(t) >= 3 for t in alone)


def test_int8_export_runs(trained, librivox_dir):
    """The int8 graph holds integer matrix products and decodes (its accuracy is measured by
    the recipe)."""
    import onnx

    d = trained / "onnx_c8_l2"
    ops = {n.op_type for n in onnx.load(str(d / "model.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops and "MatMulInteger" not in {
        n.op_type for n in onnx.load(str(d / "model.onnx")).graph.node}
    assert (d / "model.int8.onnx").stat().st_size < (d / "model.onnx").stat().st_size
    rec = create_recognizer(d, model="model.int8.onnx")
    audio, _ = load_wav(_wavs(librivox_dir)[0])
    assert len(decode_pieces(rec, audio.numpy(), [4000]).tokens) >= 3


def _export(trained, tmp_path, config_edit):
    import yaml

    conf = yaml.safe_load((trained / "asr/config.yaml").read_text())
    config_edit(conf)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    (tmp_path / "valid.acc.ave.pth").symlink_to(trained / "asr/valid.acc.ave.pth")
    return subprocess.run([sys.executable, "-m", "chunkssl_espnet.bin.export_onnx",
                           "--model_dir", str(tmp_path), "--model_file", "valid.acc.ave.pth",
                           "--out_dir", str(tmp_path / "onnx")],
                          capture_output=True, text=True)


@pytest.mark.parametrize("edit,expected", [
    (lambda c: c.update(token_list="missing_tokens.txt"), "missing_tokens.txt: file not found"),
    (lambda c: c.update(encoder="conformer"), "encoder: conformer"),
    (lambda c: c.update(frontend="default"), "frontend: default: refused"),
], ids=["missing-token-list", "not-chunked", "other-frontend"])
def test_export_refuses_bad_models(trained, tmp_path, edit, expected):
    r = _export(trained, tmp_path, edit)
    assert r.returncode != 0
    assert expected in r.stderr and str(tmp_path / "config.yaml") in r.stderr, r.stderr[-800:]
    assert "Traceback" not in r.stderr

"""Every training YAML under conf/ parses and builds its model with the right task (a dry run).

The task of a YAML comes from its file-name prefix, the convention of conf/:

    ssl_*.yaml -> ChunkSSLTask (pre-training)
    asr_*.yaml -> ChunkASRTask (fine-tuning)
    st_*.yaml  -> ChunkSTTask  (speech translation)
    lm_*.yaml  -> ChunkLMTask  (the recipes' token language model)

A YAML with another prefix fails the test: name it by its task, or add its prefix to
``TASK_BY_PREFIX``. The prefix is cross-checked by the parse itself: ESPnet's parser rejects a key
that its task does not know (``loss`` in an ASR parser, ``decoder`` in an SSL parser), so a YAML
under the wrong prefix fails with "unrecognized arguments".

The files are globbed when the tests are collected, so a new preset is tested without editing this
file. Each model is built once, with ESPnet's ``build_model``, ``build_optimizers`` and scheduler
classes as ``main_worker`` does, from the YAML plus the paths a recipe adds on the command line
(stats file, tokenizer directory, token lists), which are made tiny in a temporary directory. The
base and large presets build a full-size model on CPU (seconds; nothing is trained).
"""

from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
CONFIGS = sorted(CONF_DIR.glob("*.yaml"))
TASK_BY_PREFIX = {"ssl_": "ChunkSSLTask", "asr_": "ChunkASRTask", "st_": "ChunkSTTask",
                  "lm_": "ChunkLMTask"}
TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]


def task_name(path: Path) -> str:
    for prefix, name in TASK_BY_PREFIX.items():
        if path.name.startswith(prefix):
            return name
    raise ValueError(
        f"{path}: no task for this file name; training configs are named by their task "
        f"({', '.join(p + '*.yaml' for p in TASK_BY_PREFIX)}) in tests/test_configs.py"
    )


def write_stats(path: Path, dim: int) -> Path:
    """A global MVN stats file in ESPnet's format (count, sum, sum_square) of dimension ``dim``."""
    count = 100.0
    np.savez(path, count=np.array(count), sum=np.zeros(dim), sum_square=np.full(dim, count))
    return path


def required_args(conf: Dict, task: str, tmp: Path) -> List[str]:
    """Command-line arguments a recipe adds to the YAML: paths to stats, tokenizer, token lists."""
    args = ["--output_dir", str(tmp / "exp")]
    if conf.get("normalize") == "global_mvn":
        dim = int((conf.get("frontend_conf") or {}).get("n_mels", 80))
        args += ["--normalize_conf", f"stats_file={write_stats(tmp / 'stats.npz', dim)}"]
    if task == "ChunkSSLTask":
        from chunkssl_espnet.fsq import DEFAULT_LEVELS
        from chunkssl_espnet.tokenizer import build_tokenizer

        levels = {str(x.get("conf", {}).get("levels", DEFAULT_LEVELS)) for x in conf["loss"]}
        assert len(levels) == 1, f"one tokenizer serves all the losses, got levels {levels}"
        tok_dir = tmp / "tokenizer"
        build_tokenizer("random", levels=levels.pop()).save(tok_dir)
        args += ["--model_conf", f"tokenizer_dir={tok_dir}"]
    else:
        token_list = tmp / "tokens.txt"
        token_list.write_text("\n".join(TOKENS) + "\n")
        args += ["--token_list", str(token_list)]
        if task == "ChunkSTTask":
            args += ["--src_token_list", str(token_list)]
    return args


def test_conf_dir_has_configs():
    assert CONFIGS, f"no YAML under {CONF_DIR}"
    names = {task_name(p) for p in CONFIGS}
    assert {"ChunkSSLTask", "ChunkASRTask"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_builds_model(path: Path, tmp_path: Path, capsys):
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.lm.espnet_model import ESPnetLanguageModel
    from espnet2.st.espnet_model import ESPnetSTModel
    from espnet2.tasks.abs_task import scheduler_classes

    from chunkssl_espnet import espnet_plugin
    from chunkssl_espnet.encoder import ChunkConformerEncoder
    from chunkssl_espnet.ssl_model import ChunkSSLModel

    name = task_name(path)
    task = getattr(espnet_plugin, name)
    conf = yaml.safe_load(path.read_text())
    assert isinstance(conf, dict), f"{path} is not a YAML mapping"
    try:
        cmd = ["--config", str(path)] + required_args(conf, name, tmp_path)
        args = task.get_parser().parse_args(cmd)
    except SystemExit:
        err = capsys.readouterr().err[-2000:]
        pytest.fail(f"{path} does not parse as a {name} config:\n{err}")

    model = task.build_model(args)
    expected = {"ChunkSSLTask": ChunkSSLModel, "ChunkASRTask": ESPnetASRModel,
                "ChunkSTTask": ESPnetSTModel, "ChunkLMTask": ESPnetLanguageModel}[name]
    assert isinstance(model, expected), f"{path}: built {type(model).__name__}"
    if name != "ChunkLMTask":  # an LM has no speech encoder
        assert isinstance(model.encoder, ChunkConformerEncoder), f"{path}: not chunk_conformer"
    if name == "ChunkSSLTask":
        assert model.tokenizer is not None
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert num_params > 0

    optimizers = task.build_optimizers(args, model=model)
    for i, optim in enumerate(optimizers, 1):
        suffix = "" if i == 1 else str(i)
        scheduler = getattr(args, f"scheduler{suffix}")
        if scheduler is not None:
            assert scheduler in scheduler_classes, f"{path}: unknown scheduler {scheduler}"
            scheduler_classes[scheduler](optim, **getattr(args, f"scheduler{suffix}_conf"))
    print(f"{path.name}: {name}, {num_params / 1e6:.1f}M trainable parameters")

"""Checks of what an entry point is about to read, before ESPnet reads it.

ESPnet's ``sound`` reader takes audio at any sample rate, and our ``kaldi_fbank`` frontend only
sees tensors: a data set at 8 kHz would be trained on, or decoded, without a word. A transcript
missing for one utterance ends in a ``KeyError`` deep in ESPnet's data loader, an empty one is
trained on, and a misspelled key under ``encoder_conf:`` (or any ``<name>_conf:``) ends in a
``TypeError`` of a constructor that does not say which file holds the key. So the entry points of
``chunkssl_espnet.bin`` (and the recipe's ``stats`` and ``train`` stages, before they start a
process) check their inputs first; every error names the file, the utterance where there is one,
and what to do:

* :func:`check_data_inputs` (no ESPnet import, so it fails in a second rather than after ESPnet's
  10 s import): the files of every ``sound`` stream are readable and sampled at the config's
  ``frontend_conf.fs`` (headers only, about 0.1 ms a file); every ``text`` stream has a non-empty
  transcript for each utterance of its phase's audio; the FSQ tokenizer of
  ``model_conf.tokenizer_dir`` loads.
* :func:`check_training_config` and :func:`check_model_config` (with the plug-in loaded): each
  ``<name>_conf`` holds only keys the chosen class takes; in a model's ``config.yaml``, which
  ESPnet's inference reads without its parser, every top-level key is an option of the task.
  (ESPnet's parser itself refuses an unknown top-level key of a training config, naming the file.)

:func:`exit_on_input_error` turns these errors into one ``error: ...`` line and exit status 1.
"""

import argparse
import contextlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import yaml
from espnet2.utils.nested_dict_action import NestedDictAction

from chunkssl_espnet.data.datadir import DataDirError, check_sample_rates, read_scp
from chunkssl_espnet.frames import SAMPLE_RATE

PathLike = Union[str, os.PathLike]
#: The frontend's default ``fs``.
DEFAULT_FS = SAMPLE_RATE
#: Keys ESPnet writes into a model's config.yaml besides its options.
CONFIG_EXTRA_KEYS = ("version", "distributed", "required")


@contextlib.contextmanager
def exit_on_input_error() -> Iterator[None]:
    """Inside: a user's error (bad data, config or file) exits with one ``error: ...`` line."""
    try:
        yield
    except (DataDirError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e


def option_value(argv: Sequence[str], flag: str) -> Optional[str]:
    """The value of ``flag`` in ``argv`` (the last one given), or None."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument(flag, dest="value")
    return p.parse_known_args(list(argv))[0].value


def load_config(path: Optional[PathLike]) -> Dict[str, Any]:
    """A YAML config as a dict (empty for None)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: a config must be a mapping of options, got {type(conf)}")
    return conf


def _parse(argv: Sequence[str], config_flag: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument(config_flag, dest="config")
    p.add_argument("--frontend_conf", action=NestedDictAction, default={})
    p.add_argument("--model_conf", action=NestedDictAction, default={})
    for phase in ("train", "valid", ""):
        p.add_argument(f"--{phase + '_' if phase else ''}data_path_and_name_and_type",
                       dest=f"{phase}_data", action="append", default=[])
    return p.parse_known_args(list(argv))[0]


def frontend_fs(
    conf: Mapping[str, Any], overrides: Mapping[str, Any], config: Optional[str]
) -> int:
    """The sample rate the model's frontend expects: ``frontend_conf.fs`` of the config, then of
    the command line (``--frontend_conf fs=N``), else the features' 16000 Hz."""
    fs = {**(conf.get("frontend_conf") or {}), **overrides}.get("fs", DEFAULT_FS)
    if isinstance(fs, bool) or not isinstance(fs, int):
        raise ValueError(f"{config or 'command line'}: frontend_conf.fs must be a whole number "
                         f"of Hz, got {fs!r}")
    return fs


def _streams(specs: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``path,name,type`` values as tuples."""
    out = []
    for spec in specs:
        parts = spec.split(",")
        if len(parts) != 3:
            raise ValueError(f"--*data_path_and_name_and_type {spec!r}: expected 'path,name,type'")
        out.append((parts[0], parts[1], parts[2]))
    return out


def check_transcripts(text: PathLike, wav_scp: PathLike) -> None:
    """Every utterance of ``wav_scp`` has a non-empty transcript in ``text``.

    Raises:
        DataDirError: naming ``text``, the utterance and what to do.
    """
    transcripts = read_scp(text)
    for utt in read_scp(wav_scp):
        if utt not in transcripts:
            raise DataDirError(f"{text}: no transcript for utterance '{utt}' of {wav_scp}: add "
                               "it, or drop the utterance (python -m chunkssl_espnet.data fix "
                               "<data dir> keeps the utterances every file has)")
        if not transcripts[utt].strip():
            raise DataDirError(f"{text}: empty transcript for utterance '{utt}': give its text, "
                               "or drop it (python -m chunkssl_espnet.data fix <data dir>)")


def check_data_inputs(argv: Sequence[str], config_flag: str = "--config") -> None:
    """Check the data and the tokenizer an ESPnet command line (training or offline decoding)
    reads; see the module docstring. ``config_flag`` names the option holding the config
    (``--asr_train_config`` for decoding).

    Raises:
        DataDirError, FileNotFoundError, ValueError: the first problem, naming the file.
    """
    args = _parse(argv, config_flag)
    conf = load_config(args.config)
    fs = frontend_fs(conf, args.frontend_conf, args.config)
    for phase in ("train", "valid", ""):
        streams = _streams(getattr(args, f"{phase}_data"))
        sounds = [path for path, _, kind in streams if kind == "sound"]
        for path in sounds:
            check_sample_rates(path, fs)
        for path, _, kind in streams:
            if kind == "text" and sounds:
                check_transcripts(path, sounds[0])
    tokenizer_dir = {**(conf.get("model_conf") or {}), **args.model_conf}.get("tokenizer_dir")
    if tokenizer_dir is not None:
        from chunkssl_espnet.tokenizer import load_tokenizer

        load_tokenizer(tokenizer_dir)


Where = Callable[[str, Optional[str]], str]


def _check_keys(cls: Optional[type], conf: Mapping[str, Any], key: str, choice: str,
                where: Where) -> None:
    """``conf`` (the value of option ``key``) holds only keyword arguments of ``cls``, unless
    it takes ``**kwargs``; ``where(key, name)`` names the file (or command line) of a key."""
    if cls is None:
        return
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for name in conf:
        if name not in params:
            valid = ", ".join(sorted(n for n in params if n != "self"))
            raise ValueError(f"{where(key, name)}: {key}: unknown key {name!r} for {choice} "
                             f"({cls.__name__}); its keys are: {valid}")


def _check_class_confs(task: type, values: Mapping[str, Any], where: Where) -> None:
    """Each ``<name>_conf`` of ``values`` (and each SSL ``loss`` conf) against the class chosen
    by ``<name>``."""
    for choices in task.class_choices_list:
        name = values.get(choices.name)
        if name is None:
            continue
        try:
            cls = choices.get_class(name)
        except ValueError as e:
            raise ValueError(f"{where(choices.name, None)}: {e}") from e
        key = f"{choices.name}_conf"
        _check_keys(cls, values.get(key) or {}, key, f"{choices.name}: {name}", where)
    losses = values.get("loss")
    if isinstance(losses, list):
        from espnet2.tasks.ssl import loss_choices

        for i, loss in enumerate(losses):
            if isinstance(loss, dict) and loss.get("name") in loss_choices.classes:
                _check_keys(loss_choices.get_class(loss["name"]), loss.get("conf") or {},
                            "loss", f"loss[{i}]: {loss['name']}",
                            lambda key, name: where(key, None))


def check_training_config(task: type, argv: Sequence[str]) -> None:
    """The ``<name>_conf`` keys of a training command line (``--config`` file and command-line
    overrides, merged as ESPnet merges them) against the chosen classes.

    Raises:
        ValueError: naming the config file (or the command line) and the unknown key.
        SystemExit: ESPnet's parser refuses the command line (an unknown top-level key of the
            config, naming the file), exactly as ESPnet's ``main`` would.
    """
    args = vars(task.get_parser().parse_args(list(argv)))
    path = args.get("config")
    in_file = load_config(path)

    def where(key: str, name: Optional[str]) -> str:
        from_file = in_file.get(key)
        if from_file is not None and (name is None or name in from_file):
            return str(path)
        return f"the command line (--{key})"

    _check_class_confs(task, args, where)


def run_training(task_name: str, cmd: Optional[Sequence[str]] = None) -> None:
    """Check a training command line (``sys.argv[1:]`` when None), then run the plug-in's task
    ``task_name`` (``ChunkSSLTask``, ...) on it; an input error exits with one line."""
    from chunkssl_espnet.bin import load_plugin

    argv = list(sys.argv[1:] if cmd is None else cmd)
    with exit_on_input_error():
        check_data_inputs(argv)
        task = getattr(load_plugin(), task_name)
        check_training_config(task, argv)
    task.main(cmd=argv)
    close_process_group()


def close_process_group() -> None:
    """Destroy the default process group of a distributed training (a no-op otherwise).

    ESPnet's trainer leaves the group open, so a rank ends while the Gloo worker threads may
    still hold finished collectives, whose teardown during interpreter finalisation aborts the
    process now and then (SIGABRT; the mechanism is described in pytorch/pytorch PR 179291).
    Destroying the group while the interpreter is alive ends each rank cleanly.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_inference(task: str, cmd: Optional[Sequence[str]] = None) -> None:
    """Check an offline decoding command line (``sys.argv[1:]`` when None) and apply our chunk
    options (``chunk_override``), then run ESPnet's ``<task>_inference`` (``asr`` or ``st``) on
    it; an input error exits with one line."""
    import importlib

    from chunkssl_espnet.bin.chunk_override import split_chunk_options

    argv = list(sys.argv[1:] if cmd is None else cmd)
    config_flag = f"--{task}_train_config"
    with exit_on_input_error():  # the audio's sample rate, the config's keys
        check_decoding_inputs(argv, config_flag, f"Chunk{task.upper()}Task")
        argv, _ = split_chunk_options(argv, config_flag)
    importlib.import_module(f"espnet2.bin.{task}_inference").main(argv)


def check_decoding_inputs(argv: Sequence[str], config_flag: str, task_name: str) -> None:
    """Check an offline decoding command line: its audio against the model's sample rate, and
    the model's config (named by ``config_flag``) against the plug-in's task ``task_name``."""
    from chunkssl_espnet.bin import load_plugin

    check_data_inputs(argv, config_flag)
    config = option_value(argv, config_flag)
    task = getattr(load_plugin(), task_name)
    if config is not None:  # None: ESPnet's --model_tag, or ESPnet's own usage error
        check_model_config(task, config)


def check_stream_inputs(data_dir: PathLike, config: PathLike, task_name: str) -> None:
    """Check a streaming decoding before the model is built: the audio of
    ``<data_dir>/wav.scp`` against the model's sample rate, and its config."""
    from chunkssl_espnet.bin import load_plugin

    check_sample_rates(Path(data_dir) / "wav.scp", frontend_fs(load_config(config), {}, config))
    check_model_config(getattr(load_plugin(), task_name), config)


def check_model_config(task: type, config: PathLike) -> None:
    """A model's ``config.yaml``, as decoding reads it: every top-level key is an option of
    ``task`` and every ``<name>_conf`` key is taken by the chosen class.

    Raises:
        ValueError: naming ``config`` and the unknown key.
    """
    values = load_config(config)
    known = {a.dest for a in task.get_parser()._actions} | set(CONFIG_EXTRA_KEYS)
    for key in values:
        if key not in known:
            raise ValueError(f"{config}: unknown top-level key {key!r}: not an option of "
                             f"{task.__name__} (a typo? compare with the config.yaml training "
                             "wrote)")
    _check_class_confs(task, values, lambda key, name: str(config))

"""Stage bookkeeping: skip a stage already done with the same options, record how outputs were made.

A stage writes into one output directory. When it finishes it leaves there, atomically:

* ``run_info.json``: the exact command line, the working directory, the resolved options, the
  sub-commands it ran, the versions of chunkssl_espnet, ESPnet, torch and Python, the git commit,
  start and end times;
* ``.done``: the stamp (a hash) of the options that change the outputs.

Re-running a stage with the same options is a no-op; with other options it runs again (training
then resumes from ESPnet's ``checkpoint.pth``, and a finished training with a larger
``max_epoch`` continues). ``force`` runs it regardless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from chunkssl_espnet.data.datadir import atomic_write_text

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

#: Options that never change a stage's outputs (parallelism), left out of the stamp.
NON_SEMANTIC = frozenset({"nj", "force", "num_threads"})


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(path: PathLike) -> str:
    """``git describe --always --dirty`` of the checkout holding ``path``, or ``unknown``."""
    try:
        res = subprocess.run(
            ["git", "-C", str(path), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"


def versions() -> Dict[str, str]:
    """Versions of everything that shapes a result."""
    return {
        "chunkssl_espnet": _dist_version("chunkssl_espnet"),
        "chunkssl_espnet_git": git_commit(Path(__file__).resolve().parent),
        "espnet": _dist_version("espnet"),
        "torch": _dist_version("torch"),
        "python": platform.python_version(),
        "host": platform.node(),
    }


def options_stamp(options: Mapping[str, object], ignore: Sequence[str] = ()) -> str:
    """A hash of the options that change the outputs (``NON_SEMANTIC`` and ``ignore`` left out)."""
    skip = NON_SEMANTIC | set(ignore)
    kept = {k: options[k] for k in sorted(options) if k not in skip}
    blob = json.dumps(kept, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()


class StageRecord:
    """The bookkeeping of one stage run in ``out_dir``.

    Usage::

        rec = StageRecord(out_dir, "train", vars(args))
        if rec.is_done():
            return
        rec.start()
        rec.add_command(cmd)       # every sub-command, as run
        ...
        rec.finish({"model": ...})  # writes run_info.json, then .done
    """

    def __init__(
        self,
        out_dir: PathLike,
        name: str,
        options: Mapping[str, object],
        argv: Optional[Sequence[str]] = None,
        ignore: Sequence[str] = (),
    ):
        self.out_dir = Path(out_dir)
        self.name = name
        self.options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
        self.argv = list(sys.argv if argv is None else argv)
        self.stamp = options_stamp(self.options, ignore)
        self.commands: List[str] = []
        self.started = 0.0
        self.cpu_seconds = 0.0

    @property
    def done_file(self) -> Path:
        return self.out_dir / ".done"

    def is_done(self) -> bool:
        """True when the outputs exist for these options (logged, so a skip is never silent)."""
        if self.options.get("force"):
            return False
        try:
            done = self.done_file.read_text().strip()
        except OSError:
            return False
        if done == self.stamp:
            logger.info("%s: already done in %s with these options; skipped (delete %s or pass "
                        "--force to redo)", self.name, self.out_dir, self.done_file)
            return True
        logger.info("%s: %s was made with other options; running again", self.name, self.out_dir)
        return False

    def start(self) -> None:
        """Clear the done stamp (outputs are about to change) and start the clock."""
        self.done_file.unlink(missing_ok=True)
        self.started = time.time()
        self.cpu_seconds = 0.0

    def add_command(self, cmd: Sequence[str]) -> None:
        self.commands.append(shlex.join(str(c) for c in cmd))

    def add_cpu(self, seconds: float) -> None:
        """Count the CPU time of a finished sub-command of this stage."""
        self.cpu_seconds += seconds

    def info(self, outputs: Optional[Mapping[str, object]] = None) -> Dict[str, object]:
        return {
            "stage": self.name,
            "command": shlex.join(self.argv),
            "cwd": os.getcwd(),
            "options": self.options,
            "commands": self.commands,
            "outputs": dict(outputs or {}),
            "versions": versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            # CPU time of the stage's sub-commands (all threads): with the wall time, it shows
            # how much of the machine the stage had.
            "cpu_seconds": round(self.cpu_seconds, 1),
        }

    def finish(self, outputs: Optional[Mapping[str, object]] = None) -> Path:
        """Write ``run_info.json`` and then the ``.done`` stamp; returns the run info path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = atomic_write_text(self.out_dir / "run_info.json",
                                 json.dumps(self.info(outputs), indent=1, default=str) + "\n")
        atomic_write_text(self.done_file, self.stamp + "\n")
        return path


def fresh_tmp_dir(out_dir: PathLike) -> Path:
    """An empty ``<out_dir>.tmp`` next to ``out_dir``, where a stage builds its outputs."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: PathLike, out_dir: PathLike) -> Path:
    """Move the complete ``tmp`` to ``out_dir``, replacing what was there.

    Each rename is atomic: a reader sees the old directory, nothing, or the new one, never a
    half-written one.
    """
    tmp, out_dir = Path(tmp), Path(out_dir)
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    return out_dir

"""Running the sub-commands of a stage: logged to a file, in parallel when asked, failing loudly.

Replaces Kaldi's ``run.pl JOB=1:N log.JOB cmd`` for one machine. A failed command raises
``RecipeError`` quoting the command, its log file, the lines of that log that say why and its
last lines, so the cause is on the terminal, not only in a log.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]
Command = List[str]


class RecipeError(RuntimeError):
    """A recipe stage cannot go on; the message says what failed and where to look."""


@dataclass(frozen=True)
class JobTime:
    """What one finished command cost: wall seconds, and CPU seconds (user + system, all threads,
    with the sub-processes it waited for)."""

    wall: float
    cpu: float


def python_module(module: str, *args: object) -> Command:
    """``[python, -m, module, args...]`` with the interpreter running this code (the venv's)."""
    return [sys.executable, "-m", module, *[str(a) for a in args]]


#: A line that says why a process failed: a traceback's start or its exception line, a C++
#: ``terminate``, a fatal interpreter error, our entry points' ``error:`` line.
_CAUSE = re.compile(r"^(Traceback \(most recent call last\)|terminate called|\s+what\(\):|"
                    r"Fatal Python error|error: |[\w.]*(Error|Exception): )")
#: The ``# <date> <command>`` line ``run_command`` writes above each run in a log.
_RUN_HEADER = re.compile(r"^# \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def failure_excerpt(path: PathLike, n: int = 25, causes: int = 10) -> str:
    """What a failed command's log says: its last ``n`` lines, led by up to ``causes`` earlier
    lines of its last run (below its last ``# <date> <command>`` header) that say why it failed.

    A ``torchrun`` log ends in the launcher's summary, which names the rank that died, not why;
    the rank's own traceback or ``terminate called ...`` line is further up.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    start = max((i for i, line in enumerate(lines) if _RUN_HEADER.match(line)), default=0)
    above = [line for line in lines[start:-n] if _CAUSE.match(line)][:causes]
    last = "\n".join(lines[-n:])
    if not above:
        return f"its last lines:\n{last}"
    return "its lines that say why:\n" + "\n".join(above) + f"\nits last lines:\n{last}"


def thread_env(num_threads: Optional[int]) -> Dict[str, str]:
    """The environment with the thread count of torch/OpenMP/MKL set (unchanged for ``None``)."""
    env = dict(os.environ)
    if num_threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(max(1, num_threads))
    return env


def run_command(
    cmd: Sequence[object],
    log: PathLike,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[PathLike] = None,
) -> JobTime:
    """Run ``cmd`` with stdout and stderr appended to ``log``; return its wall and CPU time.

    Raises:
        RecipeError: the command is not found or exits non-zero (the log's tail is quoted).
    """
    argv = [str(c) for c in cmd]
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n")
        f.flush()
        try:
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL)
        except OSError as e:
            raise RecipeError(f"cannot run {shlex.join(argv)}: {e}") from e
        try:
            # wait4 gives this child's resource usage (threads and waited-for descendants).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        seconds = time.time() - start
        cpu = usage.ru_utime + usage.ru_stime
        f.write(f"# exit {rc} after {seconds:.1f} s ({cpu:.1f} s CPU)\n")
    if rc != 0:
        raise RecipeError(
            f"command failed (exit {rc}): {shlex.join(argv)}\n"
            f"log: {log}; {failure_excerpt(log)}"
        )
    return JobTime(seconds, cpu)


def run_jobs(
    jobs: Sequence[Tuple[Sequence[object], PathLike]],
    nj: int,
    env: Optional[Mapping[str, str]] = None,
) -> List[Union[JobTime, RecipeError]]:
    """Run ``(cmd, log)`` jobs, ``nj`` at a time, each to its end; per job its ``JobTime`` or the
    ``RecipeError`` it failed with, in order."""
    def one(job: Tuple[Sequence[object], PathLike]) -> Union[JobTime, RecipeError]:
        try:
            return run_command(job[0], job[1], env=env)
        except RecipeError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        return list(pool.map(one, jobs))


def raise_first(results: Sequence[Union[JobTime, RecipeError]]) -> List[JobTime]:
    """The job times, or the first error (with the number of failed jobs)."""
    errors = [r for r in results if isinstance(r, RecipeError)]
    if errors:
        extra = f" ({len(errors)} of {len(results)} jobs failed)" if len(errors) > 1 else ""
        raise RecipeError(f"{errors[0]}{extra}")
    return [r for r in results if isinstance(r, JobTime)]


def run_parallel(
    jobs: Sequence[Tuple[Sequence[object], PathLike]],
    nj: int,
    env: Optional[Mapping[str, str]] = None,
) -> List[JobTime]:
    """Run ``(cmd, log)`` jobs, ``nj`` at a time; the time of each, in order.

    Every job runs to its end even when another fails; then the first failure is raised.
    """
    return raise_first(run_jobs(jobs, nj, env))

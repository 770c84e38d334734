"""Shared helpers of the benchmarks: timing, machine description, markdown tables, goals, the JSON
record.

Timings are wall-clock seconds of a callable after ``warmup`` untimed calls, over ``repeats`` timed
calls, with the device synchronised around each call. Ratios are computed from medians measured in
the same process; nothing here asserts a timing.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from chunkssl_espnet.data.datadir import atomic_write_text
from chunkssl_espnet.encoder import ENCODER_PRESETS

#: The repository (configs under ``conf/``).
REPO = Path(__file__).resolve().parents[2]
#: The 5 real LibriVox utterances of the Debian package pocketsphinx-testdata.
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
#: Chunk sizes the benchmarks report by default (4, 8, 16 and 32 encoder frames).
DEFAULT_CHUNK_MS = (160, 320, 640, 1280)
#: Encoder sizes of the benchmarks that train or build ESPnet models of both systems: the
#: ``tiny`` and ``base`` presets (base: for a GPU, tools/gpu_bench.sh), and ``toy`` for the tests.
SIZES = {
    "tiny": dict(ENCODER_PRESETS["tiny"]),
    "base": dict(ENCODER_PRESETS["base"]),
    "toy": dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=2,
                cnn_module_kernel=7),
}  # fmt: skip


@dataclass
class Timing:
    """Seconds of the timed calls of :func:`time_fn`: wall clock (``samples``) and CPU time of
    this process, all its threads (``cpu_samples``; on a shared machine it counts the work done,
    where wall time also counts the time other processes held the cores)."""

    samples: List[float] = field(default_factory=list)
    cpu_samples: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def std(self) -> float:
        return statistics.stdev(self.samples) if len(self.samples) > 1 else 0.0

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples) if self.cpu_samples else math.nan

    def scaled(self, factor: float) -> "Timing":
        """The same timing with every sample multiplied by ``factor`` (per-item figures)."""
        return Timing([s * factor for s in self.samples], [s * factor for s in self.cpu_samples])

    def to_dict(self) -> Dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "mean_s": self.mean,
            "std_s": self.std,
            "cpu_median_s": self.cpu_median,
            "repeats": len(self.samples),
            "samples_s": list(self.samples),
            "cpu_samples_s": list(self.cpu_samples),
        }


class BenchError(Exception):
    """A benchmark cannot run as asked (an option, the data, the device); the message says why."""


def run_main(main: Callable[[], Any]) -> None:
    """The ``python -m`` entry of a benchmark: ``main()``, where a ``BenchError``, a missing
    file or a bad value (e.g. audio at another sample rate) ends the process with one
    ``error: ...`` line and exit status 1."""
    try:
        main()
    except (BenchError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")


def setup_run(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the ``--device``."""
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N``); a clear error when CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise BenchError(f"--device {name}: only cpu and cuda are supported")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(fn: Callable[[], Any], device: torch.device, timing: Timing) -> None:
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    timing.samples.append(time.perf_counter() - wall)
    timing.cpu_samples.append(time.process_time() - cpu)


def time_fn(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns:
        :class:`Timing` of the timed calls (``repeats >= 1``).
    """
    return time_interleaved({"fn": fn}, device, repeats, warmup)["fn"]


def time_interleaved(
    fns: Dict[str, Callable[[], Any]],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    warmup_fns: Optional[Dict[str, Callable[[], Any]]] = None,
) -> Dict[str, Timing]:
    """Time several callables in alternation (one call of each per round), so that a change of
    the machine's load during the run affects all of them alike.

    Args:
        fns: name -> callable.
        repeats: timed rounds (>= 1).
        warmup: untimed rounds first.
        warmup_fns: name -> what to call in the warm-up rounds instead of ``fns[name]`` (a
            cheaper call that warms the same kernels).
    Returns:
        name -> :class:`Timing`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    warmup_fns = warmup_fns or {}
    for _ in range(warmup):
        for name, fn in fns.items():
            warmup_fns.get(name, fn)()
    timings = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _timed_call(fn, device, timings[name])
    return timings


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> Dict[str, Any]:
    """What the figures were measured on: CPU, cores, load, torch version and threads, GPU."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
    }
    try:
        info["load_avg_1min_at_start"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_machine(info: Dict[str, Any]) -> str:
    text = (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), device {info['device']}"
    )
    if "gpu" in info:
        text += f" ({info['gpu']})"
    if "load_avg_1min_at_start" in info:
        text += f", load average {info['load_avg_1min_at_start']} at start"
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers should be formatted by the caller."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_count(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x"


def add_common_args(parser: argparse.ArgumentParser, repeats: int, warmup: int = 1) -> None:
    """``--device``, ``--threads``, ``--repeats``, ``--warmup``, ``--seed``, ``--out``,
    ``--no-memory``."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads (default: torch's default, the number of cores)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls per figure")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak memory measurements"
    )


def write_json(path: Optional[Path], payload: Dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (nothing when ``path`` is None)."""
    if path is not None:
        atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def print_goals(
    goals: Dict[str, Dict[str, Any]], describe: Callable[[str, Dict[str, Any]], str]
) -> None:
    """One line per goal: ``goal <name> <describe(name, goal)> -> met`` (or ``MISSED``); each
    goal holds at least ``target``, ``value`` and ``met``."""
    for name, g in goals.items():
        print(f"goal {name} {describe(name, g)} -> {'met' if g['met'] else 'MISSED'}")


def save_record(
    name: str, args: argparse.Namespace, machine: Dict[str, Any], **fields: Any
) -> Dict[str, Any]:
    """The JSON record of a run: ``benchmark`` (``name``), ``command``, ``machine``, ``config``
    (the options), then ``fields``; written to ``--out`` when given, and returned."""
    record = {"benchmark": name, "command": command_line(), "machine": machine,
              "config": run_config(args), **fields}  # fmt: skip
    write_json(args.out, record)
    return record


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Timing):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def run_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The options of a run, for the record in the JSON output (``--out`` left out; paths are
    written as strings by :func:`write_json`)."""
    return {k: v for k, v in vars(args).items() if k != "out"}


def command_line() -> str:
    """The command that is running, for the record in the JSON output."""
    return " ".join([os.path.basename(sys.executable), *sys.argv])


def profile_top_ops(fn: Callable[[], Any], device: torch.device, row_limit: int = 12) -> str:
    """Run ``fn`` once under ``torch.profiler`` and return the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Profiler clears events ..."
        with profile(activities=activities) as prof:
            fn()
            synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=row_limit)

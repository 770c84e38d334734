"""Peak memory of one step: the most tensor memory live at any time during the step, above what
was live before it.

* CUDA: ``torch.cuda.max_memory_allocated`` during the step minus ``memory_allocated`` before it.
* CPU: torch keeps no allocation counter for CPU memory and tracemalloc does not see torch's
  allocations, so we replay the allocator's own record: the step runs under ``torch.profiler``
  with ``profile_memory=True``, which logs every allocation and free of torch's CPU allocator
  (size, time); the running sum of these events, started at 0 before the step, peaks at the
  step's peak. Checked against the peak resident set size of a fresh process (glibc
  ``MALLOC_MMAP_THRESHOLD_=65536``, ``/proc/self/clear_refs``): both gave 153 MB for a tiny-encoder
  forward+backward on 1500 frames.

Both count tensor memory only (activations kept for backward, gradients, temporaries), not the
allocator's caching or fragmentation, nor memory libraries allocate outside torch's allocator.
The profiler slows the step down, so memory is measured on its own untimed call.
"""

import gc
import warnings
from typing import Any, Callable, Dict, Optional

import torch

from chunkssl_espnet.bench.common import synchronize

CPU_METHOD = (
    "peak of live tensor bytes during the step above those live before it, replayed from the "
    "allocation/free events of torch.profiler(profile_memory=True)"
)
CUDA_METHOD = "torch.cuda.max_memory_allocated during the step minus memory_allocated before it"


def method_description(device: torch.device) -> str:
    return CUDA_METHOD if device.type == "cuda" else CPU_METHOD


def _cpu_peak_bytes(step: Callable[[], Any]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Profiler clears events ..."
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda ev: ev[0])
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure_step_memory(
    step: Callable[[], Any],
    device: torch.device,
    warmup: int = 1,
    before: Optional[Callable[[], Any]] = None,
) -> Dict[str, Any]:
    """Peak memory (bytes) one call of ``step`` adds on top of what is live before it.

    Args:
        step: the measured call.
        warmup: untimed calls first (one-off allocations of the first call).
        before: called after the warm-up, before the measurement: free what the step would free
            at its start (e.g. the gradients of the previous step: the profiler does not see
            frees of blocks allocated before it started, CUDA does; freeing them outside the
            step makes both devices count the new gradients, and nothing else, the same way).

    Returns:
        ``{"peak_bytes": int, "method": "cuda_max_allocated" | "cpu_profiler"}``.
    """
    for _ in range(warmup):
        step()
    if before is not None:
        before()
    synchronize(device)
    gc.collect()
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return {"peak_bytes": int(peak), "method": "cuda_max_allocated"}
    return {"peak_bytes": int(_cpu_peak_bytes(step)), "method": "cpu_profiler"}

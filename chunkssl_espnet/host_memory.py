"""Keep freed host memory in the process, so that CPU training steps do not fault in fresh pages.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and returns it with ``munmap`` on free. A CPU training step allocates and frees
activations far above that size every time (the sub-sampling images of a chunk SSL batch of
8 x 15 s are hundreds of MB), so every step makes the kernel fault in and zero those pages again.
Measured on the 2-core machine (``bench.ssl_throughput``'s model and batch, one thread, chunk and
offline steps alternating, each setting in its own process; docs/benchmarks.md section 5):
1.56M to 1.68M minor page faults per chunk step with glibc's defaults, 6k to 27k kept after the
first step; chunk steps 15.3 to 22.6 s against 8.3 to 10.1 s, offline steps 8.0 to 10.5 s
against 4.3 to 5.8 s; peak resident size 3.6 GB against 4.5 GB.

:func:`keep_freed_host_memory` turns glibc's mmap off (``M_MMAP_MAX = 0``) and its trimming of
the heap top off (``M_TRIM_THRESHOLD``), so freed blocks stay in the heap for the next step. The
price is memory: the process keeps its peak resident size, plus the few freed blocks that small
allocations made in between keep from coalescing in the first steps (a quarter more above;
bounded, as tests/test_host_memory.py checks); it returns nothing to the system before it exits.
Only glibc is tuned (other C libraries, macOS and Windows: nothing happens); CUDA tensors do not
use ``malloc`` and are unaffected. ``CHUNKSSL_HOST_MALLOC=default`` in the environment keeps
glibc's defaults.
"""

import ctypes
import ctypes.util
import os
from typing import Optional

ENV = "CHUNKSSL_HOST_MALLOC"
# mallopt(3) parameters and glibc's defaults
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 2**31 - 1  # an int: trim only above 2 GB free at the top


def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        _ = libc.gnu_get_libc_version  # only glibc has it (and mallopt's parameters as above)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_host_memory(keep: bool = True) -> bool:
    """Keep freed blocks in the heap (``keep``) or restore glibc's defaults (``keep=False``).

    Returns True when glibc's settings were changed, False when nothing was done (not glibc, or
    ``CHUNKSSL_HOST_MALLOC=default`` with ``keep``).
    """
    if keep and os.environ.get(ENV, "") == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    if keep:
        mmap_max, trim = 0, KEEP_TRIM_THRESHOLD
    else:
        mmap_max, trim = DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD
    ok = libc.mallopt(M_MMAP_MAX, mmap_max) == 1 and libc.mallopt(M_TRIM_THRESHOLD, trim) == 1
    if not keep:
        libc.malloc_trim(0)
    return ok

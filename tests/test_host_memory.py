"""host_memory: with freed memory kept, a step's large activations reuse their pages.

Each case runs in a fresh interpreter (the allocator's settings are process-wide) and counts the
minor page faults (``getrusage``) of allocating and filling a 128 MB tensor after earlier ones of
the same size were freed: with glibc's defaults it is mapped afresh and every page faults in; kept,
freed blocks are reused once they have coalesced (the first few rounds grow the heap, as small
allocations made in between keep a freed block from merging with the top), and the resident size
stops growing.
"""

import json
import os
import subprocess
import sys

import pytest

from chunkssl_espnet.host_memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc only")

PAGES = 128 * 2**20 // 4096

SCRIPT = r"""
import json, resource, sys
import torch
from chunkssl_espnet.host_memory import keep_freed_host_memory
changed = keep_freed_host_memory() if sys.argv[1] == "keep" else False
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def faults_of_fill():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(32 * 2**20)  # 128 MB, every page written
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del x
    return after - before
faults, rss = [], []
for _ in range(8):
    faults.append(faults_of_fill())
    rss.append(rss_mb())
grown = rss[-1] - rss[3]  # over the last four rounds
print(json.dumps({"changed": changed, "faults": faults[-1], "grown_mb": grown}))
"""


def _run(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_without_page_faults():
    default = _run("default")
    kept = _run("keep")
    assert not default["changed"] and kept["changed"]
    assert default["faults"] > PAGES // 2, default  # mapped afresh: every page faults in
    assert kept["faults"] < PAGES // 20, kept  # the freed blocks are reused
    assert kept["grown_mb"] < 16, kept  # bounded: the resident size stops growing


def test_environment_keeps_glibc_defaults():
    run = _run("keep", CHUNKSSL_HOST_MALLOC="default")
    assert not run["changed"]
    assert run["faults"] > PAGES // 2, run

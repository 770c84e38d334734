"""Shared fixtures of the test suite."""

import os
from pathlib import Path

import pytest

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="session", autouse=True)
def optimised_subprocesses():
    """The processes the tests start (recipes, entry points, torchrun) run in Python's optimised
    mode, as the recipes' path.sh sets it: ESPnet's typeguard checks would cost about 12 s at
    every start. Set inside the test process (an xdist worker is already running), so the tests
    themselves keep the checks: in-process tests call ESPnet with its type checks on."""
    old = os.environ.get("PYTHONOPTIMIZE")
    os.environ.setdefault("PYTHONOPTIMIZE", "1")
    yield
    if old is None:
        os.environ.pop("PYTHONOPTIMIZE", None)


@pytest.fixture(scope="session")
def librivox_dir() -> Path:
    """The 5 real LibriVox utterances (16 kHz mono wav, with a ``transcription`` file) of the
    Debian package pocketsphinx-testdata; the test is skipped when it is not installed."""
    wavs = sorted(LIBRIVOX_DIR.glob("*.wav"))
    if len(wavs) < 5 or not (LIBRIVOX_DIR / "transcription").is_file():
        pytest.skip(
            f"needs the LibriVox test utterances in {LIBRIVOX_DIR} from the Debian package "
            "pocketsphinx-testdata: install it with 'sudo apt-get install pocketsphinx-testdata' "
            "(tools/setup_venv.sh does this when run as root)"
        )
    return LIBRIVOX_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for the tests of a module (``pytest.mark.usefixtures``): its
    models are tiny, and extra threads only contend on a shared CPU. Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_torch_threads():
    """Give torch's global thread count back after a test that sets it (the benchmarks'
    ``--threads``)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


#: The longest test modules, run first so that pytest-xdist's two workers do not end with one of
#: them still running a long module alone. ``make test`` runs ``--dist loadfile
#: --no-loadscope-reorder``: modules are handed out in collection order, two to each worker at
#: the start (so the first four pair up as 1+3 and 2+4: the longest, test_recipe_mini with the
#: study, gets a shorter partner), then one at a time.
LONG_MODULES = ("test_recipe_mini", "test_recipe_corpora_e2e", "test_integration_asr",
                "test_recipe_mini_st", "test_bad_inputs", "test_self_contained",
                "test_distributed", "test_integration_st")


def pytest_collection_modifyitems(config, items):
    """Collect the long modules first (in ``LONG_MODULES`` order), the others as they were."""
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))

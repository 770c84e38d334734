"""The mini ST recipe (egs2/mini_flite/st1) end to end at toy size, as a real subprocess: flite
corpus of FreeDict en-de pairs, statistics, target and source BPE, FSQ tokenizer, Chunk SSL, ST
fine-tuning and from-scratch baseline, offline and streaming decoding, BLEU and average lagging,
the results table and plots. (A file of its own so that pytest-xdist runs it beside the ASR one.)"""

import re
import time
from pathlib import Path

import pytest

from tests.test_recipe_mini import PNG, RECIPE, run_sh, skip_without_corpus_tools

ST_RECIPE = RECIPE.parent / "st1"


@pytest.mark.slow
def test_toy_st_recipe_end_to_end(tmp_path: Path) -> None:
    skip_without_corpus_tools(festival=False)
    from chunkssl_espnet.data.mini_flite import FREEDICT_DICT

    if not FREEDICT_DICT.is_file():
        pytest.skip("the mini ST recipe needs the Debian package dict-freedict-eng-deu")
    start = time.time()
    res = run_sh(tmp_path, [], recipe=ST_RECIPE)
    print(f"toy ST recipe: {time.time() - start:.0f} s")
    assert res.returncode == 0, f"stdout:\n{res.stdout[-5000:]}\nstderr:\n{res.stderr[-5000:]}"
    exp = tmp_path / "exp"
    results = (exp / "RESULTS.md").read_text()
    assert results in res.stdout
    assert "BLEU" in results and "average_lagging_ms" in results
    header = next(line for line in results.splitlines() if line.startswith("| model |"))
    assert "| offline |" in header and len(re.findall(r"\| (\d+) ms", header)) >= 3, header
    assert re.search(r"\| Chunk SSL \+ ST \|( \d+\.\d\d \|){4}", results), results
    assert re.search(r"\| from scratch \(baseline\) \| \d+\.\d\d \|", results), results
    assert (exp / "plots" / "bleu_vs_chunk_test.png").read_bytes()[:8] == PNG

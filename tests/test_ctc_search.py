"""CTC prefix beam search against exhaustive enumeration; local agreement."""

import itertools
import math

import torch

from chunkssl_espnet.ctc_search import CTCPrefixBeamSearch
from chunkssl_espnet.streaming import local_agreement


def collapse(path, blank=0):
    out, prev = [], None
    for t in path:
        if t != blank and t != prev:
            out.append(t)
        prev = t
    return tuple(out)


def exact_prefix_probs(log_probs):
    """Sum over all alignments of each label sequence (small T and V only)."""
    t, v = log_probs.shape
    probs = {}
    for path in itertools.product(range(v), repeat=t):
        lp = sum(log_probs[i, s].item() for i, s in enumerate(path))
        key = collapse(path)
        probs[key] = probs.get(key, 0.0) + math.exp(lp)
    return probs


def test_full_beam_equals_exhaustive_sum_in_chunks():
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(6, 3, generator=g) * 2, dim=-1)
    exact = exact_prefix_probs(lp)
    search = CTCPrefixBeamSearch(beam_size=1000, token_prune=3)
    for chunk in (lp[:2], lp[2:3], lp[3:]):  # fed chunk by chunk
        search.step(chunk)
    got = {tuple(h): math.exp(s) for h, s in search.nbest()}
    assert set(got) == set(exact)
    for k, p in exact.items():
        assert abs(got[k] - p) < 1e-9
    assert search.best() == list(max(exact, key=exact.get))


def test_greedy_is_argmax_collapse_across_chunks():
    g = torch.Generator().manual_seed(1)
    lp = torch.log_softmax(torch.randn(40, 5, generator=g), dim=-1)
    search = CTCPrefixBeamSearch(beam_size=1)
    for i in range(0, 40, 7):
        search.step(lp[i : i + 7])
    assert tuple(search.best()) == collapse(lp.argmax(-1).tolist())


def test_local_agreement_commits_common_prefix_only_forward():
    assert local_agreement([], [1, 2, 3], [1, 2, 4]) == [1, 2]
    assert local_agreement([1, 2], [1, 2, 3, 5], [1, 2, 3, 6]) == [1, 2, 3]
    assert local_agreement([1, 2], [1, 3], [1, 3, 4]) == [1, 2]  # never retracted
    assert local_agreement([1], [], [1, 2]) == [1]

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


def _espnet_lm(vocab: int, seed: int = 0):
    """A real ESPnet LSTM LM (random weights), as the recipes train it."""
    from espnet2.lm.espnet_model import ESPnetLanguageModel
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    torch.manual_seed(seed)
    return ESPnetLanguageModel(SequentialRNNLM(vocab, unit=16, nlayers=1), vocab).eval()


@torch.no_grad()
def _lm_logprob(lm, hyp, with_eos: bool) -> float:
    """log P_lm of ``hyp`` from ESPnet's full-sequence scoring (``nll``)."""
    text = torch.tensor([list(hyp) or [0]])
    nll, _ = lm.nll(text, torch.tensor([len(hyp)]), max_length=text.shape[1])
    total = -nll[0, : len(hyp) + 1]
    return float(total.sum() if with_eos else total[: len(hyp)].sum())


def test_lm_fusion_scores_equal_espnet_full_sequence_lm_across_chunks():
    from chunkssl_espnet.ctc_search import PrefixLM

    vocab = 6  # 0 blank, 1..4 tokens, 5 <sos/eos>
    lm = _espnet_lm(vocab)
    g = torch.Generator().manual_seed(2)
    lp = torch.log_softmax(torch.randn(12, vocab, generator=g) * 2, dim=-1)
    lp[:, vocab - 1] = -1e4  # CTC never emits <sos/eos>
    w = 0.7
    search = CTCPrefixBeamSearch(beam_size=6, token_prune=4, lm=PrefixLM(lm.lm, lm.sos),
                                 lm_weight=w)
    for chunk in (lp[:5], lp[5:6], lp[6:]):
        search.step(chunk)
    nbest = search.nbest()
    assert len(nbest) == 6 and any(len(h) >= 3 for h, _ in nbest)
    fused = []
    for hyp, ctc in nbest:
        # the incremental, cached LM scores are ESPnet's full-sequence ones
        assert abs(search.lm_total[tuple(hyp)] - _lm_logprob(lm, hyp, False)) < 1e-4
        assert abs(search.lm_score(hyp) - _lm_logprob(lm, hyp, True)) < 1e-4
        fused.append(ctc + w * search.lm_total[tuple(hyp)])
    assert fused == sorted(fused, reverse=True)  # ranked by the fused score
    # weight 0 is the plain CTC search
    plain, zero = CTCPrefixBeamSearch(6, token_prune=4), CTCPrefixBeamSearch(
        6, token_prune=4, lm=PrefixLM(lm.lm, lm.sos), lm_weight=0.0)
    plain.step(lp)
    zero.step(lp)
    assert zero.nbest() == plain.nbest() and zero.lm_score(nbest[0][0]) == 0.0


def test_lm_fusion_changes_the_best_hypothesis_toward_the_lm():
    """Two CTC-equal readings: the LM's preferred one wins once fused."""
    from chunkssl_espnet.ctc_search import PrefixLM

    vocab = 6
    lm = _espnet_lm(vocab, seed=3)
    lp = torch.full((1, vocab), -1e4)
    lp[0, 1] = lp[0, 2] = math.log(0.5)
    a, b = _lm_logprob(lm, [1], False), _lm_logprob(lm, [2], False)
    search = CTCPrefixBeamSearch(2, token_prune=3, lm=PrefixLM(lm.lm, lm.sos), lm_weight=1.0)
    search.step(lp)
    assert search.best() == ([1] if a > b else [2])

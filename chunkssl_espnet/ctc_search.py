"""Frame-synchronous CTC prefix beam search that carries its state across chunks.

ESPnet's CTC prefix scorer is label-synchronous (it scores one label at a time for the attention
beam search over the whole utterance); streaming needs the opposite: consume the CTC posteriors of
each new chunk as it arrives and have a partial n-best after every chunk. The search here keeps the
(blank, non-blank) log probabilities of each prefix and extends them frame by frame.
``beam_size == 1`` is CTC greedy decoding (argmax, collapse repeats, drop blanks).
"""

import math
from typing import Dict, List, Tuple

import torch

NEG_INF = -math.inf


def _logadd(*xs: float) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


class _Accumulator:
    """Adds (blank, non-blank) log probabilities into a prefix table."""

    def __init__(self, table: Dict[Tuple[int, ...], List[float]]):
        self.table = table

    def __call__(self, prefix: Tuple[int, ...], pb: float, pnb: float) -> None:
        if pb == NEG_INF and pnb == NEG_INF:
            return  # impossible extension (e.g. a repeat with no blank yet): keeps no beam slot
        cur = self.table.setdefault(prefix, [NEG_INF, NEG_INF])
        cur[0] = _logadd(cur[0], pb)
        cur[1] = _logadd(cur[1], pnb)


class CTCPrefixBeamSearch:
    """Incremental CTC prefix beam search.

    Args:
        beam_size: prefixes kept after each frame (1: greedy).
        blank: blank token id.
        token_prune: tokens tried per frame (the most likely ones).
    """

    def __init__(self, beam_size: int = 10, blank: int = 0, token_prune: int = 10):
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.blank = blank
        self.token_prune = token_prune
        self.reset()

    def reset(self) -> None:
        self.beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, NEG_INF)}
        self.greedy: List[int] = []
        self.last_greedy = self.blank

    def step(self, log_probs: torch.Tensor) -> None:
        """Consume the CTC log posteriors of new frames.

        Args:
            log_probs: (T, V) log-softmax outputs of the new frames.
        """
        if log_probs.numel() == 0:
            return
        if self.beam_size == 1:
            for t in log_probs.argmax(-1).tolist():
                if t != self.blank and t != self.last_greedy:
                    self.greedy.append(t)
                self.last_greedy = t
            return
        lp = log_probs.float().cpu()
        k = min(self.token_prune, lp.shape[-1])
        top_v, top_i = lp.topk(k, dim=-1)
        for vals, ids in zip(top_v.tolist(), top_i.tolist()):
            nxt: Dict[Tuple[int, ...], List[float]] = {}
            add = _Accumulator(nxt)
            for prefix, (pb, pnb) in self.beams.items():
                last = prefix[-1] if prefix else None
                for p, s in zip(vals, ids):
                    if s == self.blank:
                        add(prefix, _logadd(pb, pnb) + p, NEG_INF)
                    elif s == last:
                        add(prefix, NEG_INF, pnb + p)  # repeat collapses into the prefix
                        add(prefix + (s,), NEG_INF, pb + p)  # a blank separated the repeat
                    else:
                        add(prefix + (s,), NEG_INF, _logadd(pb, pnb) + p)
            best = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
            self.beams = {k2: (v[0], v[1]) for k2, v in best[: self.beam_size]}

    def nbest(self) -> List[Tuple[List[int], float]]:
        """Current hypotheses, best first, as (token ids, CTC log probability)."""
        if self.beam_size == 1:
            return [(list(self.greedy), 0.0)]
        items = sorted(self.beams.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
        return [(list(p), _logadd(*s)) for p, s in items]

    def best(self) -> List[int]:
        return self.nbest()[0][0]

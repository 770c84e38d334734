"""Frame-synchronous CTC prefix beam search that carries its state across chunks.

ESPnet's CTC prefix scorer is label-synchronous (it scores one label at a time for the attention
beam search over the whole utterance); streaming needs the opposite: consume the CTC posteriors of
each new chunk as it arrives and have a partial n-best after every chunk. The search here keeps the
(blank, non-blank) log probabilities of each prefix and extends them frame by frame.
``beam_size == 1`` is CTC greedy decoding (argmax, collapse repeats, drop blanks).

With a language model (:class:`PrefixLM`, shallow fusion), the beam is ranked by
``log P_ctc(prefix) + lm_weight * log P_lm(prefix)``: each new token of a prefix adds its LM
log probability given the prefix, and ``lm_score`` adds the LM's ``<eos>`` for the final ranking.
"""

import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

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


Prefix = Tuple[int, ...]


class PrefixLM:
    """Next-token log probabilities of an ESPnet language model for the prefixes of a
    frame-synchronous search, one batched LM step per new prefix length, cached by prefix.

    Args:
        lm: an ESPnet ``AbsLM`` (``batch_score(ys, states, xs)``), e.g. ``ESPnetLanguageModel.lm``.
        sos_eos: the ``<sos/eos>`` token id.
    """

    def __init__(self, lm, sos_eos: int):
        self.lm = lm
        self.sos_eos = sos_eos
        self.device = next(lm.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.cache: Dict[Prefix, Tuple[torch.Tensor, object]] = {}

    @torch.no_grad()
    def next_logp(self, prefixes: Sequence[Prefix]) -> Dict[Prefix, torch.Tensor]:
        """``{prefix: (V,) log P(next token | <sos> prefix)}``. A prefix not seen before must
        extend one that was (its LM state is reused); the cache keeps only ``prefixes``."""
        todo = defaultdict(list)
        for pre in prefixes:
            if pre not in self.cache:
                todo[len(pre)].append(pre)
        for n in sorted(todo):
            group = todo[n]
            ys = torch.tensor([[self.sos_eos, *pre] for pre in group], device=self.device)
            states = [self.cache[pre[:-1]][1] if pre else None for pre in group]
            logp, new_states = self.lm.batch_score(ys, states, None)
            for pre, lp, st in zip(group, logp.float().cpu(), new_states):
                self.cache[pre] = (lp, st)
        self.cache = {pre: self.cache[pre] for pre in prefixes}
        return {pre: self.cache[pre][0] for pre in prefixes}


class CTCPrefixBeamSearch:
    """Incremental CTC prefix beam search.

    Args:
        beam_size: prefixes kept after each frame (1: greedy).
        blank: blank token id.
        token_prune: tokens tried per frame (the most likely ones).
        lm: shallow fusion with this language model (``beam_size > 1``).
        lm_weight: its weight.
    """

    def __init__(self, beam_size: int = 10, blank: int = 0, token_prune: int = 10,
                 lm: Optional[PrefixLM] = None, lm_weight: float = 0.0):
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.blank = blank
        self.token_prune = token_prune
        self.lm = lm if lm_weight != 0.0 else None
        self.lm_weight = lm_weight
        self.reset()

    def reset(self) -> None:
        self.beams: Dict[Prefix, Tuple[float, float]] = {(): (0.0, NEG_INF)}
        self.lm_total: Dict[Prefix, float] = {(): 0.0}  # log P_lm of each beam's tokens
        self.greedy: List[int] = []
        self.last_greedy = self.blank
        if self.lm is not None:
            self.lm.reset()

    def _rank(self, prefix: Prefix, pb: float, pnb: float) -> float:
        return _logadd(pb, pnb) + self.lm_weight * self.lm_total.get(prefix, 0.0)

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
            nxt: Dict[Prefix, List[float]] = {}
            add = _Accumulator(nxt)
            if self.lm is not None:
                next_logp = self.lm.next_logp(list(self.beams))
                for prefix in self.beams:
                    for s in ids:
                        if s != self.blank:
                            self.lm_total.setdefault(prefix + (s,), self.lm_total[prefix]
                                                     + float(next_logp[prefix][s]))
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
            best = sorted(nxt.items(), key=lambda kv: self._rank(kv[0], *kv[1]), reverse=True)
            self.beams = {k2: (v[0], v[1]) for k2, v in best[: self.beam_size]}
            if self.lm is not None:
                self.lm_total = {k2: self.lm_total[k2] for k2 in self.beams}

    def nbest(self) -> List[Tuple[List[int], float]]:
        """Current hypotheses, best first (by the fused score with an LM), as (token ids, CTC
        log probability)."""
        if self.beam_size == 1:
            return [(list(self.greedy), 0.0)]
        items = sorted(self.beams.items(), key=lambda kv: self._rank(kv[0], *kv[1]),
                       reverse=True)
        return [(list(p), _logadd(*s)) for p, s in items]

    def lm_score(self, hyp: Sequence[int]) -> float:
        """The LM log probability of a beam's hypothesis with its ``<eos>`` (0 without LM)."""
        if self.lm is None:
            return 0.0
        prefix = tuple(hyp)
        eos = self.lm.next_logp(list(self.beams))[prefix][self.lm.sos_eos]
        return self.lm_total[prefix] + float(eos)

    def best(self) -> List[int]:
        return self.nbest()[0][0]

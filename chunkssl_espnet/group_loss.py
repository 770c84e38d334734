"""Group masked prediction loss (docs/method.md, section 4), an ESPnet ``AbsSSLLoss``.

The d FSQ channels are split into G groups of ``group_size`` consecutive channels; group g's target
is the mixed-radix index of its channels, in ``[0, V_g)``. One linear head gives ``sum_g V_g``
logits and the loss of a scored frame is ``sum_g CE(logits_g, target_g)``: the exact negative
log-likelihood of the full FSQ index under the product of the group distributions, at the cost of
``sum_g V_g`` instead of ``prod_g V_g`` logits. ``full_softmax=True`` keeps a head over the whole
codebook (small codebooks only) for the equivalence test and the ablation.
"""

import math
from typing import Dict, List, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from typeguard import typechecked

from chunkssl_espnet.fsq import DEFAULT_LEVELS, FSQ, resolve_levels

# Full softmax over more classes than this would need a head of >= 2**17 * D weights (0.4 GB at
# D = 768); the 1k and 64k presets fit, the 2M default does not.
MAX_FULL_SOFTMAX_CLASSES = 2**17
#: Weight of a batch with no scored frame in ESPnet's averaging (see ``_stats``).
EMPTY_BATCH_WEIGHT = 1e-6


class GroupMaskedPredictionLoss(AbsSSLLoss):
    """Predict the FSQ group indices of the scored (masked) frames.

    Args:
        encoder_output_size: D, the encoder output dimension.
        levels: FSQ levels or preset name (must match the tokenizer's).
        group_size: FSQ channels per group (the last group may be smaller).
        full_softmax: one softmax over all ``prod_g V_g`` codes instead of one per group.
        layer: which entry of the encoder output list to read (-1: the final output).

    Attributes:
        group_vocab_sizes: the G values ``V_g``.
        head: ``Linear(D, sum_g V_g)`` (``Linear(D, prod_g V_g)`` with ``full_softmax``).
    """

    @typechecked
    def __init__(
        self,
        encoder_output_size: int,
        levels: Union[str, List[int]] = DEFAULT_LEVELS,
        group_size: int = 3,
        full_softmax: bool = False,
        layer: int = -1,
    ) -> None:
        super().__init__()
        self.util_attributes: List[str] = []
        self.required_inputs: List[str] = ["encoder_output", "fsq_targets", "loss_mask"]
        self.levels = resolve_levels(levels)
        self.group_size = group_size
        self.group_vocab_sizes: List[int] = FSQ(self.levels).group_sizes(group_size)
        self.num_groups = len(self.group_vocab_sizes)
        self.full_softmax = full_softmax
        self.layer = layer
        codebook_size = math.prod(self.group_vocab_sizes)
        if full_softmax and codebook_size > MAX_FULL_SOFTMAX_CLASSES:
            raise ValueError(
                f"full_softmax over {codebook_size} codes (levels {self.levels}) is too large "
                f"(limit {MAX_FULL_SOFTMAX_CLASSES}); use the group loss (full_softmax: false) "
                "or a smaller codebook such as levels '1k' or '64k'"
            )
        num_outputs = codebook_size if full_softmax else sum(self.group_vocab_sizes)
        self.head = torch.nn.Linear(encoder_output_size, num_outputs)
        # Radices that join group indices into the full FSQ index.
        radix = [math.prod(self.group_vocab_sizes[:g]) for g in range(self.num_groups)]
        self.register_buffer("_radix", torch.tensor(radix, dtype=torch.int64), persistent=False)
        self.register_buffer(
            "_vocab", torch.tensor(self.group_vocab_sizes, dtype=torch.int64), persistent=False
        )

    def _check(self, x: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"encoder output must be (B, L, D), got {tuple(x.shape)}")
        if targets.shape != (*x.shape[:2], self.num_groups):
            raise ValueError(
                f"fsq_targets must be (B, L, G) = {(*x.shape[:2], self.num_groups)} to match the "
                f"encoder output {tuple(x.shape)}, got {tuple(targets.shape)}"
            )
        if loss_mask.shape != x.shape[:2]:
            raise ValueError(
                f"loss_mask must be (B, L) = {tuple(x.shape[:2])}, got {tuple(loss_mask.shape)}"
            )

    def forward(
        self,
        encoder_output: List[torch.Tensor],
        fsq_targets: torch.Tensor,
        loss_mask: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Loss over the scored frames.

        Args:
            encoder_output: per-layer outputs, each (B, L, D); ``encoder_output[layer]`` is used.
            fsq_targets: (B, L, G) int64 group indices; -1 marks padding (never scored).
            loss_mask: (B, L) bool, True for frames to score.

        Returns:
            loss: scalar, mean over scored frames of ``sum_g CE_g`` (0 with a graph through the
                head and the encoder output when no frame is scored).
            stats: detached ``loss``, ``acc_g0 .. acc_g{G-1}``, ``acc_joint`` (all groups right;
                0 when no frame is scored), ``num_masked`` and ``sample_size`` (the batch's
                weight in ESPnet's averaging: the number of scored frames).
        """
        x = encoder_output[self.layer]
        self._check(x, fsq_targets, loss_mask)
        scored = loss_mask.bool() & (fsq_targets >= 0).all(-1)
        targets = fsq_targets[scored]  # (N, G)
        n = targets.shape[0]
        if n == 0:
            # Keep every parameter in the graph so DDP's gradient reduction does not hang, and
            # report the same stats as a scoring rank: ESPnet all-reduces them key by key.
            zero = x.sum() * 0.0 + sum(p.sum() for p in self.head.parameters()) * 0.0
            return zero, self._stats(zero.detach(), torch.zeros(0, self.num_groups,
                                                                 dtype=torch.bool,
                                                                 device=x.device))
        if (targets >= self._vocab).any():
            raise ValueError(
                f"fsq_targets exceed the group vocabularies {self.group_vocab_sizes}: the "
                "tokenizer's levels/group_size differ from the loss's"
            )
        logits = self.head(x[scored]).float()  # (N, sum V) or (N, prod V)
        if self.full_softmax:
            joint = (targets * self._radix).sum(-1)
            loss = F.cross_entropy(logits, joint, reduction="sum") / n
            pred_joint = logits.argmax(-1)
            pred = torch.div(pred_joint.unsqueeze(-1), self._radix, rounding_mode="floor")
            pred = pred % self._vocab  # (N, G)
        else:
            loss = logits.new_zeros(())
            preds = []
            for g, logits_g in enumerate(logits.split(self.group_vocab_sizes, dim=-1)):
                loss = loss + F.cross_entropy(logits_g, targets[:, g], reduction="sum")
                preds.append(logits_g.argmax(-1))
            loss = loss / n
            pred = torch.stack(preds, dim=-1)
        return loss, self._stats(loss.detach(), (pred == targets).detach())

    def _stats(self, loss: torch.Tensor, correct: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Stats of a batch whose N scored frames got ``correct`` (N, G) bool group predictions.

        ``sample_size`` is N: ESPnet's SSL model hands it to the trainer as the batch's weight,
        so DDP averages the loss and the accuracies over scored frames (a rank that scores
        nothing counts as ``EMPTY_BATCH_WEIGHT``, not 0, which would make the average 0 / 0
        when no rank scores). The accuracies of such a batch are 0, not NaN: ESPnet's weighted
        all-reduce multiplies each rank's value by its weight, and NaN times a zero weight would
        not vanish.
        """
        n = correct.shape[0]
        if n == 0:
            acc = correct.new_zeros(self.num_groups, dtype=torch.float32)
            joint = acc.new_zeros(())
        else:
            acc = correct.float().mean(0)
            joint = correct.all(-1).float().mean()
        stats = {"loss": loss}
        stats.update({f"acc_g{g}": acc[g] for g in range(self.num_groups)})
        stats["acc_joint"] = joint
        stats["num_masked"] = torch.tensor(float(n), device=loss.device)
        stats["sample_size"] = torch.tensor(float(n) if n else EMPTY_BATCH_WEIGHT,
                                            device=loss.device)
        return stats

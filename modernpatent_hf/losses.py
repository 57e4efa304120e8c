"""Losses for multi-label CPC subclass classification: (weighted) BCE and two hierarchical variants.

This file is copied next to saved checkpoints as remote code, so it imports only the standard library and torch.

All functions take subclass ``logits`` [B, L] and float multi-hot ``labels`` [B, L]; they compute in float32 whatever
the logits' dtype (bf16 softmax/BCE sums lose too much precision).
"""

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

LOSS_TYPES = ("bce", "hierarchical", "upstream_hierarchical")


def balanced_class_weights(counts: Sequence[float], cap: float = 5.0) -> List[float]:
    """Balanced per-label weights ``w_c = total_occurrences / (K * count_c)``, capped at ``cap``.

    ``counts`` are label occurrences in the training split, in label (logit) order; ``K = len(counts)``. A label
    seen as often as the average gets weight 1, rarer ones more (at most ``cap``), frequent ones less. A label
    never seen (count 0) gets ``cap``: it is the rarest of all.
    """
    counts = [float(count) for count in counts]
    if not counts:
        raise ValueError("balanced_class_weights needs one count per label, got an empty sequence")
    if any(not math.isfinite(count) or count < 0 for count in counts):
        raise ValueError(f"label counts must be finite and non-negative, got {min(counts)!r}")
    if not cap > 0:
        raise ValueError(f"class weight cap must be positive, got {cap!r}")
    total = sum(counts)
    if total == 0:
        raise ValueError(f"all {len(counts)} label counts are 0: compute them on the training split")
    return [min(cap, total / (len(counts) * count)) if count > 0 else float(cap) for count in counts]


def label_log_odds(frequencies: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``log(p / (1 - p))`` of label frequencies ``p``, clipped to [eps, 1 - eps] so that a label never or always
    seen stays finite: the logits of the label prior, where a new classifier's bias starts."""
    frequencies = torch.as_tensor(frequencies, dtype=torch.float64).clamp(eps, 1 - eps)
    return torch.log(frequencies / (1 - frequencies))


def hierarchy_distance_matrix(
    subclass_to_class: torch.Tensor, subclass_to_section: torch.Tensor, weights: Sequence[float] = (1.0, 0.5, 0.25)
) -> torch.Tensor:
    """``L x L`` float32 CPC distances: 0 on the diagonal, ``weights[2]`` within a class, ``weights[1]`` within a
    section, ``weights[0]`` across sections (the same matrix as ``CpcLabelSpace.distance_matrix``)."""
    same_class = subclass_to_class[:, None] == subclass_to_class[None, :]
    same_section = subclass_to_section[:, None] == subclass_to_section[None, :]
    same_subclass = torch.eye(len(subclass_to_class), dtype=torch.bool, device=same_class.device)
    # torch.where rather than masked assignment: this also runs on the meta device (model construction).
    distance = torch.full(same_class.shape, float(weights[0]), dtype=torch.float32, device=same_class.device)
    distance = torch.where(same_section, float(weights[1]), distance)
    distance = torch.where(same_class, float(weights[2]), distance)
    return torch.where(same_subclass, 0.0, distance)


def multilabel_bce(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Binary cross-entropy averaged over patents and labels; ``class_weights`` [L] multiply both terms of a column."""
    weight = None if class_weights is None else class_weights.to(torch.float32)[None, :]
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), weight=weight)


class LabelHierarchy:
    """The CPC tree above the L subclass labels, as index tensors, with the distance of each level.

    ``subclass_to_class`` / ``subclass_to_section`` [L] give each label's class / section index;
    ``weights`` are the distances across sections, within a section, within a class (default 1.0, 0.5, 0.25).
    Distances to a set of true labels are computed level by level in O(B x L), never as a [B, L, L] tensor.
    """

    def __init__(
        self,
        subclass_to_class: torch.Tensor,
        subclass_to_section: torch.Tensor,
        weights: Sequence[float] = (1.0, 0.5, 0.25),
    ):
        self.subclass_to_class = subclass_to_class
        self.subclass_to_section = subclass_to_section
        self.weights = [float(weight) for weight in weights]

    @staticmethod
    def _group_has_true(is_true: torch.Tensor, group_of: torch.Tensor) -> torch.Tensor:
        """[B, L]: whether label j's group (class or section) holds a true label of the patent."""
        counts = torch.zeros(is_true.shape[0], len(group_of), dtype=torch.float32, device=is_true.device)
        counts.index_add_(1, group_of, is_true.to(torch.float32))
        return counts[:, group_of] > 0

    @torch.no_grad()
    def nearest_true_distance(self, labels: torch.Tensor) -> torch.Tensor:
        """``d[b, j] = min over true labels y of patent b of D[j, y]`` ([B, L], float32); rows without labels are 0.

        Equal to a lookup in :func:`hierarchy_distance_matrix`: 0 for a true label, ``weights[2]`` in the class
        of a true label, ``weights[1]`` in its section, ``weights[0]`` elsewhere.
        """
        is_true = labels > 0.5
        different_section, same_section, same_class = self.weights
        nearest = torch.full(labels.shape, different_section, dtype=torch.float32, device=labels.device)
        nearest = torch.where(self._group_has_true(is_true, self.subclass_to_section), same_section, nearest)
        nearest = torch.where(self._group_has_true(is_true, self.subclass_to_class), same_class, nearest)
        nearest = torch.where(is_true, 0.0, nearest)
        return nearest.masked_fill(~is_true.any(dim=-1, keepdim=True), 0.0)


def expected_hierarchical_distance(
    logits: torch.Tensor, labels: torch.Tensor, hierarchy: LabelHierarchy
) -> torch.Tensor:
    """Expected CPC distance between a subclass drawn from ``softmax(logits)`` and the true set, per patent ([B]).

    ``E = sum_j p_j d_j`` with ``p = softmax(z)`` over the L subclasses and ``d_j = min_{y in Y} D[j, y]`` the
    distance from subclass j to the nearest true subclass (0 when j is true; by default 0.25 within the class of a
    true label, 0.5 within its section, 1.0 elsewhere). Patents without true labels have ``E = 0``.

    The gradient is ``dE/dz_j = p_j (d_j - E)``: subclasses farther than the current expectation are pushed down in
    proportion to their probability and to how far they are, near misses less, true subclasses (d_j = 0) are
    pulled up. So, unlike the top-1 penalty, probability mass in a wrong section costs more than the same mass in
    a sibling subclass, and the loss is smooth in the logits.
    """
    nearest = hierarchy.nearest_true_distance(labels)
    probabilities = torch.softmax(logits.float(), dim=-1)
    return (probabilities * nearest).sum(dim=-1)


@torch.no_grad()
def upstream_top1_penalty(logits: torch.Tensor, labels: torch.Tensor, hierarchy: LabelHierarchy) -> torch.Tensor:
    """The seed work's penalty per patent ([B]): the CPC distance from the top-1 subclass to the nearest true one.

    With the default weights: 0 when the top-1 subclass is true, 0.25 when only the subclass differs, 0.5 when
    only the class differs, 1.0 when the section differs from every true label; 0 for patents without labels.
    Computed from an argmax outside autograd, as upstream, so it adds no gradient.
    """
    nearest = hierarchy.nearest_true_distance(labels)
    return nearest.gather(1, logits.argmax(dim=-1, keepdim=True)).squeeze(1)


def patent_classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_type: str = "bce",
    hierarchy: Optional[LabelHierarchy] = None,
    hierarchy_weight: float = 0.5,
    class_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The training loss selected by ``loss_type`` (a scalar).

    - ``"bce"``: :func:`multilabel_bce` (optionally class-weighted).
    - ``"hierarchical"``: BCE + ``hierarchy_weight`` x mean over patents of :func:`expected_hierarchical_distance`
      divided by the number of labels L; differentiable, so the hierarchy shapes the gradient. The division puts
      the term on BCE's per-label scale (BCE is a mean over patents *and* labels): undivided, with 393-665
      labels it outweighed BCE several hundred times and pulled every patent towards the same frequent subclasses.
    - ``"upstream_hierarchical"``: BCE + ``hierarchy_weight`` x mean of :func:`upstream_top1_penalty`, on the
      seed's scale (not divided). A reproduction of the seed work only: the penalty is a constant to autograd, so
      the gradient is plain BCE's.

    ``hierarchy`` (a :class:`LabelHierarchy`) is needed by the hierarchical types.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
    loss = multilabel_bce(logits, labels, class_weights)
    if loss_type == "bce":
        return loss
    if hierarchy is None:
        raise ValueError(f"loss_type {loss_type!r} needs the CPC label hierarchy")
    if loss_type == "hierarchical":
        penalty = expected_hierarchical_distance(logits, labels, hierarchy) / logits.shape[-1]
    else:
        penalty = upstream_top1_penalty(logits, labels, hierarchy)
    return loss + hierarchy_weight * penalty.mean()

"""Losses: balanced class weights, (weighted) BCE, the differentiable hierarchical loss and the upstream penalty."""

import math

import pytest
import torch

from modernpatent_hf import CpcLabelSpace, ModernBertPatentConfig
from modernpatent_hf.losses import (
    LabelHierarchy,
    balanced_class_weights,
    expected_hierarchical_distance,
    hierarchy_distance_matrix,
    multilabel_bce,
    patent_classification_loss,
    upstream_top1_penalty,
)

# Index: 0 A01B, 1 A01C (same class as A01B), 2 A21D (same section), 3 H01L (other section), 4 H04W.
CODES = ["A01B", "A01C", "A21D", "H01L", "H04W"]
A01B, A01C, A21D, H01L, H04W = range(5)


def _tree():
    config = ModernBertPatentConfig(id2label=dict(enumerate(CODES)), label2id={c: i for i, c in enumerate(CODES)})
    tree = config.cpc_hierarchy()
    return torch.tensor(tree["subclass_to_class"]), torch.tensor(tree["subclass_to_section"])


def distance_matrix(weights=(1.0, 0.5, 0.25)):
    return hierarchy_distance_matrix(*_tree(), weights)


def hierarchy(weights=(1.0, 0.5, 0.25)):
    return LabelHierarchy(*_tree(), weights)


def multi_hot(*label_sets):
    labels = torch.zeros(len(label_sets), len(CODES))
    for row, indices in enumerate(label_sets):
        labels[row, list(indices)] = 1.0
    return labels


def test_balanced_class_weights_follow_the_formula_and_cap():
    # total 100 over K = 4 labels: 100 / (4 * count), the unseen label gets the cap.
    assert balanced_class_weights([10, 30, 0, 60]) == pytest.approx([2.5, 100 / 120, 5.0, 100 / 240])
    assert balanced_class_weights([1, 1000], cap=5.0) == pytest.approx([5.0, 1001 / 2000])
    assert balanced_class_weights([1, 1000], cap=2.0)[0] == 2.0


@pytest.mark.parametrize("counts", [[], [0, 0], [3, -1]])
def test_balanced_class_weights_reject_unusable_counts(counts):
    with pytest.raises(ValueError) as error:
        balanced_class_weights(counts)
    assert "\n" not in str(error.value)


def test_hierarchy_distance_matrix_matches_the_label_space():
    space = CpcLabelSpace(CODES)
    config = ModernBertPatentConfig(id2label=dict(space.id2label), label2id=dict(space.label2id))
    tree = config.cpc_hierarchy()
    assert tree["classes"] == list(space.classes) and tree["sections"] == list(space.sections)
    assert tree["subclass_to_class"] == space.subclass_to_class.tolist()
    assert tree["subclass_to_section"] == space.subclass_to_section.tolist()
    weights = (0.9, 0.4, 0.1)
    expected = torch.from_numpy(space.distance_matrix(weights))
    assert torch.equal(distance_matrix(weights), expected)


def test_bce_class_weights_multiply_both_terms_of_a_column():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0, -3.0], [-0.5, 1.5, -2.0, 3.0, 0.25]])
    labels = multi_hot([A01B, H01L], [A01C])
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    p = torch.sigmoid(logits)
    per_entry = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p))
    assert multilabel_bce(logits, labels).item() == pytest.approx(per_entry.mean().item(), rel=1e-6)
    weighted = multilabel_bce(logits, labels, weights).item()
    assert weighted == pytest.approx((per_entry * weights).mean().item(), rel=1e-6)


def test_expected_distance_on_a_hand_example():
    # Uniform over 5 codes, truth A01B: distances 0, 0.25, 0.5, 1, 1 -> E = 2.75 / 5.
    logits = torch.zeros(1, len(CODES))
    assert expected_hierarchical_distance(logits, multi_hot([A01B]), hierarchy()).item() == pytest.approx(0.55)
    # Truth {A01B, H01L}: H04W is now within H01L's section (0.5), A01C and A21D as before -> (0.25 + 0.5 + 0.5) / 5.
    two_labels = expected_hierarchical_distance(logits, multi_hot([A01B, H01L]), hierarchy()).item()
    assert two_labels == pytest.approx(0.25)


def test_expected_distance_gradient_pushes_far_mass_down_harder():
    # p(H01L) == p(A01C): the same mass, once in another section, once next door to the true A01B.
    logits = torch.tensor([[1.0, 0.5, -1.0, 0.5, -2.0]], requires_grad=True)
    expected = expected_hierarchical_distance(logits, multi_hot([A01B]), hierarchy())
    expected.sum().backward()
    gradient = logits.grad[0]
    # Gradient descent lowers logits with positive gradient: H01L goes down harder than A01C, the true A01B goes up.
    assert gradient[H01L] > gradient[A01C]
    assert gradient[H01L] > 0 > gradient[A01B]
    # The documented closed form dE/dz_j = p_j (d_j - E).
    p = torch.softmax(logits.detach(), dim=-1)[0]
    d = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.0])
    assert torch.allclose(gradient, p * (d - expected.detach()[0]), atol=1e-6)


def test_expected_distance_is_zero_without_true_labels():
    logits = torch.randn(2, len(CODES), requires_grad=True)
    expected = expected_hierarchical_distance(logits, multi_hot([A01B], []), hierarchy())
    assert expected[1].item() == 0.0 and expected[0].item() > 0.0
    expected.sum().backward()
    assert torch.count_nonzero(logits.grad[1]) == 0


def test_hierarchical_loss_is_bce_plus_weighted_mean_expected_distance_per_label():
    # BCE is a mean over patents and labels; the expected distance is per patent, so it is divided by the
    # number of labels to stay on BCE's scale (undivided it outweighed BCE by the label count).
    logits = torch.randn(3, len(CODES))
    labels = multi_hot([A01B], [H01L, H04W], [])
    tree = hierarchy()
    per_label_distance = expected_hierarchical_distance(logits, labels, tree).mean() / len(CODES)
    expected = multilabel_bce(logits, labels) + 0.3 * per_label_distance
    loss = patent_classification_loss(logits, labels, "hierarchical", tree, hierarchy_weight=0.3)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_upstream_penalty_scores_the_wrong_top1_by_level():
    # Truth A01B everywhere; the top-1 is A01B, A01C (subclass differs), A21D (class differs), H01L (section differs).
    logits = torch.full((4, len(CODES)), -1.0)
    for row, top in enumerate([A01B, A01C, A21D, H01L]):
        logits[row, top] = 2.0
    labels = multi_hot([A01B], [A01B], [A01B], [A01B])
    penalty = upstream_top1_penalty(logits, labels, hierarchy())
    assert penalty.tolist() == [0.0, 0.25, 0.5, 1.0]
    loss = patent_classification_loss(logits, labels, "upstream_hierarchical", hierarchy(), hierarchy_weight=0.5)
    bce = multilabel_bce(logits, labels).item()
    assert loss.item() == pytest.approx(bce + 0.5 * (0.0 + 0.25 + 0.5 + 1.0) / 4, rel=1e-6)


def test_upstream_penalty_adds_no_gradient_unlike_the_hierarchical_loss():
    torch.manual_seed(0)
    base = torch.randn(4, len(CODES))
    labels = multi_hot([A01B], [H01L], [A21D, H04W], [A01C])
    gradients = {}
    for loss_type in ("bce", "upstream_hierarchical", "hierarchical"):
        logits = base.clone().requires_grad_(True)
        patent_classification_loss(logits, labels, loss_type, hierarchy(), hierarchy_weight=0.5).backward()
        gradients[loss_type] = logits.grad
    assert torch.equal(gradients["upstream_hierarchical"], gradients["bce"])
    assert not torch.allclose(gradients["hierarchical"], gradients["bce"])


def test_losses_compute_in_float32_for_bf16_logits():
    logits = torch.randn(2, len(CODES)).to(torch.bfloat16)
    labels = multi_hot([A01B], [H04W])
    loss = patent_classification_loss(logits, labels, "hierarchical", hierarchy())
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_unknown_loss_type_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown loss_type 'focal'") as error:
        patent_classification_loss(torch.zeros(1, 5), multi_hot([A01B]), "focal", hierarchy())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("weights", [(1.0, 0.5, 0.25), (0.9, 0.4, 0.1)])
def test_level_by_level_nearest_distance_equals_the_distance_matrix_lookup(weights):
    """The O(B x L) computation gives min over true labels of the full L x L distance matrix."""
    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(64, len(CODES), generator=generator) < 0.3).float()
    labels[0] = 0.0  # a patent without labels
    matrix = distance_matrix(weights)
    reference = matrix[None, :, :].masked_fill(labels[:, None, :] == 0, float("inf")).amin(dim=-1)
    reference = reference.masked_fill(labels.sum(dim=-1, keepdim=True) == 0, 0.0)
    assert torch.equal(hierarchy(weights).nearest_true_distance(labels), reference)

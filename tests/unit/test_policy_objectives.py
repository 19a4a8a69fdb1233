import math

import pytest
import torch

from rlx.objectives.policy import (
    approx_kl,
    clipped_surrogate,
    explained_variance,
    normalize,
    probability_ratio,
    reinforce_loss,
    value_loss,
)


def _grad_of_surrogate(ratio: float, adv: float, eps: float = 0.2):
    r = torch.tensor([ratio], requires_grad=True)
    obj = clipped_surrogate(r, torch.tensor([adv]), eps)
    obj.sum().backward()
    return obj.item(), r.grad.item()


@pytest.mark.parametrize(
    "ratio, adv, value, grad",
    [
        (1.1, 2.0, 2.2, 2.0),    # A>0, inside [0.8, 1.2]: r*A, gradient A
        (1.5, 2.0, 2.4, 0.0),    # A>0, above 1+eps: clipped at 1.2*A, no gradient
        (0.5, 2.0, 1.0, 2.0),    # A>0, below 1-eps: min picks r*A (pessimistic), gradient A
        (0.9, -1.0, -0.9, -1.0),  # A<0, inside: r*A
        (0.5, -1.0, -0.8, 0.0),   # A<0, below 1-eps: clipped at 0.8*A, no gradient
        (1.5, -1.0, -1.5, -1.0),  # A<0, above 1+eps: min picks r*A, gradient A
    ],
)
def test_clipped_surrogate_cases_value_and_gradient(ratio, adv, value, grad):
    v, g = _grad_of_surrogate(ratio, adv)
    assert v == pytest.approx(value)
    assert g == pytest.approx(grad)


def test_probability_ratio():
    assert torch.allclose(probability_ratio(torch.log(torch.tensor([0.3])), torch.log(torch.tensor([0.6]))), torch.tensor([0.5]))


def test_reinforce_loss_value_and_gradient_direction():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    w = torch.tensor([3.0, -1.0])
    loss = reinforce_loss(logp, w)
    assert loss.item() == pytest.approx(-((-1.0 * 3.0) + (-2.0 * -1.0)) / 2)
    loss.backward()
    assert torch.allclose(logp.grad, -w / 2)  # descent raises log-prob of positive-weight actions


def test_value_loss_plain_and_clipped():
    v, target, old = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])
    assert value_loss(v, target).item() == pytest.approx(0.5 * 4.0)
    # clipped prediction = 1 + clamp(1, -0.5, 0.5) = 1.5 -> error 2.25 < 4: max keeps 4
    assert value_loss(v, target, old, clip=0.5).item() == pytest.approx(2.0)
    # prediction moved toward target beyond the clip: clipped error dominates
    assert value_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]), clip=0.5).item() == pytest.approx(0.5 * 0.25)


def test_normalize_and_explained_variance():
    x = normalize(torch.tensor([1.0, 2.0, 3.0]))
    assert x.mean().abs() < 1e-6 and x.std().item() == pytest.approx(1.0, rel=1e-5)
    assert normalize(torch.tensor([5.0])).item() == 0.0
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(t, t).item() == pytest.approx(1.0)
    assert explained_variance(torch.full_like(t, 2.5), t).item() == pytest.approx(0.0)


def test_approx_kl_zero_for_identical_and_positive_otherwise():
    a = torch.log(torch.tensor([0.2, 0.5]))
    assert approx_kl(a, a).item() == 0.0
    assert approx_kl(a, a + 0.3).item() > 0


def test_approx_kl_from_ratio_matches_log_prob_form():
    from rlx.objectives.policy import approx_kl_from_ratio

    logp, old = torch.tensor([-0.5, -1.2, -0.1]), torch.tensor([-0.7, -1.0, -0.1])
    # hand value: r = e^{0.2}, e^{-0.2}, 1 -> mean((r - 1) - log r)
    expected = ((math.exp(0.2) - 1 - 0.2) + (math.exp(-0.2) - 1 + 0.2) + 0.0) / 3
    assert approx_kl_from_ratio(torch.exp(logp - old)).item() == pytest.approx(expected, rel=1e-5)
    assert approx_kl_from_ratio(torch.exp(logp - old)).item() == pytest.approx(approx_kl(logp, old).item(), rel=1e-5)

"""Tanh-Gaussian and categorical helpers against hand numbers and torch.distributions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from rlx.objectives.distributions import (
    categorical_probs_log_probs,
    gaussian_entropy,
    scale_action,
    tanh_gaussian_deterministic,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
    unscale_action,
)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------ tanh-Gaussian


def test_log_prob_hand_numbers() -> None:
    # u=0, N(0,1): log N = -½ln2π, tanh'(0)=1 -> log π = -½ln2π
    assert tanh_gaussian_log_prob(t(0.0), t(0.0), t(0.0)).item() == pytest.approx(-HALF_LOG_2PI)
    # u=ln2: tanh(u) = (4-1)/(4+1) = 0.6, 1 - 0.36 = 0.64 -> log π = -½(ln2)² - ½ln2π - ln0.64
    expected = -0.5 * math.log(2) ** 2 - HALF_LOG_2PI - math.log(0.64)
    assert tanh_gaussian_log_prob(t(0.0), t(0.0), t(math.log(2))).item() == pytest.approx(expected)
    # σ = e (log σ = 1), μ = 1, u = 1: z = 0 -> log N = -1 - ½ln2π; tanh(1)² from math
    expected = -1.0 - HALF_LOG_2PI - math.log(1 - math.tanh(1.0) ** 2)
    assert tanh_gaussian_log_prob(t(1.0), t(1.0), t(1.0)).item() == pytest.approx(expected)


def test_log_prob_sums_over_last_dim() -> None:
    # two independent dims at u=0 and u=ln2, batch of 3 identical rows -> shape [3]
    mean, log_std = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    u = t(0.0, math.log(2)).expand(3, 2)
    expected = -2 * HALF_LOG_2PI - 0.5 * math.log(2) ** 2 - math.log(0.64)
    lp = tanh_gaussian_log_prob(mean, log_std, u)
    assert lp.shape == (3,)
    torch.testing.assert_close(lp, torch.full((3,), expected, dtype=torch.float64))


def test_log_prob_matches_torch_transformed_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(64, 3, generator=g, dtype=torch.float64)
    log_std = torch.empty(64, 3, dtype=torch.float64).uniform_(-1.0, 0.5, generator=g)
    u = mean + log_std.exp() * torch.randn(64, 3, generator=g, dtype=torch.float64)
    u = u.clamp(-3.0, 3.0)  # keep |tanh(u)| ≲ 0.995 so atanh inside torch's log_prob is accurate
    ref = TransformedDistribution(Independent(Normal(mean, log_std.exp()), 1), [TanhTransform(cache_size=1)])
    torch.testing.assert_close(tanh_gaussian_log_prob(mean, log_std, u), ref.log_prob(torch.tanh(u)))


def test_sample_log_prob_matches_log_prob_of_same_u() -> None:
    g = torch.Generator().manual_seed(1)
    mean, log_std = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g) * 0.5
    eps = torch.randn(32, 2, generator=g)
    a, lp = tanh_gaussian_sample(mean, log_std, noise=eps)
    u = mean + log_std.exp() * eps
    torch.testing.assert_close(a, torch.tanh(u))
    torch.testing.assert_close(lp, tanh_gaussian_log_prob(mean, log_std, u))
    assert a.shape == (32, 2) and lp.shape == (32,)


def test_sample_hand_numbers_with_given_noise() -> None:
    # μ=0, σ=1, ε=ln2 -> u=ln2, a = 0.6
    a, lp = tanh_gaussian_sample(t(0.0), t(0.0), noise=t(math.log(2)))
    torch.testing.assert_close(a, t(0.6))
    assert lp.item() == pytest.approx(-0.5 * math.log(2) ** 2 - HALF_LOG_2PI - math.log(0.64))


def test_sample_seeded_and_in_unit_box() -> None:
    mean, log_std = torch.zeros(1000, 2), torch.full((1000, 2), 1.0)
    a1, lp1 = tanh_gaussian_sample(mean, log_std, generator=torch.Generator().manual_seed(3))
    a2, lp2 = tanh_gaussian_sample(mean, log_std, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and torch.equal(lp1, lp2)
    assert a1.abs().max() <= 1.0 and torch.isfinite(lp1).all()


def test_log_prob_is_stable_for_saturated_u() -> None:
    # Naive log(1 - tanh(u)²) is log(0) = -inf at u=20; the stable form gives 2(ln2 - 20 - softplus(-40)).
    for dtype in (torch.float32, torch.float64):
        u = torch.tensor([20.0], dtype=dtype)
        lp = tanh_gaussian_log_prob(torch.zeros(1, dtype=dtype), torch.zeros(1, dtype=dtype), u)
        expected = -0.5 * 400 - HALF_LOG_2PI - 2 * (math.log(2) - 20 - math.log1p(math.exp(-40)))
        assert torch.isfinite(lp).all()
        assert lp.item() == pytest.approx(expected, rel=1e-6)
    assert torch.isinf(torch.log(1 - torch.tanh(torch.tensor(20.0)) ** 2))  # why the stable form matters


def test_reparameterization_gradients() -> None:
    # a = tanh(μ + σε): ∂a/∂μ = 1 - a², ∂a/∂logσ = (1 - a²)σε
    mean = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor([-0.5, 0.1], dtype=torch.float64, requires_grad=True)
    eps = t(0.7, -1.2)
    a, _ = tanh_gaussian_sample(mean, log_std, noise=eps)
    a.sum().backward()
    a_ = a.detach()
    torch.testing.assert_close(mean.grad, 1 - a_**2)
    torch.testing.assert_close(log_std.grad, (1 - a_**2) * log_std.detach().exp() * eps)

    # log-prob path: gradients reach both and match autograd through torch's TransformedDistribution
    mean.grad = log_std.grad = None
    _, lp = tanh_gaussian_sample(mean, log_std, noise=eps)
    lp.backward()
    m2, s2 = mean.detach().clone().requires_grad_(), log_std.detach().clone().requires_grad_()
    ref = TransformedDistribution(Independent(Normal(m2, s2.exp()), 1), [TanhTransform(cache_size=1)])
    ref.log_prob(ref.transforms[0](m2 + s2.exp() * eps)).backward()  # cached u keeps the path exact
    torch.testing.assert_close(mean.grad, m2.grad)
    torch.testing.assert_close(log_std.grad, s2.grad)
    assert mean.grad.abs().sum() > 0 and log_std.grad.abs().sum() > 0


def test_deterministic_action() -> None:
    torch.testing.assert_close(tanh_gaussian_deterministic(t(0.0, math.log(2))), t(0.0, 0.6))


# -------------------------------------------------------------------------------- action scaling


def test_scale_action_hand_numbers() -> None:
    # Box [-2, 2]: -1 -> -2, 0 -> 0, 1 -> 2;  Box [0, 10]: -1 -> 0, 0 -> 5, 0.5 -> 7.5
    torch.testing.assert_close(scale_action(t(-1.0, 0.0, 1.0), -2.0, 2.0), t(-2.0, 0.0, 2.0))
    torch.testing.assert_close(scale_action(t(-1.0, 0.0, 0.5), 0.0, 10.0), t(0.0, 5.0, 7.5))


def test_scale_unscale_round_trip_with_numpy_box_bounds() -> None:
    low, high = np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32)
    a = torch.tensor([[0.5, 0.5], [-1.0, 1.0]])
    scaled = scale_action(a, low, high)
    torch.testing.assert_close(scaled, torch.tensor([[1.0, 7.5], [-2.0, 10.0]]))
    torch.testing.assert_close(unscale_action(scaled, low, high), a)
    torch.testing.assert_close(unscale_action(torch.tensor([[0.0, 5.0]]), low, high), torch.zeros(1, 2))


# ----------------------------------------------------------------------------------- categorical


def test_categorical_probs_log_probs() -> None:
    # logits (0, ln3) -> π = (1/4, 3/4)
    probs, log_probs = categorical_probs_log_probs(t(0.0, math.log(3)))
    torch.testing.assert_close(probs, t(0.25, 0.75))
    torch.testing.assert_close(log_probs, t(math.log(0.25), math.log(0.75)))


def test_categorical_log_probs_stable_for_large_logits() -> None:
    probs, log_probs = categorical_probs_log_probs(torch.tensor([0.0, 1000.0]))
    assert torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs, torch.tensor([-1000.0, 0.0]))
    torch.testing.assert_close(probs, torch.tensor([0.0, 1.0]))


def test_gaussian_entropy_hand_numbers() -> None:
    # H = Σ_j (log σ_j + ½ log(2πe)): σ = (1, 2) -> 2·½(1 + log 2π) + log 2
    h = gaussian_entropy(torch.tensor([[0.0, math.log(2.0)]], dtype=torch.float64))
    assert h.shape == (1,) and h.item() == pytest.approx(1.0 + math.log(2 * math.pi) + math.log(2.0))
    # agrees with torch's Normal
    log_std = torch.tensor([-1.0, 0.3, 2.0])
    expected = torch.distributions.Normal(torch.zeros(3), log_std.exp()).entropy().sum()
    assert gaussian_entropy(log_std).item() == pytest.approx(expected.item(), rel=1e-6)


def test_categorical_policy_sample_draws_what_categorical_draws():

    from rlx.networks.heads import CategoricalPolicy

    policy = CategoricalPolicy(4, 3, [8], "tanh")
    x = torch.randn(64, 4)
    torch.manual_seed(3)
    action, log_prob = policy.sample(x)
    torch.manual_seed(3)
    dist = Categorical(logits=policy.net(x))
    expected = dist.sample()
    assert torch.equal(action, expected)
    torch.testing.assert_close(log_prob, dist.log_prob(expected))

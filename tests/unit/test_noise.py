"""Exploration noise processes: OU mean reversion and stationary variance, Gaussian moments, state round-trip."""
from __future__ import annotations

import numpy as np
import pytest

from rlx.objectives.noise import GaussianNoise, OrnsteinUhlenbeckNoise


def test_ou_mean_reversion_is_geometric_without_diffusion() -> None:
    # σ=0: x_{k+1} = x_k + θ(μ − x_k)dt, so x_k = μ + (x0 − μ)(1 − θdt)^k exactly.
    theta, dt = 0.15, 1e-2
    ou = OrnsteinUhlenbeckNoise(2, mu=0.0, theta=theta, sigma=0.0, dt=dt, rng=np.random.default_rng(0), x0=5.0)
    for k in range(1, 201):
        x = ou.sample()
        np.testing.assert_allclose(x, 5.0 * (1 - theta * dt) ** k, rtol=1e-12)
    # hand numbers for one step with μ=1, θ=0.5, dt=0.1: 5 + 0.5*(1-5)*0.1 = 4.8, then 4.8 - 0.19 = 4.61
    ou = OrnsteinUhlenbeckNoise(1, mu=1.0, theta=0.5, sigma=0.0, dt=0.1, rng=np.random.default_rng(0), x0=5.0)
    np.testing.assert_allclose(ou.sample(), [4.8])
    np.testing.assert_allclose(ou.sample(), [4.61])


def test_ou_reset_returns_to_x0_or_mu() -> None:
    ou = OrnsteinUhlenbeckNoise(3, mu=0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(ou.x, [0.5, 0.5, 0.5])
    ou.sample()
    ou.reset()
    np.testing.assert_array_equal(ou.x, [0.5, 0.5, 0.5])
    ou = OrnsteinUhlenbeckNoise(2, x0=[1.0, -1.0], rng=np.random.default_rng(0))
    ou.sample()
    ou.reset()
    np.testing.assert_array_equal(ou.x, [1.0, -1.0])


def test_ou_stationary_variance() -> None:
    # Default θ=0.15, σ=0.2, dt=1e-2: AR(1) with ρ = 1 − θdt, Var = σ²dt/(1 − ρ²) ≈ σ²/(2θ) = 0.1333.
    # Many independent components in parallel; burn in first (ρ^{2k} ≈ 3e-5 at k=3500).
    theta, sigma, dt = 0.15, 0.2, 1e-2
    ou = OrnsteinUhlenbeckNoise(10_000, theta=theta, sigma=sigma, dt=dt, rng=np.random.default_rng(1))
    for _ in range(3500):
        ou.sample()
    snapshots = []
    for k in range(2500):  # snapshots 500 steps apart are only weakly correlated (ρ^500 ≈ 0.47)
        x = ou.sample()
        if k % 500 == 0:
            snapshots.append(x)
    xs = np.stack(snapshots)
    rho = 1 - theta * dt
    exact = sigma**2 * dt / (1 - rho**2)
    assert exact == pytest.approx(sigma**2 / (2 * theta), rel=1e-3)
    assert xs.mean() == pytest.approx(0.0, abs=0.02)
    assert xs.var() == pytest.approx(exact, rel=0.02)


def test_ou_state_dict_round_trip() -> None:
    ou = OrnsteinUhlenbeckNoise(3, rng=np.random.default_rng(7))
    for _ in range(5):
        ou.sample()
    state = ou.state_dict()
    expected = [ou.sample() for _ in range(10)]
    fresh = OrnsteinUhlenbeckNoise(3, rng=np.random.default_rng(999))
    fresh.load_state_dict(state)
    got = [fresh.sample() for _ in range(10)]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))
    # loading again from the same dict still works (it was not mutated by use)
    ou.load_state_dict(state)
    np.testing.assert_array_equal(np.stack([ou.sample() for _ in range(10)]), np.stack(expected))


def test_ou_sample_returns_a_copy() -> None:
    ou = OrnsteinUhlenbeckNoise(2, rng=np.random.default_rng(0))
    x = ou.sample()
    x[:] = 100.0
    assert np.all(ou.x != 100.0)


def test_gaussian_noise_moments() -> None:
    noise = GaussianNoise((2,), sigma=0.3, rng=np.random.default_rng(0))
    xs = np.stack([noise.sample() for _ in range(20_000)])
    assert xs.shape == (20_000, 2)
    np.testing.assert_allclose(xs.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(xs.std(axis=0), 0.3, rtol=0.02)
    # independent steps: lag-1 autocorrelation ≈ 0 (unlike OU)
    assert abs(np.corrcoef(xs[:-1, 0], xs[1:, 0])[0, 1]) < 0.03


def test_gaussian_noise_state_dict_round_trip() -> None:
    noise = GaussianNoise(4, sigma=1.0, rng=np.random.default_rng(5))
    noise.sample()
    state = noise.state_dict()
    expected = np.stack([noise.sample() for _ in range(5)])
    fresh = GaussianNoise(4, sigma=1.0, rng=np.random.default_rng(0))
    fresh.load_state_dict(state)
    noise.reset()  # no-op for Gaussian noise
    np.testing.assert_array_equal(np.stack([fresh.sample() for _ in range(5)]), expected)

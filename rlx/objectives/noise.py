"""Exploration noise for deterministic policies (notes: DDPG "Exploration", a_t = μ(s_t) + N_t).

Small stateful processes; all randomness comes from an explicit ``numpy.random.Generator`` whose state
is part of ``state_dict()``, so a resumed run draws exactly the same noise.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    return (size,) if isinstance(size, (int, np.integer)) else tuple(size)


class OrnsteinUhlenbeckNoise:
    """Temporally correlated OU noise (DDPG paper), Euler–Maruyama discretization.

    x_{t+1} = x_t + θ(μ − x_t)dt + σ√dt·N(0, 1). Starting from x_0, E[x_k] = μ + (x_0 − μ)(1 − θdt)^k,
    and the stationary variance is σ²dt / (1 − (1 − θdt)²) ≈ σ²/(2θ) for small dt. ``reset()`` (call
    it at episode start, as in the notes' pseudocode) returns x to ``x0`` (default μ).
    """

    def __init__(
        self,
        size: int | tuple[int, ...],
        mu: ArrayLike = 0.0,
        theta: float = 0.15,
        sigma: float = 0.2,
        dt: float = 1e-2,
        rng: np.random.Generator | None = None,
        x0: ArrayLike | None = None,
    ) -> None:
        self.shape = _shape(size)
        self.mu = np.broadcast_to(np.asarray(mu, dtype=np.float64), self.shape).copy()
        self.theta, self.sigma, self.dt = float(theta), float(sigma), float(dt)
        self.x0 = None if x0 is None else np.broadcast_to(np.asarray(x0, dtype=np.float64), self.shape).copy()
        self.rng = rng if rng is not None else np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        self.x = (self.mu if self.x0 is None else self.x0).copy()

    def sample(self) -> np.ndarray:
        """Advance one step and return (a copy of) the new x_t, shape ``size``, float64."""
        drift = self.theta * (self.mu - self.x) * self.dt
        diffusion = self.sigma * np.sqrt(self.dt) * self.rng.standard_normal(self.shape)
        self.x = self.x + drift + diffusion
        return self.x.copy()

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.copy(), "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = np.array(state["x"], dtype=np.float64).reshape(self.shape)
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])


class GaussianNoise:
    """Uncorrelated Gaussian noise N(μ, σ²) per step (the TD3 choice); ``reset()`` is a no-op."""

    def __init__(
        self,
        size: int | tuple[int, ...],
        sigma: float,
        rng: np.random.Generator | None = None,
        mu: ArrayLike = 0.0,
    ) -> None:
        self.shape = _shape(size)
        self.sigma = float(sigma)
        self.mu = np.broadcast_to(np.asarray(mu, dtype=np.float64), self.shape).copy()
        self.rng = rng if rng is not None else np.random.default_rng()

    def reset(self) -> None:
        pass

    def sample(self) -> np.ndarray:
        """Draw μ + σ·N(0, 1), shape ``size``, float64."""
        return self.mu + self.sigma * self.rng.standard_normal(self.shape)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])

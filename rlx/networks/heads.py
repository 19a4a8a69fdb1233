"""Policy and value heads on top of MLPs: categorical, diagonal Gaussian, state value."""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlx.networks.mlp import mlp
from rlx.objectives.distributions import categorical_probs_log_probs

# Argument validation costs tens of microseconds per distribution built in the acting hot path.
Distribution.set_default_validate_args(False)


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(logits(s)) over a Discrete action space."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, n_actions, hidden_sizes, activation, out_gain=0.01)

    def distribution(self, obs: Tensor) -> Distribution:
        return Categorical(logits=self.net(obs))

    def mode(self, obs: Tensor) -> Tensor:
        return self.net(obs).argmax(-1)

    def log_prob_entropy(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """(log pi(a|s), H[pi(.|s)]) from one log-softmax: the update's hot path, ~15% cheaper per
        PPO minibatch than building a Categorical (measured on CartPole's 256 x 2 logits)."""
        probs, log_probs = categorical_probs_log_probs(self.net(obs))
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), -(probs * log_probs).sum(-1)


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), diag(sigma^2)) with a state-independent learned log-std (PPO/A2C style)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str, log_std_init: float = 0.0):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_sizes, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), log_std_init))

    def distribution(self, obs: Tensor) -> Distribution:
        mean = self.net(obs)
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean)), 1)

    def mode(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    def log_prob_entropy(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.distribution(obs)
        return dist.log_prob(actions), dist.entropy()


def make_policy(obs_dim: int, action_space: gym.Space, hidden_sizes: Sequence[int], activation: str, log_std_init: float = 0.0) -> nn.Module:
    """The stochastic policy head that fits the action space."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden_sizes, activation)
    if isinstance(action_space, gym.spaces.Box):
        return GaussianPolicy(obs_dim, int(np.prod(action_space.shape)), hidden_sizes, activation, log_std_init)
    raise TypeError(f"unsupported action space {action_space}")


class ValueNet(nn.Module):
    """State-value critic V(s)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden_sizes, activation, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)

"""Policy and value heads on top of MLPs: categorical, diagonal Gaussian, state value.

Each head optionally owns an observation ``encoder`` (:mod:`rlx.networks.encoders`: a CNN for images,
a flatten for non-vector observations) applied before its MLP; ``obs_dim`` is then the encoder's
feature width. Without one (flat vectors) the MLP takes the observation directly."""
from __future__ import annotations

from typing import Protocol, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlx.networks.mlp import mlp
from rlx.objectives.distributions import categorical_probs_log_probs


class MemberNoise(Protocol):
    """Per-member noise (rlx.members.MemberRandom): row k of the result from member k's own stream."""

    def gumbel_like(self, x: Tensor) -> Tensor: ...

    def normal_like(self, x: Tensor) -> Tensor: ...


# Argument validation costs tens of microseconds per distribution built in the acting hot path.
Distribution.set_default_validate_args(False)


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(logits(s)) over a Discrete action space."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int], activation: str,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net: nn.Module = mlp(obs_dim, n_actions, hidden_sizes, activation, out_gain=0.01)

    def logits(self, obs: Tensor) -> Tensor:
        return self.net(obs if self.encoder is None else self.encoder(obs))

    def distribution(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs))

    def mode(self, obs: Tensor) -> Tensor:
        return self.logits(obs).argmax(-1)

    def sample(self, obs: Tensor, random: MemberNoise | None = None) -> tuple[Tensor, Tensor]:
        """(a ~ pi(.|s), log pi(a|s)). With ``random`` (members' streams, obs ``[K, ...]``): the Gumbel-max
        draw ``argmax(logits + g)``, g from member k's own stream for row k. Without: drawn as
        ``Categorical(logits).sample()`` draws (one multinomial on the softmax: the same random stream)
        without building the distribution object, which costs half of the acting step's sampling
        (20 us -> 12 us for 8 envs, measured)."""
        logits = self.logits(obs)
        if random is not None:
            log_probs = torch.log_softmax(logits, dim=-1)
            action = (log_probs + random.gumbel_like(log_probs)).argmax(-1)
            return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        probs, log_probs = categorical_probs_log_probs(logits)
        action = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def log_prob_entropy(self, obs: Tensor, actions: Tensor, entropy_grad: bool = True) -> tuple[Tensor, Tensor]:
        """(log pi(a|s), H[pi(.|s)]) from one log-softmax: the update's hot path, ~15% cheaper per
        PPO minibatch than building a Categorical (measured on CartPole's 256 x 2 logits).
        ``entropy_grad=False``: H only for logging, kept out of the autograd graph."""
        log_probs = torch.log_softmax(self.logits(obs), dim=-1)
        log_prob = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_prob, entropy


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), diag(sigma^2)) with a state-independent learned log-std (PPO/A2C style)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str, log_std_init: float = 0.0,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net: nn.Module = mlp(obs_dim, act_dim, hidden_sizes, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), log_std_init))

    def mean(self, obs: Tensor) -> Tensor:
        return self.net(obs if self.encoder is None else self.encoder(obs))

    def distribution(self, obs: Tensor) -> Distribution:
        mean = self.mean(obs)
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean)), 1)

    def mode(self, obs: Tensor) -> Tensor:
        return self.mean(obs)

    def sample(self, obs: Tensor, random: MemberNoise | None = None) -> tuple[Tensor, Tensor]:
        """(a ~ pi(.|s), log pi(a|s)); ``random``: mu + sigma * eps with eps from member k's own stream for
        row k of obs ``[K, ...]`` (else torch's global RNG)."""
        dist = self.distribution(obs)
        if random is None:
            action = dist.sample()
        else:
            mean = dist.base_dist.loc  # type: ignore[attr-defined]
            action = mean + dist.base_dist.scale * random.normal_like(mean)  # type: ignore[attr-defined]
        return action, dist.log_prob(action)

    def log_prob_entropy(self, obs: Tensor, actions: Tensor, entropy_grad: bool = True) -> tuple[Tensor, Tensor]:
        dist = self.distribution(obs)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = dist.entropy()
        return dist.log_prob(actions), entropy


def make_policy(obs_dim: int, action_space: gym.Space, hidden_sizes: Sequence[int], activation: str, log_std_init: float = 0.0,
                encoder: nn.Module | None = None) -> CategoricalPolicy | GaussianPolicy:
    """The stochastic policy head that fits the action space (on ``encoder``'s features if given)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden_sizes, activation, encoder)
    if isinstance(action_space, gym.spaces.Box):
        return GaussianPolicy(obs_dim, int(np.prod(action_space.shape)), hidden_sizes, activation, log_std_init, encoder)
    raise TypeError(f"unsupported action space {action_space}")


class ValueNet(nn.Module):
    """State-value critic V(s)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net: nn.Module = mlp(obs_dim, 1, hidden_sizes, activation, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs if self.encoder is None else self.encoder(obs)).squeeze(-1)

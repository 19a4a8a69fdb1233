"""Pieces several algorithms share: the on-policy actor-critic model, optimizers, minibatching."""
from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from rlx.envs import EnvSpec
from rlx.networks.heads import ValueNet, make_policy
from rlx.networks.mlp import ObsNormalizer
from rlx.schema import NetworkConfig


class ActorCritic(nn.Module):
    """Observation normalizer + stochastic policy pi(a|s) + state-value critic V(s), separate MLPs."""

    def __init__(self, spec: EnvSpec, net: NetworkConfig, normalize_obs: bool = False, log_std_init: float = 0.0,
                 critic: bool = True):
        super().__init__()
        obs_dim = int(torch.tensor(spec.obs_shape).prod())
        self.normalizer = ObsNormalizer(spec.obs_shape, enabled=normalize_obs)
        self.policy = make_policy(obs_dim, spec.action_space, net.hidden_sizes, net.activation, log_std_init)
        # critic=False (REINFORCE without baseline): no V network; V(s) reads as 0 everywhere.
        self.critic = ValueNet(obs_dim, net.hidden_sizes, net.activation) if critic else _ZeroValue()

    @torch.inference_mode()
    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample a ~ pi(.|s) for a rollout; returns (action, log pi(a|s), V(s)). Updates obs stats."""
        self.normalizer.update(obs)
        x = self.normalizer(obs)
        dist = self.policy.distribution(x)
        action = dist.sample()
        return action, dist.log_prob(action), self.critic(x)

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.normalizer(obs))

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        x = self.normalizer(obs)
        return self.policy.mode(x) if deterministic else self.policy.distribution(x).sample()

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi(a|s), entropy, V(s)) with gradients, for the update."""
        x = self.normalizer(obs)
        dist = self.policy.distribution(x)
        return dist.log_prob(actions), dist.entropy(), self.critic(x)


class _ZeroValue(nn.Module):
    """Stand-in critic V(s) = 0 for policy-only models (no parameters, nothing to train)."""

    def forward(self, obs: Tensor) -> Tensor:
        return obs.new_zeros(obs.shape[:-1])


def make_optimizer(params: Iterable[nn.Parameter], lr: float, eps: float = 1e-5) -> torch.optim.Adam:
    """Adam with the multi-tensor (foreach) kernels: one launch per step instead of one per tensor."""
    return torch.optim.Adam(params, lr=lr, eps=eps, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def minibatches(n: int, batch_size: int, device: torch.device) -> Iterator[Tensor | slice]:
    """Shuffled index minibatches covering ``n`` samples; the whole batch as one slice when it fits."""
    if batch_size >= n:
        yield slice(None)
        return
    perm = torch.randperm(n, device=device)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]

"""Online actor-critic (notes: "Online actor-critic algorithm"): one env step, then one update."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, cast

import torch
from torch import Tensor

from rlx.algos.common import PolicyGradientConfig, PopulationPolicyGradient
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.policy import explained_variance
from rlx.objectives.returns import gae


@dataclass
class OnlineACConfig(PolicyGradientConfig):
    """The shared policy-gradient fields, with defaults for one-transition updates:"""

    max_grad_norm: float = param(10.0, gt=0, help="gradient-norm clip (actor and critic together)")
    normalize_obs: bool = param(True, help="running observation normalization: standardized inputs make one-sample updates stable")


class OnlineAC(PopulationPolicyGradient):
    """After every env step (s, a, r, s'): delta = r + gamma V(s') - V(s) with the current critic
    (V(s') = 0 at a terminal state; V(final obs) at a time-limit truncation), then at once
    critic  w <- w + critic_lr * delta * grad V(s)         (a step on 1/2 (V(s) - r - gamma V(s'))^2)
    actor   theta <- theta + lr * delta * grad log pi(a|s)  (+ entropy bonus),
    both from the same delta (one-step actor-critic, Sutton & Barto 13.5, without the gamma^t factor).

    Batch size 1 by design: ``n_steps`` is 1, and with the default ``env.num_envs=1`` each update
    sees exactly one transition (more envs give the notes' synchronous parallel online actor-critic).
    A population of K members (issue 22; a plain run is K=1): member k's own transitions, weights,
    lr / critic_lr / gamma / ent_coef / max_grad_norm and optimizer state (:class:`PopulationPolicyGradient`).
    """

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.critic_lr", "algo.gamma", "algo.ent_coef", "algo.max_grad_norm",
                                    "algo.anneal_lr", "algo.log_std_init")
    Config = OnlineACConfig
    action_spaces = ("discrete", "continuous")
    n_steps = 1

    def __init__(self, spec: EnvSpec, hp: OnlineACConfig | Sequence[OnlineACConfig], net: NetworkConfig,
                 device: torch.device, seeds: Sequence[int] | None = None):
        super().__init__(spec, [hp] if isinstance(hp, OnlineACConfig) else list(hp), net, device, seeds, n_steps=1)

    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        m = self.members
        lr = self.anneal(progress)
        per_member = m.per_member(rollout)  # [T, K, N, ...]
        # GAE with lambda = 0 is the one-step TD error; the separate learning rates stand in for vf_coef.
        advantages = gae(per_member.rewards, per_member.values, per_member.next_values, per_member.terminated,
                         per_member.done, self.gamma, 0.0)
        returns = advantages + per_member.values
        obs, actions, old_values, advantages, returns = (
            m.member_major(x) for x in (cast(Tensor, per_member.obs), per_member.actions, per_member.values, advantages, returns))
        loss, stats = self.actor_critic_loss(obs, actions, advantages, returns)
        norms = self.gradient_step(loss)
        self.updates += 1
        columns = [stats, norms.unsqueeze(1)]
        keys = ["policy_loss", "value_loss", "entropy", "grad_norm"]
        if returns.shape[1] > 1:  # one sample has no variance to explain
            columns.append(explained_variance(old_values, returns, dim=1).unsqueeze(1))
            keys.append("explained_variance")
        columns.append(lr)
        keys.append("lr")
        return [dict(zip(keys, row, strict=True)) for row in torch.cat(columns, 1).tolist()]

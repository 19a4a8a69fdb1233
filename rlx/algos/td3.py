"""Twin Delayed DDPG (Fujimoto et al. 2018): DDPG plus the three fixes for Q over-estimation.

1. twin critics, target y = r + γ(1−d) min(Q'_1, Q'_2)(s', ã');
2. target-policy smoothing ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²);
3. delayed policy (and target) updates: one actor step per ``policy_delay`` critic steps.
Acting, networks and the actor step are DDPG's (this class only changes ``update``). A population
(issue 12) as DDPG's, with each member's own σ and c of the smoothing noise (``[K, 1, 1]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor

from rlx.algos.ddpg import DDPG, DDPGConfig
from rlx.algos.sac import member_batch
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.targets import clipped_double_q_target, td3_smoothed_target_action


@dataclass
class TD3Config(DDPGConfig):
    noise: Literal["ou", "gaussian"] = param("gaussian", help="exploration noise process")
    policy_delay: int = param(2, ge=1, help="critic updates per actor (and target) update")
    target_policy_noise: float = param(0.2, ge=0, help="σ of the target-policy smoothing noise (unit box)")
    target_noise_clip: float = param(0.5, ge=0, help="clip c of the smoothing noise")


class TD3(DDPG):
    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.noise_std",
                                   "algo.target_policy_noise", "algo.target_noise_clip")
    Config = TD3Config
    hp: TD3Config
    n_critics = 2

    def __init__(self, spec: EnvSpec, hp: TD3Config | Sequence[TD3Config], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, hp, net, device, seeds)
        self.target_noise = self.members.hyper(self.hps, "target_policy_noise").unsqueeze(-1)  # [K, 1, 1]
        self.target_clip = self.members.hyper(self.hps, "target_noise_clip").unsqueeze(-1)  # [K, 1, 1]
        self.last_actor_loss = torch.zeros(self.members.k, device=device)  # reported between delayed actor steps

    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        mask, batch = self._mask(), member_batch(batch)
        eps = self.random.normal_like(batch.obs.new_empty(self.members.k, batch.obs.shape[1], self.bounds.dim))
        actor = (self.updates + 1) % self.hp.policy_delay == 0  # the delayed actor (and target) step
        critic_loss, q_mean, actor_loss = self.step(batch.obs, batch.actions, batch.rewards, batch.next_obs,
                                                    batch.terminated, eps, actor, mask=mask)
        self.updates += 1
        if actor_loss is not None:
            self.last_actor_loss = actor_loss
        return self._metrics(critic_loss, q_mean, self.last_actor_loss)

    def target(self, rewards: Tensor, next_obs: Tensor, terminated: Tensor, eps: Tensor | None) -> Tensor:
        """y = r + γ(1−d) min(Q'_1, Q'_2)(s', ã'), ã' = clip(μ'(s') + clip(σε, −c, c), −1, 1); ε ``[K, B, A]``
        from each member's own stream."""
        assert eps is not None
        mu_next = self.actor_target(next_obs)  # [K, B, A]
        a_next = td3_smoothed_target_action(mu_next, self.target_noise, self.target_clip, -1.0, 1.0,
                                            noise=self.target_noise * eps)
        q_next = self.critic_target(next_obs, a_next)  # [K, 2, B]
        return clipped_double_q_target(rewards, q_next[:, 0], q_next[:, 1], terminated, self.gamma)

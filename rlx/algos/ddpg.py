"""Deep Deterministic Policy Gradient (notes: "Deep Deterministic Policy Gradients (DDPG)", Algorithm 1).

Four networks: actor μ(s), critic Q(s, a) and their target copies, updated by Polyak averaging with τ.
Exploration: a = μ(s) + N with Ornstein-Uhlenbeck (the paper's) or Gaussian noise, in the unit box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rlx.algos.off_policy_common import (
    ActionBounds,
    ExplorationNoise,
    OffPolicyCommon,
    Persistent,
    adam,
    encoders,
    frozen_copy,
    metrics,
    optimize,
)
from rlx.buffers.replay import Transitions
from rlx.config import param
from rlx.envs import EnvSpec
from rlx.networks.off_policy import DeterministicActor, QEnsemble
from rlx.objectives.targets import bellman_target, critic_regression_loss, ddpg_policy_loss, polyak_update_
from rlx.schema import NetworkConfig


@dataclass
class DDPGConfig(OffPolicyCommon):
    lr: float = param(1e-3, gt=0, help="Adam learning rate (actor and critic)")
    noise: Literal["ou", "gaussian"] = param("ou", help="exploration noise process")
    noise_std: float = param(0.1, ge=0, help="exploration noise σ, in unit-box action units")


class DDPG(Persistent):
    """Critic toward y = r + γ(1−d)Q'(s', μ'(s')); actor along ∇_a Q(s, a)|_{a=μ(s)} ∇_θ μ(s)."""

    loop = "off_policy"
    Config = DDPGConfig
    action_spaces = ("continuous",)
    persist = ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt", "noise", "updates")
    n_critics = 1

    def __init__(self, spec: EnvSpec, hp: DDPGConfig, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        self.bounds = ActionBounds(spec.action_space, device)
        enc = encoders(spec, net)
        self.actor = DeterministicActor(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, encoder=enc()).to(device)
        self.critic = QEnsemble(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, self.n_critics,
                                encoder=enc()).to(device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.actor_opt, self.critic_opt = adam(self.actor.parameters(), hp.lr), adam(self.critic.parameters(), hp.lr)
        self.noise = ExplorationNoise(hp.noise, hp.noise_std, self.bounds.dim)
        self.updates = 0

    # -- acting ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        """a = clip(μ(s) + N, −1, 1), rescaled to the env's Box."""
        noise = torch.from_numpy(self.noise.sample(obs.shape[0])).to(obs.device)
        return self.bounds.to_env((self.actor(obs) + noise).clamp(-1.0, 1.0))

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.bounds.to_env(self.actor(obs))

    def episodes_ended(self, done: np.ndarray) -> None:
        self.noise.reset(done)  # the notes' "initialize a random process N" at each episode start

    # -- learning -------------------------------------------------------------------------------
    def update(self, batch: Transitions, progress: float) -> dict[str, float]:
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, self.actor_target(batch.next_obs))[0]
            y = bellman_target(batch.rewards, next_q, batch.terminated, self.hp.gamma)
        critic_loss, q = self.critic_step(batch, y)
        return metrics(critic_loss=critic_loss, q_mean=q.mean(), actor_loss=self.actor_step(batch.obs))

    def critic_step(self, batch: Transitions, y: Tensor) -> tuple[Tensor, Tensor]:
        """Regress every critic on y; returns (loss, Q(s, a)) detached."""
        q = self.critic(batch.obs, self.bounds.to_unit(batch.actions))
        loss = critic_regression_loss(q, y)
        optimize(self.critic_opt, loss)
        self.updates += 1
        return loss.detach(), q.detach()

    def actor_step(self, obs: Tensor) -> Tensor:
        """Deterministic policy gradient through the first critic (its weights held fixed), then move
        both target networks toward the online ones."""
        loss = ddpg_policy_loss(self.critic(obs, self.actor(obs), members=1, detach_params=True)[0])
        optimize(self.actor_opt, loss)
        polyak_update_(self.critic_target.parameters(), self.critic.parameters(), self.hp.tau)
        polyak_update_(self.actor_target.parameters(), self.actor.parameters(), self.hp.tau)
        return loss.detach()

"""Soft Actor-Critic for discrete actions (Christodoulou 2019; notes: "Discrete Action Generation").

The critics output Q(s, ·) for every action and the policy is categorical, so every expectation over
actions is an exact sum (no sampling, no reparameterization):
  V(s') = Σ_a π(a|s')(min_i Q'_i(s', a) − α log π(a|s')),  y = r + γ(1−d)V(s')
  J_π = Σ_a π(a|s)(α log π(a|s) − min_i Q_i(s, a))
  J_α = −log α · (Σ_a π(a|s) log π(a|s) + H̄),  H̄ = target_entropy_scale · log|A|
The actor uses the critics' values from before this step's critic update (computed once, detached).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import gymnasium as gym
import torch
from torch import Tensor

from rlx.algos.common import (
    OFF_POLICY_ADAM,
    EntropyCommon,
    Persistent,
    Temperature,
    encoders,
    frozen_copy,
    gradient_step,
    make_optimizer,
    metrics,
)
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.networks.mlp import mlp
from rlx.networks.off_policy import CategoricalActor, DiscreteQEnsemble
from rlx.objectives.distributions import categorical_probs_log_probs
from rlx.objectives.targets import (
    bellman_target,
    critic_regression_loss,
    discrete_sac_policy_loss,
    discrete_sac_temperature_loss,
    discrete_soft_value,
    polyak_update_,
)


@dataclass
class SACDiscreteConfig(EntropyCommon):
    target_entropy_scale: float = param(0.98, gt=0, le=1, help="target entropy H̄ = scale · log|A| (α auto)")


class SACDiscrete(Persistent):
    loop = "off_policy"
    Config = SACDiscreteConfig
    action_spaces = ("discrete",)
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "temperature", "updates")

    def __init__(self, spec: EnvSpec, hp: SACDiscreteConfig, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        n_actions = int(cast(gym.spaces.Discrete, spec.action_space).n)  # discrete only: run.check_action_space
        enc = encoders(spec, net)
        actor_encoder = enc()  # flat vectors: none, and the actor stays a bare MLP (checkpoint keys unchanged)
        self.actor = (mlp(enc.features, n_actions, net.hidden_sizes, net.activation, orthogonal_init=False)
                      if actor_encoder is None else
                      CategoricalActor(enc.features, n_actions, net.hidden_sizes, net.activation, actor_encoder)).to(device)
        self.critic = DiscreteQEnsemble(enc.features, n_actions, net.hidden_sizes, net.activation, n=2,
                                        encoder=enc()).to(device)
        self.critic_target = frozen_copy(self.critic)
        self.actor_opt = make_optimizer(self.actor.parameters(), hp.lr, **OFF_POLICY_ADAM)
        self.critic_opt = make_optimizer(self.critic.parameters(), hp.lr, **OFF_POLICY_ADAM)
        self.temperature = Temperature(hp.alpha, hp.target_entropy_scale * math.log(n_actions), hp.lr, device)
        self.updates = 0

    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        return torch.multinomial(torch.softmax(self.actor(obs), dim=-1), 1).squeeze(-1)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.actor(obs).argmax(dim=-1) if deterministic else self.explore(obs)

    def update(self, batch: Transitions, progress: float) -> dict[str, float]:
        hp = self.hp
        probs, log_probs = categorical_probs_log_probs(self.actor(batch.obs))
        alpha = self.temperature.value()
        alpha_loss = self.temperature.update(discrete_sac_temperature_loss, probs, log_probs)

        with torch.no_grad():
            next_probs, next_log_probs = categorical_probs_log_probs(self.actor(batch.next_obs))
            q_next = self.critic_target(batch.next_obs).min(dim=0).values
            y = bellman_target(batch.rewards, discrete_soft_value(q_next, next_probs, next_log_probs, alpha),
                               batch.terminated, hp.gamma)
        q_all = self.critic(batch.obs)  # [2, B, A]
        q = q_all.gather(-1, batch.actions.expand(q_all.shape[0], -1).unsqueeze(-1)).squeeze(-1)
        critic_loss = critic_regression_loss(q, y)
        gradient_step(self.critic_opt, critic_loss)

        actor_loss = discrete_sac_policy_loss(q_all.detach().min(dim=0).values, probs, log_probs, alpha)
        gradient_step(self.actor_opt, actor_loss)

        polyak_update_(self.critic_target.parameters(), self.critic.parameters(), hp.tau)
        self.updates += 1
        entropy = -(probs * log_probs).sum(-1).mean()
        return metrics(critic_loss=critic_loss, actor_loss=actor_loss, q_mean=q.mean(), alpha=alpha,
                       alpha_loss=alpha_loss, entropy=entropy)

"""Soft Actor-Critic with a separate soft value network (notes: "Soft Actor-Critic", Algorithm 1;
Haarnoja et al. 2018a, the original formulation).

Networks: V_ψ, its Polyak-averaged target V_ψ̄, twin Q_θ1, Q_θ2 (no Q targets), policy π_φ.
  J_V(ψ) = ½(V_ψ(s) − [min_i Q_θi(s, a) − α log π_φ(a|s)])²,  a ~ π_φ(·|s) (not the buffer action)
  J_Q(θ) = ½(Q_θ(s, a) − [r + γ(1−d) V_ψ̄(s')])²
  J_π(φ) = α log π_φ(f_φ(ε; s)|s) − min_i Q_θi(s, f_φ(ε; s))
All three gradients are taken at the same parameters (one backward through the summed losses, whose
parameter sets are disjoint), then ψ̄ ← τψ + (1−τ)ψ. α is fixed or learned as in sac.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlx.algos.common import OFF_POLICY_ADAM, EntropyCommon, TanhGaussianAgent, Temperature, frozen_copy, make_optimizer, metrics
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.networks.heads import ValueNet
from rlx.networks.off_policy import QEnsemble
from rlx.objectives.targets import (
    bellman_target,
    critic_regression_loss,
    polyak_update_,
    sac_policy_loss,
    sac_temperature_loss,
    soft_value_target,
)


@dataclass
class SACVConfig(EntropyCommon):
    """SAC's hyperparameters; τ moves the target value network."""


class SACV(TanhGaussianAgent):
    loop = "off_policy"
    Config = SACVConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "value", "value_target", "actor_opt", "critic_opt", "value_opt", "temperature", "updates")

    def __init__(self, spec: EnvSpec, hp: SACVConfig, net: NetworkConfig, device: torch.device):
        super().__init__(spec, hp, net, device)
        enc = self.encoders
        self.critic = QEnsemble(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, n=2, encoder=enc()).to(device)
        self.value = ValueNet(enc.features, net.hidden_sizes, net.activation, encoder=enc()).to(device)
        self.value_target = frozen_copy(self.value)
        self.critic_opt = make_optimizer(self.critic.parameters(), hp.lr, **OFF_POLICY_ADAM)
        self.value_opt = make_optimizer(self.value.parameters(), hp.lr, **OFF_POLICY_ADAM)
        self.temperature = Temperature(hp.alpha, -float(self.bounds.dim), hp.lr, device)

    def update(self, batch: Transitions, progress: float) -> dict[str, float]:
        hp = self.hp
        a_pi, logp_pi = self.actor.sample(batch.obs)
        alpha = self.temperature.value()
        alpha_loss = self.temperature.update(sac_temperature_loss, logp_pi)
        # min_i Q_i(s, a~π): the policy's objective, and (detached) the value network's target
        q_pi = self.critic(batch.obs, a_pi, detach_params=True).min(dim=0).values

        value_loss = critic_regression_loss(self.value(batch.obs), soft_value_target(q_pi.detach(), logp_pi.detach(), alpha))
        with torch.no_grad():
            y = bellman_target(batch.rewards, self.value_target(batch.next_obs), batch.terminated, hp.gamma)
        q = self.critic(batch.obs, self.bounds.to_unit(batch.actions))
        critic_loss = critic_regression_loss(q, y)
        actor_loss = sac_policy_loss(q_pi, logp_pi, alpha)

        optimizers = (self.value_opt, self.critic_opt, self.actor_opt)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        (value_loss + critic_loss + actor_loss).backward()
        for opt in optimizers:
            opt.step()
        polyak_update_(self.value_target.parameters(), self.value.parameters(), hp.tau)
        self.updates += 1
        return metrics(critic_loss=critic_loss, value_loss=value_loss, actor_loss=actor_loss, q_mean=q.mean(),
                       alpha=alpha, alpha_loss=alpha_loss, entropy=-logp_pi.mean())

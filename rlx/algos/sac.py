"""Soft Actor-Critic with twin Q and learned temperature (notes: "Soft Actor-Critic"; Haarnoja et al.
2018b, the formulation without a value network; see sac_v.py for the notes' original one with V_ψ)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlx.algos.off_policy_common import EntropyCommon, TanhGaussianAgent, Temperature, adam, frozen_copy, metrics, optimize
from rlx.buffers.replay import Transitions
from rlx.envs import EnvSpec
from rlx.networks.off_policy import QEnsemble
from rlx.objectives.targets import critic_regression_loss, polyak_update_, sac_policy_loss, sac_temperature_loss, soft_bellman_target
from rlx.schema import NetworkConfig


@dataclass
class SACConfig(EntropyCommon):
    """SB3's SAC defaults (lr 3e-4, buffer 1e6, 100 random steps, batch 256, τ 0.005, α auto)."""


class SAC(TanhGaussianAgent):
    """Reparameterized tanh-Gaussian actor, twin critics with Polyak-averaged targets, α fixed or learned
    toward the target entropy −dim(A). Update order as SB3: temperature, critics, actor, targets."""

    loop = "off_policy"
    Config = SACConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "temperature", "updates")

    def __init__(self, spec: EnvSpec, hp: SACConfig, net: NetworkConfig, device: torch.device):
        super().__init__(spec, hp, net, device)
        self.critic = QEnsemble(self.encoders.features, self.bounds.dim, net.hidden_sizes, net.activation, n=2,
                                encoder=self.encoders()).to(device)
        self.critic_target = frozen_copy(self.critic)
        self.critic_opt = adam(self.critic.parameters(), hp.lr)
        self.temperature = Temperature(hp.alpha, -float(self.bounds.dim), hp.lr, device)

    def update(self, batch: Transitions, progress: float) -> dict[str, float]:
        hp = self.hp
        actions = self.bounds.to_unit(batch.actions)
        a_pi, logp_pi = self.actor.sample(batch.obs)  # a = f_φ(ε; s), differentiable in φ
        alpha = self.temperature.value()  # this step's α: the value before the temperature update
        alpha_loss = self.temperature.update(sac_temperature_loss, logp_pi)

        # Critics: J_Q = ½(Q_i(s, a) − y)², y = r + γ(1−d)(min_i Q'_i(s', a') − α log π(a'|s')), a' ~ π(·|s')
        with torch.no_grad():
            a_next, logp_next = self.actor.sample(batch.next_obs)
            q_next = self.critic_target(batch.next_obs, a_next).min(dim=0).values
            y = soft_bellman_target(batch.rewards, q_next, logp_next, batch.terminated, hp.gamma, alpha)
        q = self.critic(batch.obs, actions)
        critic_loss = critic_regression_loss(q, y)
        optimize(self.critic_opt, critic_loss)

        # Actor: J_π = α log π(a|s) − min_i Q_i(s, a), a reparameterized; no gradient into the critics.
        q_pi = self.critic(batch.obs, a_pi, detach_params=True).min(dim=0).values
        actor_loss = sac_policy_loss(q_pi, logp_pi, alpha)
        optimize(self.actor_opt, actor_loss)

        polyak_update_(self.critic_target.parameters(), self.critic.parameters(), hp.tau)
        self.updates += 1
        return metrics(critic_loss=critic_loss, actor_loss=actor_loss, q_mean=q.mean(), alpha=alpha,
                       alpha_loss=alpha_loss, entropy=-logp_pi.mean())

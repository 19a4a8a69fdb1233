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
from typing import Sequence

import torch

from rlx.algos.common import EntropyCommon, TanhGaussianAgent, Temperature, frozen_copy
from rlx.algos.sac import member_batch, polyak_members_
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.objectives.targets import bellman_target, critic_regression_loss, sac_policy_loss, soft_value_target
from rlx.optim.stacked import MemberAdam


@dataclass
class SACVConfig(EntropyCommon):
    """SAC's hyperparameters; τ moves the target value network."""


class SACV(TanhGaussianAgent):
    """A population of K members (issue 22; a plain run is K=1, the same code), as
    :class:`rlx.algos.sac.SAC`: member k has its own actor, twin critics, value network and its target
    (``[K, ...]`` stacked), its own lr, γ, τ and α (fixed or learned), its own Adam moments, minibatch and
    random stream."""

    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.alpha")
    Config = SACVConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "value", "value_target", "actor_opt", "critic_opt", "value_opt", "temperature",
               "updates", "random")

    def __init__(self, spec: EnvSpec, hp: SACVConfig | Sequence[SACVConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        """``hp``: one config (a plain run) or one per member; ``seeds``: member k's networks are initialized
        after ``torch.manual_seed(seeds[k])``, exactly as its plain run's; None: from the current RNG state."""
        hps = [hp] if isinstance(hp, SACVConfig) else list(hp)
        super().__init__(spec, hps, net, device, seeds)
        self.actor, self.critic, value = self.build_networks(net, n_critics=2, value_net=True)
        assert value is not None
        self.value = value
        self.value_target = frozen_copy(self.value)
        lrs = [h.lr for h in hps]
        self.actor_opt = MemberAdam(self.actor.parameters(), lrs)
        self.critic_opt = MemberAdam(self.critic.parameters(), lrs)
        self.value_opt = MemberAdam(self.value.parameters(), lrs)
        self.temperature = Temperature([h.alpha for h in hps], -float(self.bounds.dim), lrs, device)
        self.gamma = self.members.hyper(hps, "gamma")  # [K, 1]
        self.members.hyper(hps, "lr"), self.members.hyper(hps, "tau")  # PBT's to change: hyperparameters_changed
        self.tau = [h.tau for h in hps]

    def hyperparameters_changed(self) -> None:
        m = self.members
        for opt in (self.actor_opt, self.critic_opt, self.value_opt, self.temperature.optimizer):
            opt.lr = m.hyper_list("lr", opt.lr)
        self.tau = m.hyper_list("tau", self.tau)

    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        """One update of every active member on its own minibatch (``[K, B, ...]``; a plain buffer's
        ``[B, ...]`` for K=1). Returns each member's metrics."""
        mask, batch = self.active_mask(), member_batch(batch)
        a_pi, logp_pi = self.actor.sample(batch.obs, self.random)  # [K, B, A], [K, B]
        alpha = self.temperature.value()  # [K, 1]: this step's α, the value before the temperature update
        alpha_loss = self.temperature.update(logp_pi, mask=mask)
        # min_i Q_i(s, a~π): the policy's objective, and (detached) the value network's target
        q_pi = self.critic(batch.obs, a_pi, detach_params=True).min(dim=1).values  # [K, B]

        v_target = soft_value_target(q_pi.detach(), logp_pi.detach(), alpha)
        value_loss = critic_regression_loss(self.value(batch.obs).unsqueeze(1), v_target)  # [K]
        with torch.no_grad():
            y = bellman_target(batch.rewards, self.value_target(batch.next_obs), batch.terminated, self.gamma)
        q = self.critic(batch.obs, self.bounds.to_unit(batch.actions))  # [K, 2, B]
        critic_loss = critic_regression_loss(q, y)
        actor_loss = sac_policy_loss(q_pi, logp_pi, alpha, dim=1)

        # every gradient at the same parameters: one backward through the summed (disjoint) losses, then the steps
        optimizers = (self.value_opt, self.critic_opt, self.actor_opt)
        for opt in optimizers:
            opt.zero_grad()
        (value_loss + critic_loss + actor_loss).sum().backward()
        for opt in optimizers:
            opt.step(mask)
        with torch.no_grad():
            polyak_members_(list(self.value_target.parameters()), list(self.value.parameters()), self.tau,
                            self.members.k, mask)
        self.updates += 1
        stats = torch.stack([critic_loss.detach(), value_loss.detach(), actor_loss.detach(), q.detach().mean(dim=(1, 2)),
                             alpha[:, 0], alpha_loss, -logp_pi.detach().mean(dim=1)], dim=1)
        keys = ("critic_loss", "value_loss", "actor_loss", "q_mean", "alpha", "alpha_loss", "entropy")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]

"""Soft Actor-Critic with twin Q and learned temperature (notes: "Soft Actor-Critic"; Haarnoja et al.
2018b, the formulation without a value network; see sac_v.py for the notes' original one with V_ψ)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from rlx.algos.common import EntropyCommon, TanhGaussianAgent, Temperature, frozen_copy
from rlx.algos.compiled import UpdateStep
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.objectives.targets import critic_regression_loss, sac_policy_loss, soft_bellman_target
from rlx.optim.stacked import MemberAdam, member_rows


@dataclass
class SACConfig(EntropyCommon):
    """SB3's SAC defaults (lr 3e-4, buffer 1e6, 100 random steps, batch 256, τ 0.005, α auto)."""


def member_batch(batch: Transitions) -> Transitions:
    """A plain buffer's ``[B, ...]`` minibatch as a population of one's ``[1, B, ...]`` (views); a
    population buffer's ``[K, B, ...]`` as is."""
    if batch.rewards.dim() == 2:
        return batch
    return Transitions(*(x.unsqueeze(0) for x in batch))


def polyak_members_(targets: Sequence[Tensor], onlines: Sequence[Tensor], tau: Sequence[float], members: int,
                    mask: Tensor | None = None) -> None:
    """θ'_k ← τ_k θ_k + (1−τ_k) θ'_k for each (active) member k of ``[K, ...]`` tensors: one fused
    ``_foreach_lerp_`` per distinct τ (K=1: exactly a plain run's ``polyak_update_``)."""
    live = range(members) if mask is None else torch.nonzero(mask).flatten().tolist()
    groups: dict[float, list[int]] = {}
    for k in live:
        groups.setdefault(tau[k], []).append(k)
    for t, ks in groups.items():
        torch._foreach_lerp_([r for k in ks for r in member_rows(targets, k, members)],
                             [r for k in ks for r in member_rows(onlines, k, members)], t)


class SAC(TanhGaussianAgent):
    """Reparameterized tanh-Gaussian actor, twin critics with Polyak-averaged targets, α fixed or learned
    toward the target entropy −dim(A). Update order as SB3: temperature, critics, actor, targets.

    A population of K members (issue 12; a plain run is K=1, the same code): member k has its own actor
    and twin critics (a member dimension through the networks, ``[K, B, ...]``), its own lr, γ, τ and α
    (fixed or learned: both kinds in one population), its own Adam moments and steps, and its own
    minibatch (``[K, B, ...]`` from its own envs' transitions); members never see each other. The loop's
    env batch is member-major: envs ``k*N .. (k+1)*N - 1`` are member k's."""

    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.alpha")
    Config = SACConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "temperature", "updates", "random")

    def __init__(self, spec: EnvSpec, hp: SACConfig | Sequence[SACConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        """``hp``: one config (a plain run) or one per member; ``seeds``: member k's networks are initialized
        after ``torch.manual_seed(seeds[k])``, exactly as its plain run's; None: from the current RNG state."""
        hps = [hp] if isinstance(hp, SACConfig) else list(hp)
        super().__init__(spec, hps, net, device, seeds)
        self.actor, self.critic, _ = self.build_networks(net, n_critics=2)
        self.critic_target = frozen_copy(self.critic)
        lrs = [h.lr for h in hps]
        self.actor_opt = MemberAdam(self.actor.parameters(), lrs)
        self.critic_opt = MemberAdam(self.critic.parameters(), lrs)
        self.temperature = Temperature([h.alpha for h in hps], -float(self.bounds.dim), lrs, device)
        self.gamma = self.members.hyper(hps, "gamma")  # [K, 1]
        self.members.hyper(hps, "lr"), self.members.hyper(hps, "tau")  # PBT's to change: hyperparameters_changed
        self.tau = [h.tau for h in hps]
        self.step = UpdateStep(self._step)  # compiled by rlx.algos.compiled.set_compile (compile=true)

    def hyperparameters_changed(self) -> None:
        m = self.members
        for opt in (self.actor_opt, self.critic_opt, self.temperature.optimizer):
            opt.lr = m.hyper_list("lr", opt.lr)
        self.tau = m.hyper_list("tau", self.tau)

    # -- learning ------------------------------------------------------------------------------------
    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        """One update of every active member on its own minibatch (``[K, B, ...]``; a plain buffer's
        ``[B, ...]`` for K=1). Returns each member's metrics."""
        mask, batch = self.active_mask(), member_batch(batch)
        # ε of a ~ π(·|s), then of a' ~ π(·|s'), from each member's own stream (before the step: compile=true
        # traces no Python RNG state)
        shape = batch.obs.new_empty(self.members.k, batch.obs.shape[1], self.bounds.dim)
        eps_pi, eps_next = self.random.normal_like(shape), self.random.normal_like(shape)
        stats = self.step(batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated, eps_pi, eps_next,
                          mask=mask)
        self.updates += 1
        keys = ("critic_loss", "actor_loss", "q_mean", "alpha", "alpha_loss", "entropy")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]

    def _step(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, terminated: Tensor,
              eps_pi: Tensor, eps_next: Tensor, mask: Tensor | None) -> Tensor:
        """The update's tensor part (``self.step``: eager, or compiled with ``compile``); the ``[K, 6]`` metrics."""
        m = self.members
        actions = self.bounds.to_unit(actions)
        a_pi, logp_pi = self.actor.sample(obs, noise=eps_pi)  # a = f_φ(ε; s), differentiable in φ; [K, B, A], [K, B]
        alpha = self.temperature.value()  # [K, 1]: this step's α, the value before the temperature update
        alpha_loss = self.temperature.update(logp_pi, mask=mask)

        # Critics: J_Q = ½(Q_i(s, a) − y)², y = r + γ(1−d)(min_i Q'_i(s', a') − α log π(a'|s')), a' ~ π(·|s')
        with torch.no_grad():
            a_next, logp_next = self.actor.sample(next_obs, noise=eps_next)
            q_next = self.critic_target(next_obs, a_next).min(dim=1).values
            y = soft_bellman_target(rewards, q_next, logp_next, terminated, self.gamma, alpha)
        q = self.critic(obs, actions)  # [K, 2, B]
        critic_loss = critic_regression_loss(q, y)  # [K]
        self.critic_opt.minimize(critic_loss, mask)

        # Actor: J_π = α log π(a|s) − min_i Q_i(s, a), a reparameterized; no gradient into the critics.
        q_pi = self.critic(obs, a_pi, detach_params=True).min(dim=1).values
        actor_loss = sac_policy_loss(q_pi, logp_pi, alpha, dim=1)
        self.actor_opt.minimize(actor_loss, mask)

        with torch.no_grad():
            polyak_members_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau, m.k, mask)
        return torch.stack([critic_loss.detach(), actor_loss.detach(), q.detach().mean(dim=(1, 2)), alpha[:, 0],
                            alpha_loss, -logp_pi.detach().mean(dim=1)], dim=1)

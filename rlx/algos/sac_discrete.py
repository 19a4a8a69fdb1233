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
from typing import Sequence, cast

import gymnasium as gym
import torch
from torch import Tensor

from rlx.algos.common import EntropyCommon, Persistent, Temperature, frozen_copy, member_encoders
from rlx.algos.sac import member_batch, polyak_members_
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.members import Members
from rlx.networks.off_policy import CategoricalActor, DiscreteQEnsemble, MemberCategoricalActor, MemberDiscreteQEnsemble
from rlx.objectives.distributions import categorical_probs_log_probs
from rlx.objectives.targets import (
    bellman_target,
    critic_regression_loss,
    discrete_sac_policy_loss,
    discrete_sac_temperature_loss,
    discrete_soft_value,
)
from rlx.optim.stacked import MemberAdam


@dataclass
class SACDiscreteConfig(EntropyCommon):
    target_entropy_scale: float = param(0.98, gt=0, le=1, help="target entropy H̄ = scale · log|A| (α auto)")


class SACDiscrete(Persistent):
    """A population of K members (issue 22; a plain run is K=1, the same code), as
    :class:`rlx.algos.sac.SAC`: member k has its own categorical actor, twin critics and their targets
    (``[K, ...]`` stacked), its own lr, γ, τ, α (fixed or learned) and target-entropy scale, its own Adam
    moments, minibatch and random stream (its actions: Gumbel-max draws). An observation encoder (a CNN
    on pixels) is a plain run's only (K=1)."""

    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.alpha", "algo.target_entropy_scale")
    Config = SACDiscreteConfig
    action_spaces = ("discrete",)
    observation_spaces = ("box", "dict")  # Dict: packed vectors, rlx.buffers.replay.DictReplayBuffer for image keys
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "temperature", "updates", "random")

    def __init__(self, spec: EnvSpec, hp: SACDiscreteConfig | Sequence[SACDiscreteConfig], net: NetworkConfig,
                 device: torch.device, seeds: Sequence[int] | None = None):
        """``hp``: one config (a plain run) or one per member; ``seeds``: member k's networks are initialized
        after ``torch.manual_seed(seeds[k])``, exactly as its plain run's; None: from the current RNG state."""
        hps = [hp] if isinstance(hp, SACDiscreteConfig) else list(hp)
        self.hp, self.hps, self.device = hps[0], hps, device
        self.members = m = Members(len(hps), device, spec.obs_shape, seeds)
        self.random = m.random  # actions, replay minibatches: member k's own stream
        self.n_actions = n_actions = int(cast(gym.spaces.Discrete, spec.action_space).n)  # run.check_action_space
        enc = member_encoders(spec, net, len(hps))
        actors, critics = [], []
        for i in range(len(hps)):  # each member built as its plain run builds it (same RNG draws, same order)
            if seeds is not None:
                torch.manual_seed(seeds[i])
            actors.append(CategoricalActor(enc.features, n_actions, net.hidden_sizes, net.activation, enc()))
            critics.append(DiscreteQEnsemble(enc.features, n_actions, net.hidden_sizes, net.activation, n=2, encoder=enc()))
        self.actor = MemberCategoricalActor(actors).to(device)
        self.critic = MemberDiscreteQEnsemble(critics).to(device)
        self.critic_target = frozen_copy(self.critic)
        lrs = [h.lr for h in hps]
        self.actor_opt = MemberAdam(self.actor.parameters(), lrs)
        self.critic_opt = MemberAdam(self.critic.parameters(), lrs)
        self.gamma = m.hyper(hps, "gamma")  # [K, 1]
        self.target_entropy_scale = m.hyper(hps, "target_entropy_scale")  # [K, 1]
        m.hyper(hps, "lr"), m.hyper(hps, "tau")  # PBT's to change: hyperparameters_changed
        self.tau = [h.tau for h in hps]
        self.temperature = Temperature([h.alpha for h in hps], self.target_entropy_scale * math.log(n_actions), lrs, device)
        self.updates = 0

    def hyperparameters_changed(self) -> None:
        m = self.members
        for opt in (self.actor_opt, self.critic_opt, self.temperature.optimizer):
            opt.lr = m.hyper_list("lr", opt.lr)
        self.tau = m.hyper_list("tau", self.tau)
        self.temperature.target_entropy = self.target_entropy_scale * math.log(self.n_actions)

    # -- acting (the loop's env batch [K*N, *obs] <-> the members' [K, N, *obs]) ---------------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        return self.members.join(self.actor.sample(self.members.split(obs), self.random), obs)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        x = self.members.split(obs)
        return self.members.join(self.actor.mode(x) if deterministic else self._sample(x), obs)

    @torch.inference_mode()
    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Member k's action for ``obs`` ``[B, *obs]`` (its evaluation): every member acts on it, row k is kept."""
        x = obs.expand(self.members.k, *obs.shape)
        return (self.actor.mode(x) if deterministic else self._sample(x))[k]

    def _sample(self, x: Tensor) -> Tensor:
        """a ~ π(·|s) from torch's RNG (a stochastic evaluation: the members' streams are their training's)."""
        probs = torch.softmax(self.actor(x), dim=-1)
        return torch.multinomial(probs.flatten(0, -2), 1).reshape(probs.shape[:-1])

    # -- learning ------------------------------------------------------------------------------------
    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        """One update of every active member on its own minibatch (``[K, B, ...]``; a plain buffer's
        ``[B, ...]`` for K=1). Returns each member's metrics."""
        m = self.members
        mask = None if bool(m.active.all()) else m.active
        batch = member_batch(batch)
        probs, log_probs = categorical_probs_log_probs(self.actor(batch.obs))  # [K, B, A]
        alpha = self.temperature.value()  # [K, 1]: this step's α, the value before the temperature update
        alpha_loss = self.temperature.update(probs, log_probs, mask=mask, loss_fn=discrete_sac_temperature_loss)

        with torch.no_grad():
            next_probs, next_log_probs = categorical_probs_log_probs(self.actor(batch.next_obs))
            q_next = self.critic_target(batch.next_obs).min(dim=1).values  # [K, B, A]
            v_next = discrete_soft_value(q_next, next_probs, next_log_probs, alpha.unsqueeze(-1))  # [K, B]
            y = bellman_target(batch.rewards, v_next, batch.terminated, self.gamma)
        q_all = self.critic(batch.obs)  # [K, 2, B, A]
        actions = batch.actions.long().unsqueeze(1).expand(-1, q_all.shape[1], -1).unsqueeze(-1)  # [K, 2, B, 1]
        q = q_all.gather(-1, actions).squeeze(-1)  # [K, 2, B]
        critic_loss = critic_regression_loss(q, y)  # [K]
        self.critic_opt.minimize(critic_loss, mask)

        # the critics' values from before this step's critic update (computed once above, detached)
        actor_loss = discrete_sac_policy_loss(q_all.detach().min(dim=1).values, probs, log_probs, alpha.unsqueeze(-1), dim=1)
        self.actor_opt.minimize(actor_loss, mask)

        with torch.no_grad():
            polyak_members_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau, m.k, mask)
        self.updates += 1
        entropy = -(probs.detach() * log_probs.detach()).sum(-1).mean(dim=1)
        stats = torch.stack([critic_loss.detach(), actor_loss.detach(), q.detach().mean(dim=(1, 2)), alpha[:, 0],
                             alpha_loss, entropy], dim=1)
        keys = ("critic_loss", "actor_loss", "q_mean", "alpha", "alpha_loss", "entropy")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]

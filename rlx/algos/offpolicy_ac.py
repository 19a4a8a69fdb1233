"""Off-policy actor-critic (notes: "Off-Policy Actor-Critic Algorithm").

1. act a ~ π_θ(·|s), store (s, a, r, s') in the replay buffer R;
2. sample a batch {s_i, a_i, r_i, s'_i} from R;
3. fit Q̂^π(s_i, a_i) toward r_i + γ(1−d_i) Q̂'(s'_i, a'_i), a'_i ~ π_θ(·|s'_i) (Q of the current
   policy; Q̂' a Polyak-averaged copy, as in DDPG, to keep the regression target from chasing itself);
4. ∇_θ J ≈ (1/N) Σ_i ∇_θ log π_θ(a^π_i|s_i) Q̂^π(s_i, a^π_i), a^π_i freshly sampled from π_θ — a
   score-function gradient (no reparameterization, no gradient through Q̂).

Documented additions, each switchable back to the notes' estimator:
- ``action_samples`` K ≥ 2 (default 4): K actions per state, each weighted by Q̂(s, a_k) minus the mean
  Q̂ of the other K−1 (a leave-one-out baseline). Unbiased; it removes Q̂'s large state-dependent
  offset, which otherwise dominates the variance. K=1 weights by Q̂ itself, as in the notes.
- ``normalize_weights`` (default true): the weights are divided by their batch standard deviation, so
  the step size does not depend on the reward scale (the direction of the gradient is unchanged).
- ``ent_coef`` β (default 0.01): + β·H(π) with H the entropy of the pre-tanh Gaussian (as the notes do for
  SAC). Without it the score-function gradient of E[Q̂] shrinks σ toward 0 (measured: log σ ≈ −11 after
  2k updates on Pendulum) and exploration stops; β=0 is the notes' objective.
Policy: tanh-Gaussian rescaled to the env's Box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from rlx.algos.common import OffPolicyCommon, TanhGaussianAgent, frozen_copy
from rlx.algos.sac import member_batch, polyak_members_
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.distributions import gaussian_entropy, tanh_gaussian_log_prob
from rlx.objectives.targets import bellman_target, critic_regression_loss, leave_one_out_baseline, offpolicy_ac_policy_loss
from rlx.optim.stacked import MemberAdam


@dataclass
class OffPolicyACConfig(OffPolicyCommon):
    lr: float = param(1e-3, gt=0, help="Adam learning rate (actor and critic)")
    action_samples: int = param(4, ge=1, help="policy actions per state in the gradient (>=2: leave-one-out baseline)")
    normalize_weights: bool = param(True, help="divide the policy-gradient weights by their batch std")
    ent_coef: float = param(0.01, ge=0, help="entropy bonus β·H(π) (pre-tanh Gaussian entropy)")


class OffPolicyAC(TanhGaussianAgent):
    """A population of K members (issue 22; a plain run is K=1, the same code), as
    :class:`rlx.algos.sac.SAC`: member k has its own actor, critic and target critic (``[K, ...]``
    stacked), its own lr, γ, τ and entropy bonus β, its own Adam moments, minibatch and random stream (its
    policy actions). ``action_samples`` (the batch's shape) and ``normalize_weights`` (a switch) are
    shared: they split populations."""

    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.ent_coef")
    Config = OffPolicyACConfig
    hp: OffPolicyACConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "updates", "random")

    def __init__(self, spec: EnvSpec, hp: OffPolicyACConfig | Sequence[OffPolicyACConfig], net: NetworkConfig,
                 device: torch.device, seeds: Sequence[int] | None = None):
        """``hp``: one config (a plain run) or one per member; ``seeds``: member k's networks are initialized
        after ``torch.manual_seed(seeds[k])``, exactly as its plain run's; None: from the current RNG state."""
        hps = [hp] if isinstance(hp, OffPolicyACConfig) else list(hp)
        super().__init__(spec, hps, net, device, seeds)
        self.actor, self.critic, _ = self.build_networks(net, n_critics=1)
        self.critic_target = frozen_copy(self.critic)
        lrs = [h.lr for h in hps]
        self.actor_opt, self.critic_opt = MemberAdam(self.actor.parameters(), lrs), MemberAdam(self.critic.parameters(), lrs)
        m = self.members
        self.gamma = m.hyper(hps, "gamma")  # [K, 1]
        self.ent_coef = m.hyper(hps, "ent_coef")  # [K, 1]
        m.hyper(hps, "lr"), m.hyper(hps, "tau")  # PBT's to change: hyperparameters_changed
        self.tau = [h.tau for h in hps]

    def hyperparameters_changed(self) -> None:
        m = self.members
        self.actor_opt.lr = m.hyper_list("lr", self.actor_opt.lr)
        self.critic_opt.lr = m.hyper_list("lr", self.critic_opt.lr)
        self.tau = m.hyper_list("tau", self.tau)

    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        """One update of every active member on its own minibatch (``[K, B, ...]``; a plain buffer's
        ``[B, ...]`` for K=1). Returns each member's metrics."""
        mask, batch = self.active_mask(), member_batch(batch)
        # 3. fit Q̂^π on the buffer's (s, a); a' ~ π(·|s') from each member's own stream
        with torch.no_grad():
            a_next, _ = self.actor.sample(batch.next_obs, self.random)
            y = bellman_target(batch.rewards, self.critic_target(batch.next_obs, a_next)[:, 0], batch.terminated, self.gamma)
        q = self.critic(batch.obs, self.bounds.to_unit(batch.actions))  # [K, 1, B]
        critic_loss = critic_regression_loss(q, y)  # [K]
        self.critic_opt.minimize(critic_loss, mask)

        # 4. score-function policy gradient with S fresh actions a^π ~ π_θ(·|s) per state
        n, (k, b) = self.hp.action_samples, batch.obs.shape[:2]
        mean, log_std = self.actor(batch.obs)  # [K, B, A]
        with torch.no_grad():
            eps = self.random.normal_like(mean.new_empty(k, n, *mean.shape[1:]))
            u = mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps  # pre-tanh samples [K, S, B, A]
            obs_n = batch.obs.unsqueeze(1).expand(k, n, *batch.obs.shape[1:]).reshape(k, n * b, *batch.obs.shape[2:])
            q_pi = self.critic(obs_n, torch.tanh(u).reshape(k, n * b, -1))[:, 0].reshape(k, n, b)
            weights = q_pi - leave_one_out_baseline(q_pi, dim=1) if n > 1 else q_pi
            if self.hp.normalize_weights:
                weights = weights / (weights.flatten(1).std(dim=1).reshape(k, 1, 1) + 1e-8)
        log_prob = tanh_gaussian_log_prob(mean.unsqueeze(1), log_std.unsqueeze(1), u)  # gradient through μ, σ only
        entropy = gaussian_entropy(log_std).mean(dim=1)  # [K]
        actor_loss = offpolicy_ac_policy_loss(log_prob, weights, dim=1) - self.ent_coef[:, 0] * entropy
        self.actor_opt.minimize(actor_loss, mask)

        with torch.no_grad():
            polyak_members_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau, k, mask)
        self.updates += 1
        stats = torch.stack([critic_loss.detach(), actor_loss.detach(), q.detach().mean(dim=(1, 2)),
                             log_std.detach().mean(dim=(1, 2)), entropy.detach()], dim=1)
        keys = ("critic_loss", "actor_loss", "q_mean", "log_std", "entropy")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]

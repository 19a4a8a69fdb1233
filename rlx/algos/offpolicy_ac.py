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

import torch

from rlx.algos.common import OFF_POLICY_ADAM, OffPolicyCommon, TanhGaussianAgent, frozen_copy, gradient_step, make_optimizer, metrics
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.networks.off_policy import QEnsemble
from rlx.objectives.distributions import gaussian_entropy, tanh_gaussian_log_prob
from rlx.objectives.targets import (
    bellman_target,
    critic_regression_loss,
    leave_one_out_baseline,
    offpolicy_ac_policy_loss,
    polyak_update_,
)


@dataclass
class OffPolicyACConfig(OffPolicyCommon):
    lr: float = param(1e-3, gt=0, help="Adam learning rate (actor and critic)")
    action_samples: int = param(4, ge=1, help="policy actions per state in the gradient (>=2: leave-one-out baseline)")
    normalize_weights: bool = param(True, help="divide the policy-gradient weights by their batch std")
    ent_coef: float = param(0.01, ge=0, help="entropy bonus β·H(π) (pre-tanh Gaussian entropy)")


class OffPolicyAC(TanhGaussianAgent):
    loop = "off_policy"
    Config = OffPolicyACConfig
    hp: OffPolicyACConfig
    action_spaces = ("continuous",)
    persist = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "updates")

    def __init__(self, spec: EnvSpec, hp: OffPolicyACConfig, net: NetworkConfig, device: torch.device):
        super().__init__(spec, hp, net, device)
        self.critic = QEnsemble(self.encoders.features, self.bounds.dim, net.hidden_sizes, net.activation, n=1,
                                encoder=self.encoders()).to(device)
        self.critic_target = frozen_copy(self.critic)
        self.critic_opt = make_optimizer(self.critic.parameters(), hp.lr, **OFF_POLICY_ADAM)

    def update(self, batch: Transitions, progress: float) -> dict[str, float]:
        hp = self.hp
        # 3. fit Q̂^π on the buffer's (s, a)
        with torch.no_grad():
            a_next, _ = self.actor.sample(batch.next_obs)
            y = bellman_target(batch.rewards, self.critic_target(batch.next_obs, a_next)[0], batch.terminated, hp.gamma)
        q = self.critic(batch.obs, self.bounds.to_unit(batch.actions))[0]
        critic_loss = critic_regression_loss(q, y)
        gradient_step(self.critic_opt, critic_loss)

        # 4. score-function policy gradient with K fresh actions a^π ~ π_θ(·|s) per state
        k, b = hp.action_samples, batch.obs.shape[0]
        mean, log_std = self.actor(batch.obs)
        with torch.no_grad():
            u = mean + log_std.exp() * torch.randn((k, *mean.shape), device=mean.device)  # pre-tanh samples [K, B, A]
            obs_k = batch.obs.expand(k, *batch.obs.shape).reshape(k * b, *batch.obs.shape[1:])
            q_pi = self.critic(obs_k, torch.tanh(u).reshape(k * b, -1))[0].reshape(k, b)
            weights = q_pi - leave_one_out_baseline(q_pi) if k > 1 else q_pi
            weights = weights / (weights.std() + 1e-8) if hp.normalize_weights else weights
        log_prob = tanh_gaussian_log_prob(mean, log_std, u)  # gradient through μ, σ only (u is fixed)
        entropy = gaussian_entropy(log_std).mean()
        actor_loss = offpolicy_ac_policy_loss(log_prob, weights) - hp.ent_coef * entropy
        gradient_step(self.actor_opt, actor_loss)

        polyak_update_(self.critic_target.parameters(), self.critic.parameters(), hp.tau)
        self.updates += 1
        return metrics(critic_loss=critic_loss, actor_loss=actor_loss, q_mean=q.mean(),
                       log_std=log_std.mean(), entropy=entropy)

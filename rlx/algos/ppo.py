"""PPO-clip with GAE(lambda) (notes: "Proximal Policy Optimization", Algorithm 1 PPO-Clip)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from rlx.algos.common import PopulationActorCritic
from rlx.buffers.rollout import Rollout
from rlx.config import param
from rlx.envs import EnvSpec
from rlx.objectives.policy import approx_kl_from_ratio, clipped_surrogate, explained_variance, normalize, probability_ratio, value_loss
from rlx.objectives.returns import gae
from rlx.optim.stacked import StackedAdam
from rlx.schema import NetworkConfig


@dataclass
class PPOConfig:
    lr: float = param(3e-4, gt=0, help="Adam learning rate")
    gamma: float = param(0.99, ge=0, le=1, help="discount (0: only the immediate reward)")
    gae_lambda: float = param(0.95, ge=0, le=1, help="GAE lambda")
    clip_eps: float = param(0.2, gt=0, help="PPO clip epsilon")
    n_steps: int = param(2048, ge=1, help="steps per env per rollout")
    batch_size: int = param(64, ge=1, help="minibatch size")
    n_epochs: int = param(10, ge=1, help="passes over each rollout")
    ent_coef: float = param(0.0, ge=0, help="entropy bonus weight")
    vf_coef: float = param(0.5, ge=0, help="value loss weight")
    max_grad_norm: float = param(0.5, gt=0, help="gradient-norm clip")
    clip_vf: float | None = param(None, gt=0, help="value clipping range (null: off)")
    normalize_advantage: bool = param(True)
    anneal_lr: bool = param(False, help="linearly anneal lr to 0")
    anneal_clip: bool = param(False, help="linearly anneal clip_eps to 0")
    target_kl: float | None = param(None, gt=0, help="stop an update's epochs early past this KL")
    normalize_obs: bool = param(False, help="running observation normalization (stats saved in checkpoints)")
    log_std_init: float = param(0.0, help="initial log std of the Gaussian policy")


class PPO(PopulationActorCritic):
    """Clipped-surrogate policy optimization over epochs x minibatches of one on-policy rollout, for a
    population of K members (issue 12; a plain run is K=1, the same code).

    Member k has its own weights, its own hyperparameters (``[K, 1]`` tensors through the pure
    objectives: lr, clip_eps, gamma, lambda, ent/vf coefficients, max_grad_norm, annealing, target_kl),
    its own minibatch shuffles, advantage normalization, gradient clipping and Adam state: members never
    see each other. Acting, the member layout and persistence: :class:`PopulationActorCritic`."""

    loop = "on_policy"
    Config = PPOConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: PPOConfig | Sequence[PPOConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, [hp] if isinstance(hp, PPOConfig) else list(hp), net, device, seeds)
        hps, m = self.hps, self.members
        self.optimizer = StackedAdam(self.params, lr=[h.lr for h in hps], eps=1e-5)
        self.clip_eps = m.hyper(hps, "clip_eps")
        self.gae_lambda = m.hyper(hps, "gae_lambda")
        self.anneal_clip = m.hyper(hps, "anneal_clip")
        self.target_kl = m.hyper(hps, "target_kl", none=math.inf)

    # -- learning ------------------------------------------------------------------------------
    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        """One PPO update of every active member on a full ``[T, K*N]`` rollout; ``progress`` in [0, 1]
        drives the linear annealing. Returns each member's metrics."""
        hp, m = self.hp, self.members
        lr = self.anneal(progress)  # [K, 1]
        clip = torch.where(self.anneal_clip > 0, self.clip_eps * (1.0 - progress), self.clip_eps)
        per_member = m.per_member(rollout)  # [T, K, N, ...]
        advantages = gae(per_member.rewards, per_member.values, per_member.next_values, per_member.terminated,
                         per_member.done, self.gamma, self.gae_lambda)
        returns = advantages + per_member.values
        obs, actions, old_logp, old_values, advantages, returns = (
            m.member_major(x) for x in (per_member.obs, per_member.actions, per_member.log_probs, per_member.values,
                                        advantages, returns))  # [K, T*N, ...]
        entropy_grad = bool((self.ent_coef > 0).any())
        active = m.active.clone()  # target_kl stops members' epochs one by one
        # per-member sums over the minibatches each member trained on (an early-stopped member's later
        # minibatches do not count: its statistics equal those of its plain run, which stopped there)
        loss_sums = torch.zeros(m.k, 2, device=self.device)  # policy loss, value loss: mean over minibatches
        sample_sums = torch.zeros(m.k, 3, device=self.device)  # entropy, k3 KL, clipped: mean over samples
        minibatch_count = torch.zeros(m.k, 1, device=self.device)
        sample_count = torch.zeros(m.k, 1, device=self.device)
        for _epoch in range(hp.n_epochs):
            last_ratio = None
            for idx in m.minibatches(obs.shape[1], hp.batch_size):
                mb = [m.take(x, idx) for x in (obs, actions, old_logp, old_values, advantages, returns)]
                logp, entropy, values = self.model.evaluate_actions(mb[0], mb[1], entropy_grad=entropy_grad)
                adv = normalize(mb[4], dim=1) if hp.normalize_advantage else mb[4]
                ratio = probability_ratio(logp, mb[2])
                policy_loss = -clipped_surrogate(ratio, adv, clip).mean(1)  # [K]
                v_loss = value_loss(values, mb[5], mb[3], hp.clip_vf, dim=1)
                loss = policy_loss + self.vf_coef[:, 0] * v_loss
                if entropy_grad:
                    loss = loss - self.ent_coef[:, 0] * entropy.mean(1)
                self.gradient_step(loss, active)
                with torch.no_grad():
                    w = active.unsqueeze(1).float()
                    loss_sums += torch.stack([policy_loss, v_loss], 1) * w
                    k3 = (ratio - 1) - torch.log(ratio)
                    sample_sums += torch.stack([entropy.sum(1), k3.sum(1), ((ratio - 1.0).abs() > clip).float().sum(1)], 1) * w
                    minibatch_count += w
                    sample_count += ratio.shape[1] * w
                last_ratio = ratio.detach()
            if last_ratio is not None and math.isfinite(float(self.target_kl.min())):
                active &= approx_kl_from_ratio(last_ratio, dim=1) <= 1.5 * self.target_kl[:, 0]
                if not bool(active.any()):
                    break
        self.updates += 1
        means = torch.cat([loss_sums / minibatch_count.clamp(min=1), sample_sums / sample_count.clamp(min=1)], 1)
        stats = torch.cat([means, explained_variance(old_values, returns, dim=1).unsqueeze(1), lr, clip], 1)
        keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "lr", "clip_eps")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]


"""PPO-clip with GAE(lambda) (notes: "Proximal Policy Optimization", Algorithm 1 PPO-Clip)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, cast

import torch
from torch import Tensor

from rlx.algos.recurrent import RecurrentPopulationActorCritic, env_major, episode_starts
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.networks.dict_obs import obs_map
from rlx.objectives.policy import approx_kl_from_ratio, clipped_surrogate, explained_variance, normalize, probability_ratio, value_loss
from rlx.objectives.returns import gae
from rlx.optim.stacked import StackedAdam


@dataclass
class PPOConfig:
    lr: float = param(3e-4, gt=0, help="Adam learning rate")
    gamma: float = param(0.99, ge=0, le=1, help="discount (0: only the immediate reward)")
    gae_lambda: float = param(0.95, ge=0, le=1, help="GAE lambda")
    clip_eps: float = param(0.2, gt=0, help="PPO clip epsilon")
    n_steps: int = param(2048, ge=1, help="steps per env per rollout")
    batch_size: int = param(64, ge=1, help="minibatch size (samples; with network.recurrent: whole env sequences of "
                                          "n_steps, a multiple of n_steps)")
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


class PPO(RecurrentPopulationActorCritic):
    """Clipped-surrogate policy optimization over epochs x minibatches of one on-policy rollout, for a
    population of K members (issue 12; a plain run is K=1, the same code).

    Member k has its own weights, its own hyperparameters (``[K, 1]`` tensors through the pure
    objectives: lr, clip_eps, gamma, lambda, ent/vf coefficients, max_grad_norm, annealing, target_kl),
    its own minibatch shuffles, advantage normalization, gradient clipping and Adam state: members never
    see each other. Acting, the member layout and persistence: :class:`PopulationActorCritic`.

    With a recurrent core (``network.recurrent``) a minibatch is whole env sequences (CleanRL's
    ``ppo_atari_lstm.py`` choice): each env's full n_steps replayed from the state stored at the rollout's
    start, reset at its episode starts (:meth:`RecurrentPopulationActorCritic.replay`). Not SB3-contrib's
    padded per-episode sequences: the replay is the rollout's computation exactly (ratio 1 before the first
    step, no padding, no masks beyond the resets), at the cost of fewer minibatches per epoch whose samples
    are correlated (consecutive steps of one env); ``batch_size`` then counts env sequences x n_steps."""

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.gae_lambda", "algo.clip_eps", "algo.ent_coef", "algo.vf_coef",
                   "algo.max_grad_norm", "algo.anneal_lr", "algo.anneal_clip", "algo.target_kl", "algo.log_std_init")
    Config = PPOConfig
    action_spaces = ("discrete", "continuous", "multi_discrete", "multi_binary")
    observation_spaces = ("box", "dict")  # Dict observations (rlx.networks.dict_obs): the others take Box only

    def __init__(self, spec: EnvSpec, hp: PPOConfig | Sequence[PPOConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, [hp] if isinstance(hp, PPOConfig) else list(hp), net, device, seeds)
        hps, m = self.hps, self.members
        self.optimizer = StackedAdam(self.params, lr=[h.lr for h in hps], eps=1e-5)
        self.clip_eps = m.hyper(hps, "clip_eps")
        self.gae_lambda = m.hyper(hps, "gae_lambda")
        self.anneal_clip = m.hyper(hps, "anneal_clip")
        self.target_kl = m.hyper(hps, "target_kl", none=math.inf)
        if self.core is not None and (self.hp.batch_size % self.n_steps or self.hp.batch_size < self.n_steps):
            raise UserError(f"algo.batch_size={self.hp.batch_size} with network.recurrent={net.recurrent}: a minibatch is "
                            f"whole env sequences of algo.n_steps={self.n_steps}, so batch_size must be a multiple of it")

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
        # obs: a Tensor, or a Dict observation's per-key tensors (each reshaped alike)
        fields: tuple[Any, ...] = (per_member.obs, per_member.actions, per_member.log_probs, per_member.values, advantages, returns)
        if self.core is None:  # samples: [K, T*N, ...]
            samples, per_minibatch = [m.member_major(x) for x in fields], hp.batch_size
        else:  # env sequences: [K, N, T, ...], minibatches of whole ones
            samples = [env_major(x) for x in (*fields, episode_starts(per_member.done))]
            per_minibatch = hp.batch_size // self.n_steps
            start_state = self.stored_start_state(samples[1].shape[1])
        obs, actions, old_logp, old_values, advantages, returns = samples[:6]
        entropy_grad = bool((self.ent_coef > 0).any())
        active = m.active.clone()  # target_kl stops members' epochs one by one
        early_stop = math.isfinite(float(self.target_kl.min()))
        # per minibatch, detached: [K] losses, [K, B] entropies and ratios, which members trained on it (an
        # early-stopped member's later minibatches do not count: its statistics equal its plain run's)
        record: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]] = []
        for _epoch in range(hp.n_epochs):
            for idx in m.minibatches(actions.shape[1], per_minibatch, active if early_stop else None):
                mb = [m.take(x, idx) for x in samples]
                if self.core is None:
                    logp, entropy, values = self.model.evaluate_actions(mb[0], mb[1], entropy_grad=entropy_grad)
                else:
                    logp, entropy, values = self.replay(mb[0], mb[1], mb[6], m.take(start_state, idx), entropy_grad)
                    mb = [obs_map(lambda v: v.flatten(1, 2), x) for x in mb[:6]]  # [K, B*T, ...]: env-major, as replay returns
                adv = normalize(mb[4], dim=1) if hp.normalize_advantage else mb[4]
                ratio = probability_ratio(logp, mb[2])
                policy_loss = -clipped_surrogate(ratio, adv, clip).mean(1)  # [K]
                v_loss = value_loss(values, mb[5], mb[3], hp.clip_vf, dim=1)
                loss = policy_loss + self.vf_coef[:, 0] * v_loss
                if entropy_grad:
                    loss = loss - self.ent_coef[:, 0] * entropy.mean(1)
                self.gradient_step(loss, active)
                record.append((policy_loss.detach(), v_loss.detach(), entropy.detach(), ratio.detach(),
                               active.clone() if early_stop else None))
            if early_stop:
                active &= approx_kl_from_ratio(record[-1][3], dim=1) <= 1.5 * self.target_kl[:, 0]
                if not bool(active.any()):
                    break
        self.updates += 1
        self.rollout_learned()
        means = _update_statistics(record, clip)
        if self.core is not None:
            old_values, returns = old_values.flatten(1, 2), returns.flatten(1, 2)
        stats = torch.cat([means, explained_variance(old_values, returns, dim=1).unsqueeze(1), lr, clip], 1)
        keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "lr", "clip_eps")
        return [dict(zip(keys, row, strict=True)) for row in stats.tolist()]


def _update_statistics(record: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]], clip: Tensor) -> Tensor:
    """Per member ``[K, 5]``: policy and value loss (mean over minibatches), entropy, k3 KL and clip fraction
    (mean over samples), over the minibatches each member trained on (all of them without target_kl)."""
    losses = torch.stack([torch.stack([r[0], r[1]], 1) for r in record])  # [M, K, 2]
    entropy, ratio = torch.cat([r[2] for r in record], 1), torch.cat([r[3] for r in record], 1)  # [K, M*B]
    per_sample = torch.stack([entropy, (ratio - 1) - torch.log(ratio), ((ratio - 1.0).abs() > clip).float()], 2)
    if record[0][4] is None:
        return torch.cat([losses.mean(0), per_sample.mean(1)], 1)
    trained = torch.stack([cast(Tensor, r[4]) for r in record]).float()  # [M, K]
    loss_means = (losses * trained.unsqueeze(2)).sum(0) / trained.sum(0).clamp(min=1).unsqueeze(1)
    sample_w = torch.cat([cast(Tensor, r[4]).float().unsqueeze(1).expand(-1, r[3].shape[1]) for r in record], 1)  # [K, M*B]
    sample_means = (per_sample * sample_w.unsqueeze(2)).sum(1) / sample_w.sum(1, keepdim=True).clamp(min=1)
    return torch.cat([loss_means, sample_means], 1)

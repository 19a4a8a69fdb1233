"""PPO-clip with GAE(lambda) (notes: "Proximal Policy Optimization", Algorithm 1 PPO-Clip)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlx.algos.common import ActorCritic, ActorCriticAgent, make_optimizer, minibatches, set_lr
from rlx.buffers.rollout import Rollout
from rlx.config import param
from rlx.envs import EnvSpec
from rlx.networks.flat import gather_flat_grads
from rlx.objectives.policy import approx_kl_from_ratio, clipped_surrogate, explained_variance, normalize, probability_ratio, value_loss
from rlx.objectives.returns import gae
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


class PPO(ActorCriticAgent):
    """Clipped-surrogate policy optimization over epochs x minibatches of one on-policy rollout.

    Acting (explore/value/act) and persistence come from :class:`ActorCriticAgent`."""

    loop = "on_policy"
    Config = PPOConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: PPOConfig, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        self.model = ActorCritic(spec, net, hp.normalize_obs, hp.log_std_init).to(device)
        self.optimizer = make_optimizer(self.model.parameters(), hp.lr)
        self.n_steps = hp.n_steps
        self.updates = 0

    # -- learning ------------------------------------------------------------------------------
    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        """One PPO update on a full rollout; ``progress`` in [0, 1] drives the linear annealing."""
        hp = self.hp
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        clip = hp.clip_eps * (1.0 - progress) if hp.anneal_clip else hp.clip_eps
        set_lr(self.optimizer, lr)
        advantages = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done,
                         hp.gamma, hp.gae_lambda)
        returns = advantages + rollout.values
        obs, actions, old_logp, old_values = rollout.flat("obs", "actions", "log_probs", "values")
        advantages, returns = advantages.reshape(-1), returns.reshape(-1)

        losses: list[Tensor] = []  # per minibatch [policy loss, value loss]; statistics at the end
        ratios: list[Tensor] = []
        entropies: list[Tensor] = []
        params = self.optimizer.param_groups[0]["params"]
        for _epoch in range(hp.n_epochs):
            for idx in minibatches(obs.shape[0], hp.batch_size, obs.device):
                logp, entropy, values = self.model.evaluate_actions(obs[idx], actions[idx], entropy_grad=hp.ent_coef > 0)
                adv = normalize(advantages[idx]) if hp.normalize_advantage else advantages[idx]
                ratio = probability_ratio(logp, old_logp[idx])
                policy_loss = -clipped_surrogate(ratio, adv, clip).mean()
                v_loss = value_loss(values, returns[idx], old_values[idx], hp.clip_vf)
                loss = policy_loss + hp.vf_coef * v_loss
                if hp.ent_coef > 0:
                    loss = loss - hp.ent_coef * entropy.mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gather_flat_grads(self.optimizer)
                nn.utils.clip_grad_norm_(params, hp.max_grad_norm, foreach=True)
                self.optimizer.step()
                losses.append(torch.stack([policy_loss, v_loss]).detach())
                ratios.append(ratio.detach())
                entropies.append(entropy.detach())
            if hp.target_kl is not None and approx_kl_from_ratio(ratios[-1]).item() > 1.5 * hp.target_kl:
                break
        self.updates += 1
        ratio = torch.cat(ratios)  # statistics over every sample of every minibatch
        stats = torch.stack([*torch.stack(losses).mean(0), torch.cat(entropies).mean(), approx_kl_from_ratio(ratio),
                             ((ratio - 1.0).abs() > clip).float().mean(), explained_variance(old_values, returns)])
        keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance")
        return {**dict(zip(keys, stats.tolist(), strict=True)), "lr": lr, "clip_eps": clip}

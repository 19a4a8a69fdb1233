"""Batch actor-critic (notes: "Batch actor-critic algorithm", bootstrapping and baseline subtraction)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from rlx.algos.common import CompleteEpisodes, PolicyGradientConfig, PopulationPolicyGradient
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.policy import explained_variance, masked_mean, normalize
from rlx.objectives.returns import episode_returns, td_error


@dataclass
class BatchACConfig(PolicyGradientConfig):
    """The shared policy-gradient fields plus:"""

    critic_lr: float = param(5e-3, gt=0, help="critic learning rate (a critic that tracks the returns makes the TD advantage useful)")
    critic_steps: int = param(50, ge=1, help="full-batch gradient steps fitting V to the sampled returns per update")
    n_steps: int = param(256, ge=1, help="steps per env per rollout; an update uses the episodes that ended by then")
    normalize_advantage: bool = param(False, help="standardize the advantages in each batch")


class BatchAC(PopulationPolicyGradient):
    """Per batch of whole episodes:
    1. fit V(s) to the sampled returns G_t (``critic_steps`` steps on 1/2 (V(s_t) - G_t)^2),
    2. advantage A_t = r_t + gamma V(s_{t+1}) - V(s_t) with the fitted critic (V = 0 after a terminal
       state; V(final obs), from the rollout, after a time-limit truncation),
    3. one policy-gradient step on -mean(log pi(a_t|s_t) A_t) - ent_coef * H.

    Whole episodes as in REINFORCE: :class:`CompleteEpisodes` holds each env's unfinished episode
    back until it ends, so the Monte-Carlo targets of step 1 are never cut by the rollout end.
    A population of K members (issue 22; a plain run is K=1): each member fits its own critic on its own
    (padded) batch with its own lr / critic_lr / gamma / ent_coef / max_grad_norm
    (:class:`PopulationPolicyGradient`); a member none of whose episodes has ended yet skips the update.
    """

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.critic_lr", "algo.gamma", "algo.ent_coef", "algo.max_grad_norm",
                                    "algo.anneal_lr", "algo.log_std_init")
    Config = BatchACConfig
    persist = (*PopulationPolicyGradient.persist, "episodes")
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: BatchACConfig | Sequence[BatchACConfig], net: NetworkConfig,
                 device: torch.device, seeds: Sequence[int] | None = None):
        hps = [hp] if isinstance(hp, BatchACConfig) else list(hp)
        super().__init__(spec, hps, net, device, seeds, share_encoder=False)  # the critic is fitted on its own
        self.episodes = CompleteEpisodes(len(hps))
        self.updates = torch.zeros(len(hps), dtype=torch.long, device=device)  # per member: some skip an update

    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        hp, model, k = self.hp, self.model, self.members.k
        batch = self.episodes(rollout)
        if batch is None:  # no member has finished an episode yet
            return [{} for _ in range(k)]
        mask, terminated, done = batch.mask, batch.terminated, batch.done
        lr = self.anneal(progress)
        returns = episode_returns(batch.rewards.T, batch.next_values.T, terminated.T, done.T, self.gamma[:, 0]).T  # [K, L]
        updating = self.members.active & (batch.count > 0)
        x = batch.obs  # the rollout stores policy inputs: already normalized as the policy saw them
        v_loss = torch.zeros(k, device=x.device)
        for _ in range(hp.critic_steps):
            v_loss = 0.5 * masked_mean((model.critic(x) - returns) ** 2, mask)  # value_loss per member
            self.gradient_step(v_loss, updating)
        with torch.no_grad():
            values = model.critic(x)
            # V(s_{t+1}) is the next row of the batch within an episode; where one ended, the rollout's V(final obs)
            next_values = torch.where(done.bool(), batch.next_values, torch.cat([values[:, 1:], values[:, -1:]], 1))
            advantages = td_error(batch.rewards, values, next_values, terminated, self.gamma)
        weights = normalize(advantages, dim=1, mask=mask) if hp.normalize_advantage else advantages
        loss, stats = self.actor_critic_loss(x, batch.actions, weights, None, mask)
        norms = self.gradient_step(loss, updating)
        self.updates += updating.long()
        stats[:, 1] = v_loss.detach()  # the critic fit's last loss
        columns = [stats, norms.unsqueeze(1), explained_variance(values, returns, dim=1, mask=mask).unsqueeze(1),
                   batch.count.unsqueeze(1).float(), lr]
        keys = ("policy_loss", "value_loss", "entropy", "grad_norm", "explained_variance", "batch_steps", "lr")
        rows = torch.cat(columns, 1).tolist()
        return [dict(zip(keys, row, strict=True)) if n else {} for row, n in zip(rows, batch.count.tolist(), strict=True)]

"""REINFORCE: Monte-Carlo policy gradient with reward-to-go (notes: "Reward to Go", "Advantage Value")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from rlx.algos.common import CompleteEpisodes, PolicyGradientConfig, PopulationPolicyGradient
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.policy import normalize
from rlx.objectives.returns import episode_returns


@dataclass
class ReinforceConfig(PolicyGradientConfig):
    """The shared policy-gradient fields (``critic_lr`` is the baseline's) plus:"""

    n_steps: int = param(256, ge=1, help="steps per env per rollout; an update uses the episodes that ended by then")
    baseline: bool = param(True, help="subtract a learned V(s) baseline from the reward-to-go")
    normalize_advantage: bool = param(False, help="standardize the weights G_t (- V(s_t)) in each batch")


class Reinforce(PopulationPolicyGradient):
    """grad J ~ 1/N sum_t grad log pi(a_t|s_t) (G_t - b(s_t)) over a batch of whole episodes, with the
    reward-to-go G_t = sum_{t'>=t} gamma^(t'-t) r_t' and b = V(s_t) (``baseline=true``, V regressed on
    G_t in the same step) or b = 0.

    Whole episodes: the shared on-policy loop collects ``n_steps`` per env; :class:`CompleteEpisodes`
    holds back each env's unfinished episode until it ends, so every update's batch is complete
    episodes only (G_t is never cut by the rollout end and nothing is discarded; the held-back
    steps of an episode that straddles an update were sampled by the previous policy). A time-limit
    truncation bootstraps gamma V(final obs) with a baseline; without one, G_t is the reward-to-go of
    the observed segment (the usual treatment of CartPole's 500-step limit).

    A population of K members (issue 22; a plain run is K=1): member k's own episodes (a padded batch),
    weights, lr / critic_lr / gamma / ent_coef / max_grad_norm and optimizer state
    (:class:`PopulationPolicyGradient`). A member none of whose episodes has ended yet skips the update.
    """

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.critic_lr", "algo.gamma", "algo.ent_coef", "algo.max_grad_norm",
                                    "algo.anneal_lr", "algo.log_std_init")
    Config = ReinforceConfig
    persist = (*PopulationPolicyGradient.persist, "episodes")
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: ReinforceConfig | Sequence[ReinforceConfig], net: NetworkConfig,
                 device: torch.device, seeds: Sequence[int] | None = None):
        hps = [hp] if isinstance(hp, ReinforceConfig) else list(hp)
        super().__init__(spec, hps, net, device, seeds, critic=hps[0].baseline)
        self.episodes = CompleteEpisodes(len(hps))
        self.updates = torch.zeros(len(hps), dtype=torch.long, device=device)  # per member: some skip an update

    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        hp, k = self.hp, self.members.k
        batch = self.episodes(rollout)
        if batch is None:  # no member has finished an episode yet
            return [{} for _ in range(k)]
        lr = self.anneal(progress)
        mask = batch.mask
        # time-major through the reward-to-go recursion, each member its own discount
        returns = episode_returns(batch.rewards.T, batch.next_values.T, batch.terminated.T, batch.done.T,
                                  self.gamma[:, 0]).T  # [K, L]
        if hp.baseline:
            with torch.no_grad():  # b(s) = V(s) of the critic before this step, from the inputs the policy saw
                weights = returns - self.model.critic(self.model.features(batch.obs))
        else:
            weights = returns
        if hp.normalize_advantage:
            weights = normalize(weights, dim=1, mask=mask)
        loss, stats = self.actor_critic_loss(batch.obs, batch.actions, weights, returns if hp.baseline else None, mask)
        updating = self.members.active & (batch.count > 0)
        norms = self.gradient_step(loss, updating)
        self.updates += updating.long()
        rows = torch.cat([stats, norms.unsqueeze(1), batch.count.unsqueeze(1).float(), lr], 1).tolist()
        keys = ("policy_loss", "value_loss", "entropy", "grad_norm", "batch_steps", "lr")
        return [dict(zip(keys, row, strict=True)) if n else {} for row, n in zip(rows, batch.count.tolist(), strict=True)]

"""REINFORCE: Monte-Carlo policy gradient with reward-to-go (notes: "Reward to Go", "Advantage Value")."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlx.algos.common import STEP_KEYS, ActorCriticAgent, CompleteEpisodes, PolicyGradientConfig, actor_critic_step
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


class Reinforce(ActorCriticAgent):
    """grad J ~ 1/N sum_t grad log pi(a_t|s_t) (G_t - b(s_t)) over a batch of whole episodes, with the
    reward-to-go G_t = sum_{t'>=t} gamma^(t'-t) r_t' and b = V(s_t) (``baseline=true``, V regressed on
    G_t in the same step) or b = 0.

    Whole episodes: the shared on-policy loop collects ``n_steps`` per env; :class:`CompleteEpisodes`
    holds back each env's unfinished episode until it ends, so every update's batch is complete
    episodes only (G_t is never cut by the rollout end and nothing is discarded; the held-back
    steps of an episode that straddles an update were sampled by the previous policy). A time-limit
    truncation bootstraps gamma V(final obs) with a baseline; without one, G_t is the reward-to-go of
    the observed segment (the usual treatment of CartPole's 500-step limit).
    """

    loop = "on_policy"
    Config = ReinforceConfig
    episodes: CompleteEpisodes  # always set: update() batches whole episodes
    persist = (*ActorCriticAgent.persist, "episodes")
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: ReinforceConfig, net: NetworkConfig, device: torch.device):
        super().__init__(spec, hp, net, device, critic=hp.baseline)
        self.n_steps = hp.n_steps
        self.episodes = CompleteEpisodes()

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        hp = self.hp
        batch = self.episodes(rollout)
        if batch is None:  # no env finished an episode yet
            return {}
        lr = self.anneal(progress)
        returns = episode_returns(batch["rewards"], batch["next_values"], batch["terminated"], batch["done"], hp.gamma)
        weights = returns - self.model.value(batch["obs"]) if hp.baseline else returns
        if hp.normalize_advantage:
            weights = normalize(weights)
        stats = actor_critic_step(self.model, self.optimizer, batch["obs"], batch["actions"], weights,
                                  returns if hp.baseline else None, 1.0, hp.ent_coef, hp.max_grad_norm)
        self.updates += 1
        return {**dict(zip(STEP_KEYS, stats.tolist(), strict=True)), "batch_steps": float(returns.numel()), "lr": lr}

"""Batch actor-critic (notes: "Batch actor-critic algorithm", bootstrapping and baseline subtraction)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlx.algos.common import STEP_KEYS, ActorCriticAgent, CompleteEpisodes, PolicyGradientConfig, actor_critic_step, gradient_step
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.policy import explained_variance, normalize, value_loss
from rlx.objectives.returns import episode_returns, td_error


@dataclass
class BatchACConfig(PolicyGradientConfig):
    """The shared policy-gradient fields plus:"""

    critic_lr: float = param(5e-3, gt=0, help="critic learning rate (a critic that tracks the returns makes the TD advantage useful)")
    critic_steps: int = param(50, ge=1, help="full-batch gradient steps fitting V to the sampled returns per update")
    n_steps: int = param(256, ge=1, help="steps per env per rollout; an update uses the episodes that ended by then")
    normalize_advantage: bool = param(False, help="standardize the advantages in each batch")


class BatchAC(ActorCriticAgent):
    """Per batch of whole episodes:
    1. fit V(s) to the sampled returns G_t (``critic_steps`` steps on 1/2 (V(s_t) - G_t)^2),
    2. advantage A_t = r_t + gamma V(s_{t+1}) - V(s_t) with the fitted critic (V = 0 after a terminal
       state; V(final obs), from the rollout, after a time-limit truncation),
    3. one policy-gradient step on -mean(log pi(a_t|s_t) A_t) - ent_coef * H.

    Whole episodes as in REINFORCE: :class:`CompleteEpisodes` holds each env's unfinished episode
    back until it ends, so the Monte-Carlo targets of step 1 are never cut by the rollout end.
    """

    loop = "on_policy"
    Config = BatchACConfig
    episodes: CompleteEpisodes  # always set: update() batches whole episodes
    persist = (*ActorCriticAgent.persist, "episodes")
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: BatchACConfig, net: NetworkConfig, device: torch.device):
        super().__init__(spec, hp, net, device, share_encoder=False)  # the critic is fitted on its own
        self.n_steps = hp.n_steps
        self.episodes = CompleteEpisodes()

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        hp, model = self.hp, self.model
        batch = self.episodes(rollout)
        if batch is None:  # no env finished an episode yet
            return {}
        obs, rewards, terminated, done = batch["obs"], batch["rewards"], batch["terminated"], batch["done"]
        lr = self.anneal(progress)
        returns = episode_returns(rewards, batch["next_values"], terminated, done, hp.gamma)
        x = obs  # the rollout stores policy inputs: already normalized as the policy saw them
        for _ in range(hp.critic_steps):
            v_loss = value_loss(model.critic(x), returns)
            gradient_step(self.optimizer, v_loss, hp.max_grad_norm)
        with torch.no_grad():
            values = model.critic(x)
            # V(s_{t+1}) is the next row of the batch within an episode; where one ended, the rollout's V(final obs)
            next_values = torch.where(done.bool(), batch["next_values"], torch.cat([values[1:], values[-1:]]))
            advantages = td_error(rewards, values, next_values, terminated, hp.gamma)
        weights = normalize(advantages) if hp.normalize_advantage else advantages
        stats = actor_critic_step(model, self.optimizer, obs, batch["actions"], weights, None, 0.0, hp.ent_coef, hp.max_grad_norm)
        self.updates += 1
        metrics = dict(zip(STEP_KEYS, stats.tolist(), strict=True))
        metrics.update(value_loss=v_loss.item(), explained_variance=explained_variance(values, returns).item(),
                       batch_steps=float(returns.numel()), lr=lr)
        return metrics

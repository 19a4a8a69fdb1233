"""Online actor-critic (notes: "Online actor-critic algorithm"): one env step, then one update."""
from __future__ import annotations

from dataclasses import dataclass

from rlx.algos.common import ActorCriticAgent, PolicyGradientConfig, advantage_actor_critic_update
from rlx.buffers.rollout import Rollout
from rlx.config.typed import param


@dataclass
class OnlineACConfig(PolicyGradientConfig):
    """The shared policy-gradient fields, with defaults for one-transition updates:"""

    max_grad_norm: float = param(10.0, gt=0, help="gradient-norm clip (actor and critic together)")
    normalize_obs: bool = param(True, help="running observation normalization: standardized inputs make one-sample updates stable")


class OnlineAC(ActorCriticAgent):
    """After every env step (s, a, r, s'): delta = r + gamma V(s') - V(s) with the current critic
    (V(s') = 0 at a terminal state; V(final obs) at a time-limit truncation), then at once
    critic  w <- w + critic_lr * delta * grad V(s)         (a step on 1/2 (V(s) - r - gamma V(s'))^2)
    actor   theta <- theta + lr * delta * grad log pi(a|s)  (+ entropy bonus),
    both from the same delta (one-step actor-critic, Sutton & Barto 13.5, without the gamma^t factor).

    Batch size 1 by design: ``n_steps`` is 1, and with the default ``env.num_envs=1`` each update
    sees exactly one transition (more envs give the notes' synchronous parallel online actor-critic).
    """

    loop = "on_policy"
    Config = OnlineACConfig
    action_spaces = ("discrete", "continuous")
    n_steps = 1

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = self.anneal(progress)
        self.updates += 1
        # GAE with lambda = 0 is the one-step TD error; the separate learning rates stand in for vf_coef.
        metrics = advantage_actor_critic_update(self.model, self.optimizer, rollout, gamma=hp.gamma, lam=0.0, vf_coef=1.0,
                                                ent_coef=hp.ent_coef, max_grad_norm=hp.max_grad_norm)
        return {**metrics, "lr": lr}

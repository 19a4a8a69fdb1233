"""A2C: synchronous advantage actor-critic (notes: "Parallel Actor-Critic (Online)", synchronized)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlx.algos.common import ActorCritic, ActorCriticAgent, OptimizerName, advantage_actor_critic_update, make_named_optimizer
from rlx.buffers.rollout import Rollout
from rlx.config import param
from rlx.envs import EnvSpec
from rlx.schema import NetworkConfig


@dataclass
class A2CConfig:
    """SB3's A2C defaults (RL-Zoo adds 8 envs for CartPole: conf/tuned/a2c_cartpole.yaml)."""

    lr: float = param(7e-4, gt=0, help="learning rate")
    gamma: float = param(0.99, ge=0, le=1, help="discount (0: only the immediate reward)")
    gae_lambda: float = param(1.0, ge=0, le=1, help="GAE lambda (1: plain n-step returns)")
    n_steps: int = param(5, ge=1, help="steps per env per rollout (the n of the n-step return)")
    ent_coef: float = param(0.0, ge=0, help="entropy bonus weight")
    vf_coef: float = param(0.5, ge=0, help="value loss weight")
    max_grad_norm: float = param(0.5, gt=0, help="gradient-norm clip")
    normalize_advantage: bool = param(False)
    optimizer: OptimizerName = param("rmsprop", help="adam | rmsprop | sgd")
    anneal_lr: bool = param(False, help="linearly anneal the learning rate(s) to 0 over the run")
    rms_alpha: float = param(0.99, gt=0, lt=1, help="RMSprop smoothing constant")
    optimizer_eps: float = param(1e-5, gt=0, help="RMSprop/Adam epsilon")
    normalize_obs: bool = param(False, help="running observation normalization (stats saved in checkpoints)")
    log_std_init: float = param(0.0, help="initial log std of the Gaussian policy")


class A2C(ActorCriticAgent):
    """N envs stepped in lockstep for ``n_steps``; one synchronized gradient step per rollout on
    -log pi(a|s) A + vf_coef * 1/2 (V - G)^2 - ent_coef * H with GAE(lambda) advantages (n-step
    returns for lambda=1); truncated episodes bootstrap V(final obs).

    Like SB3's A2C (RMSprop, one global gradient clip) except that the value loss carries rlx's usual
    1/2 (SB3: the plain squared error); RMSprop's per-parameter scaling makes that matter only through
    the clip."""

    loop = "on_policy"
    Config = A2CConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: A2CConfig, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        self.model = ActorCritic(spec, net, hp.normalize_obs, hp.log_std_init).to(device)
        self.optimizer = make_named_optimizer(hp.optimizer, self.model.parameters(), hp.lr, hp.optimizer_eps, hp.rms_alpha)
        self.n_steps = hp.n_steps
        self.updates = 0

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = self.anneal(progress)
        self.updates += 1
        metrics = advantage_actor_critic_update(
            self.model, self.optimizer, rollout, gamma=hp.gamma, lam=hp.gae_lambda, vf_coef=hp.vf_coef,
            ent_coef=hp.ent_coef, max_grad_norm=hp.max_grad_norm, normalize_advantage=hp.normalize_advantage)
        return {**metrics, "lr": lr}

"""A2C: synchronous advantage actor-critic (notes: "Parallel Actor-Critic (Online)", synchronized)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rlx.algos.common import OptimizerName
from rlx.algos.recurrent import RecurrentPopulationActorCritic, env_major, episode_starts
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.objectives.policy import explained_variance, normalize, value_loss
from rlx.objectives.returns import gae
from rlx.optim.stacked import make_stacked_optimizer


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


class A2C(RecurrentPopulationActorCritic):
    """N envs stepped in lockstep for ``n_steps``; one synchronized gradient step per rollout on
    -log pi(a|s) A + vf_coef * 1/2 (V - G)^2 - ent_coef * H with GAE(lambda) advantages (n-step
    returns for lambda=1); truncated episodes bootstrap V(final obs).

    Like SB3's A2C (RMSprop, one global gradient clip) except that the value loss carries rlx's usual
    1/2 (SB3: the plain squared error); RMSprop's per-parameter scaling makes that matter only through
    the clip. A population of K members (issue 12; a plain run is K=1): each member its own weights,
    lr, gamma, lambda, coefficients, clip norm and RMSprop/Adam state (:class:`PopulationActorCritic`). With a
    recurrent core (``network.recurrent``) the rollout's env sequences are replayed from the state stored at its
    start (:meth:`RecurrentPopulationActorCritic.replay`)."""

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.gae_lambda", "algo.ent_coef", "algo.vf_coef", "algo.max_grad_norm",
                   "algo.anneal_lr", "algo.rms_alpha", "algo.optimizer_eps", "algo.log_std_init")
    Config = A2CConfig
    action_spaces = ("discrete", "continuous", "multi_discrete", "multi_binary")
    observation_spaces = ("box", "dict")  # Dict observations (rlx.networks.dict_obs): the others take Box only

    def __init__(self, spec: EnvSpec, hp: A2CConfig | Sequence[A2CConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, [hp] if isinstance(hp, A2CConfig) else list(hp), net, device, seeds)
        hps, m = self.hps, self.members
        self.optimizer = make_stacked_optimizer(self.hp.optimizer, self.params, lr=[h.lr for h in hps],
                                                eps=[h.optimizer_eps for h in hps], alpha=[h.rms_alpha for h in hps])
        self.gae_lambda = m.hyper(hps, "gae_lambda")

    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        hp, m = self.hp, self.members
        lr = self.anneal(progress)
        per_member = m.per_member(rollout)  # [T, K, N, ...]
        advantages = gae(per_member.rewards, per_member.values, per_member.next_values, per_member.terminated,
                         per_member.done, self.gamma, self.gae_lambda)
        returns = advantages + per_member.values
        # obs: a Tensor, or a Dict observation's per-key tensors (each reshaped alike)
        fields: tuple[Any, ...] = (per_member.obs, per_member.actions, per_member.values, advantages, returns)
        entropy_grad = bool((self.ent_coef > 0).any())
        if self.core is None:
            obs, actions, old_values, advantages, returns = (m.member_major(x) for x in fields)  # [K, T*N, ...]
            log_prob, entropy, values = self.model.evaluate_actions(obs, actions, entropy_grad=entropy_grad)
        else:  # each env's sequence replayed from the rollout's start: [K, N*T, ...], env-major
            obs, actions, old_values, advantages, returns, starts = (
                env_major(x) for x in (*fields, episode_starts(per_member.done)))
            log_prob, entropy, values = self.replay(obs, actions, starts, self.stored_start_state(actions.shape[1]), entropy_grad)
            old_values, advantages, returns = (x.flatten(1, 2) for x in (old_values, advantages, returns))
        weights = normalize(advantages, dim=1) if hp.normalize_advantage else advantages
        policy_loss = -(log_prob * weights.detach()).mean(1)  # reinforce_loss per member
        v_loss = value_loss(values, returns, dim=1)
        loss = policy_loss + self.vf_coef[:, 0] * v_loss
        if entropy_grad:
            loss = loss - self.ent_coef[:, 0] * entropy.mean(1)
        norms = self.gradient_step(loss)
        self.updates += 1
        self.rollout_learned()
        columns = [policy_loss.detach(), v_loss.detach(), entropy.detach().mean(1), norms, lr[:, 0]]
        keys = ["policy_loss", "value_loss", "entropy", "grad_norm", "lr"]
        if returns.shape[1] > 1:  # one sample has no variance to explain
            columns.append(explained_variance(old_values, returns, dim=1))
            keys.append("explained_variance")
        return [dict(zip(keys, row, strict=True)) for row in torch.stack(columns, 1).tolist()]

"""TRPO: trust region policy optimization with GAE(lambda) (notes: "Trust Region Policy Optimization",
the constrained update PPO-clip approximates). Defaults are sb3-contrib's TRPO.

Per rollout:
1. advantages by GAE(lambda), value targets A + V(s);
2. the policy step: g = grad of the surrogate mean(ratio * A) at theta_old, s = F^-1 g by conjugate
   gradient on Fisher-vector products (double backward through the KL), the full step
   sqrt(2 max_kl / s^T F s) s, then backtracking until the true KL <= max_kl and the surrogate improved
   (:mod:`rlx.objectives.natural_gradient`);
3. the value function, fitted separately: ``n_critic_updates`` epochs of Adam on 1/2 (V(s) - target)^2
   in minibatches of ``batch_size``.

A population of K members (issue 22; a plain run is K=1): every member's policy step at once, ``[K, P]``
gradients through a batched conjugate gradient (each member its own CG coefficients, step size and line
search: each accepts its own step), and the value functions fitted by one stacked Adam with each member's
own minibatch shuffles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, cast

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from rlx.algos.common import PopulationAgent
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.networks.fused import double_backward
from rlx.objectives.natural_gradient import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    max_step_size,
)
from rlx.objectives.policy import explained_variance, normalize, value_loss
from rlx.objectives.returns import gae
from rlx.optim.stacked import StackedAdam, clip_grad_norm_stacked_, gather_stacked_grads, stack_parameters


@dataclass
class TRPOConfig:
    lr: float = param(1e-3, gt=0, help="Adam learning rate of the value function (the policy step has no learning rate)")
    gamma: float = param(0.99, gt=0, le=1, help="discount")
    gae_lambda: float = param(0.95, ge=0, le=1, help="GAE lambda")
    n_steps: int = param(2048, ge=1, help="steps per env per rollout")
    batch_size: int = param(128, ge=1, help="minibatch size of the value-function fit")
    n_critic_updates: int = param(10, ge=1, help="epochs of value-function fitting per rollout")
    max_kl: float = param(0.01, gt=0, help="trust region: largest mean KL(pi_old || pi_new) per update")
    cg_iters: int = param(15, ge=1, help="conjugate-gradient iterations for s = F^-1 g")
    cg_damping: float = param(0.1, ge=0, help="damping added to the Fisher matrix (F + damping I)")
    line_search_shrink: float = param(0.8, gt=0, lt=1, help="backtracking factor of the line search")
    line_search_max_iter: int = param(10, ge=1, help="step sizes tried before the update is rejected")
    max_grad_norm: float | None = param(None, gt=0, help="gradient-norm clip of the value fit (null: off)")
    normalize_advantage: bool = param(True)
    anneal_lr: bool = param(False, help="linearly anneal the value function's lr to 0")
    normalize_obs: bool = param(False, help="running observation normalization (stats saved in checkpoints)")
    log_std_init: float = param(0.0, help="initial log std of the Gaussian policy")


class TRPO(PopulationAgent):
    """Natural-gradient policy step inside a KL trust region + a separately fitted value function.

    Acting (explore/value/act), the member layout and persistence come from :class:`PopulationAgent`;
    ``policy_params`` (what the natural step moves) and ``critic_params`` are ``[K, P]`` buffers, and
    ``optimizer`` is the value function's (the policy is moved by the line search, not by an optimizer)."""

    loop = "on_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.gae_lambda", "algo.max_kl", "algo.cg_damping",
                                    "algo.line_search_shrink", "algo.max_grad_norm", "algo.anneal_lr", "algo.log_std_init")
    Config = TRPOConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: TRPOConfig | Sequence[TRPOConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        hps = [hp] if isinstance(hp, TRPOConfig) else list(hp)
        # separate encoders: the policy's parameters are exactly what the natural step moves
        super().__init__(spec, hps, net, device, seeds, share_encoder=False)
        m, k = self.members, len(hps)
        self.policy_params = stack_parameters(list(self.model.policy.parameters()), members=k)
        self.critic_params = stack_parameters(list(self.model.critic.parameters()), members=k)
        self.optimizer = StackedAdam(self.critic_params, lr=[h.lr for h in hps], eps=1e-5)  # make_optimizer's Adam
        self.gae_lambda = m.hyper(hps, "gae_lambda")
        self.max_kl, self.cg_damping = m.hyper(hps, "max_kl"), m.hyper(hps, "cg_damping")
        self.line_search_shrink = m.hyper(hps, "line_search_shrink")
        self.max_grad_norm = m.hyper(hps, "max_grad_norm", none=math.inf)  # inf: no clip (x 1, exact)

    def update(self, rollout: Rollout, progress: float) -> list[dict[str, float]]:
        hp, m = self.hp, self.members
        lr = self.annealed(self.lr, progress)
        self.optimizer.set("lr", lr)
        per_member = m.per_member(rollout)  # [T, K, N, ...]
        advantages = gae(per_member.rewards, per_member.values, per_member.next_values, per_member.terminated,
                         per_member.done, self.gamma, self.gae_lambda)
        returns = advantages + per_member.values
        obs, actions, old_values, advantages, returns = (
            m.member_major(x) for x in (cast(Tensor, per_member.obs), per_member.actions, per_member.values, advantages, returns))
        if hp.normalize_advantage:
            advantages = normalize(advantages, dim=1)
        metrics = self.policy_step(self.model.features(obs), actions, advantages)
        metrics["value_loss"] = self.fit_value(obs, returns)
        metrics["lr"] = lr[:, 0]
        metrics["explained_variance"] = explained_variance(old_values, returns, dim=1)
        self.updates += 1
        keys = list(metrics)
        return [dict(zip(keys, row, strict=True)) for row in torch.stack([metrics[key] for key in keys], 1).tolist()]

    def policy_step(self, x: Tensor, actions: Tensor, advantages: Tensor) -> dict[str, Tensor]:
        """One trust-region step of every member's policy on the heads' input ``x`` ``[K, B, ...]``
        (normalized observations); returns ``[K]`` metrics."""
        policy, k = self.model.policy, self.members.k
        params = [p for p in policy.parameters() if p.requires_grad]  # [K, ...] views of policy_params
        with torch.no_grad():
            # pi_old from the current parameters and normalizer, so the ratio is exactly 1 at theta_old
            old = policy.distribution(x)
            old_logp = old.log_prob(actions)
        with double_backward():
            dist = policy.distribution(x)
            surrogate = (torch.exp(dist.log_prob(actions) - old_logp) * advantages).mean(1)  # [K]
            kl = kl_divergence(old, dist).mean(1)
            # members are independent: the gradients of the sums are every member's own, [K, P]
            g = flat_grad(surrogate.sum(), params, retain_graph=True, members=k)
            grad_kl = flat_grad(kl.sum(), params, create_graph=True, members=k)

            def fvp(v: Tensor) -> Tensor:
                return fisher_vector_product(grad_kl, params, v, self.cg_damping)

            direction = conjugate_gradient(fvp, g, self.hp.cg_iters)
            beta = max_step_size(direction, fvp(direction), self.max_kl[:, 0])  # [K]
        with torch.no_grad():
            entropy = dist.entropy().mean(1)  # only logged
        surrogate = surrogate.detach()
        # g = 0 (e.g. all advantages equal): beta is inf, nothing to improve; that member does not search
        searching = torch.isfinite(beta) & self.members.active
        full_step = torch.where(searching.unsqueeze(1), beta.unsqueeze(1) * direction, torch.zeros_like(direction))
        theta_old = self.policy_params.detach().clone()

        @torch.no_grad()
        def evaluate(step: Tensor) -> tuple[Tensor, Tensor]:
            self.policy_params.copy_(theta_old + step)
            new = policy.distribution(x)
            gain = (torch.exp(new.log_prob(actions) - old_logp) * advantages).mean(1) - surrogate
            return gain, kl_divergence(old, new).mean(1)

        accepted, step, tried, gain, step_kl = backtracking_line_search(
            evaluate, full_step, self.max_kl[:, 0], self.line_search_shrink[:, 0], self.hp.line_search_max_iter, searching)
        with torch.no_grad():
            self.policy_params.copy_(theta_old + step)  # rejected (or stopped) members: theta_old (a zero step)
        zero = torch.zeros_like(gain)
        return {"policy_objective": surrogate, "entropy": entropy, "grad_norm": torch.linalg.vector_norm(g, dim=1),
                "line_search_accepted": accepted.float(), "line_search_steps": tried.float(),
                "kl": torch.where(accepted, step_kl, zero), "surrogate_gain": torch.where(accepted, gain, zero),
                "expected_gain": torch.where(searching, (g * full_step).sum(1), zero)}

    def fit_value(self, obs: Tensor, returns: Tensor) -> Tensor:
        """``n_critic_updates`` epochs of minibatch regression of each member's V(s) onto its GAE returns,
        member k's minibatches from its own shuffles; returns the ``[K]`` mean losses."""
        hp, m, model = self.hp, self.members, self.model
        x = model.features(obs)
        active = m.active
        mask = None if bool(active.all()) else active
        losses = []
        for _ in range(hp.n_critic_updates):
            for idx in m.minibatches(x.shape[1], hp.batch_size):
                loss = value_loss(model.critic(m.take(x, idx)), m.take(returns, idx), dim=1)  # [K]
                self.optimizer.zero_grad()
                loss.sum().backward()
                gather_stacked_grads(self.critic_params)
                assert self.critic_params.grad is not None
                clip_grad_norm_stacked_(self.critic_params.grad, self.max_grad_norm[:, 0])
                self.optimizer.step(mask)
                losses.append(loss.detach())
        return torch.stack(losses).mean(0)

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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from rlx.algos.common import ActorCritic, ActorCriticAgent, gradient_step, make_optimizer, minibatches
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
    flat_params,
    max_step_size,
    set_flat_params,
)
from rlx.objectives.policy import explained_variance, normalize, value_loss
from rlx.objectives.returns import gae


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


class TRPO(ActorCriticAgent):
    """Natural-gradient policy step inside a KL trust region + a separately fitted value function.

    Acting (explore/value/act) and persistence come from :class:`ActorCriticAgent`; ``optimizer`` is the
    value function's (the policy is moved by the line search, not by an optimizer)."""

    loop = "on_policy"
    Config = TRPOConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: TRPOConfig, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        # separate encoders: the policy's parameters are exactly what the natural step moves
        self.model = ActorCritic(spec, net, hp.normalize_obs, hp.log_std_init, share_encoder=False).to(device)
        self.optimizer = make_optimizer(self.model.critic.parameters(), hp.lr)
        self.n_steps = hp.n_steps
        self.updates = 0

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        hp, model = self.hp, self.model
        lr = self.anneal(progress)
        advantages = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done,
                         hp.gamma, hp.gae_lambda)
        returns = (advantages + rollout.values).reshape(-1)
        obs, actions, old_values = rollout.flat("obs", "actions", "values")
        advantages = advantages.reshape(-1)
        if hp.normalize_advantage:
            advantages = normalize(advantages)
        metrics = self.policy_step(model.features(obs), actions, advantages)
        metrics.update(self.fit_value(obs, returns), lr=lr)
        metrics["explained_variance"] = explained_variance(old_values, returns).item()
        self.updates += 1
        return metrics

    def policy_step(self, x: Tensor, actions: Tensor, advantages: Tensor) -> dict[str, float]:
        """One trust-region step of the policy on the heads' input ``x`` (normalized observations)."""
        hp, policy = self.hp, self.model.policy
        params = [p for p in policy.parameters() if p.requires_grad]
        with torch.no_grad():
            # pi_old from the current parameters and normalizer, so the ratio is exactly 1 at theta_old
            old = policy.distribution(x)
            old_logp = old.log_prob(actions)
        with double_backward():
            dist = policy.distribution(x)
            surrogate = (torch.exp(dist.log_prob(actions) - old_logp) * advantages).mean()
            kl = kl_divergence(old, dist).mean()
            g = flat_grad(surrogate, params, retain_graph=True)
            grad_kl = flat_grad(kl, params, create_graph=True)

            def fvp(v: Tensor) -> Tensor:
                return fisher_vector_product(grad_kl, params, v, hp.cg_damping)

            direction = conjugate_gradient(fvp, g, hp.cg_iters)
            beta = max_step_size(direction, fvp(direction), hp.max_kl)
        with torch.no_grad():
            entropy = dist.entropy().mean().item()  # only logged
        metrics = {"policy_objective": surrogate.item(), "entropy": entropy, "grad_norm": g.norm().item()}
        if not torch.isfinite(beta):  # g = 0 (e.g. all advantages equal): nothing to improve
            return {**metrics, "line_search_accepted": 0.0, "line_search_steps": 0.0, "kl": 0.0}
        theta_old = flat_params(params)
        base = surrogate.item()

        @torch.no_grad()
        def evaluate(step: Tensor) -> tuple[float, float]:
            set_flat_params(params, theta_old + step)
            new = policy.distribution(x)
            gain = (torch.exp(new.log_prob(actions) - old_logp) * advantages).mean().item() - base
            return gain, kl_divergence(old, new).mean().item()

        step, tried, gain, step_kl = backtracking_line_search(evaluate, beta * direction, hp.max_kl,
                                                              hp.line_search_shrink, hp.line_search_max_iter)
        set_flat_params(params, theta_old + step if step is not None else theta_old)
        return {**metrics, "line_search_accepted": float(step is not None), "line_search_steps": float(tried),
                "kl": step_kl if step is not None else 0.0, "surrogate_gain": gain if step is not None else 0.0,
                "expected_gain": (g @ (beta * direction)).item()}

    def fit_value(self, obs: Tensor, returns: Tensor) -> dict[str, float]:
        """``n_critic_updates`` epochs of minibatch regression of V(s) onto the GAE returns."""
        hp, model = self.hp, self.model
        x = model.features(obs)
        losses = []
        for _ in range(hp.n_critic_updates):
            for idx in minibatches(x.shape[0], hp.batch_size, x.device):
                loss = value_loss(model.critic(x[idx]), returns[idx])
                gradient_step(self.optimizer, loss, hp.max_grad_norm)
                losses.append(loss.detach())
        return {"value_loss": torch.stack(losses).mean().item()}

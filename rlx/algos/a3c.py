"""A3C: asynchronous advantage actor-critic (notes: "Parallel Actor-Critic (Online)", asynchronous).

The model and the optimizer's statistics live in shared memory; ``num_workers`` processes (the
"async" loop, rlx/train/loops/async_workers.py) each act in their own env copy, compute gradients on
their own n-step rollouts and apply them to the shared parameters without waiting for one another
(Hogwild). The main process only evaluates and checkpoints the shared model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from rlx.algos.a2c import A2CConfig
from rlx.algos.common import STEP_KEYS, ActorCritic, anneal_lr, gradient_step, make_optimizer
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.objectives.policy import explained_variance, normalize, reinforce_loss, value_loss
from rlx.objectives.returns import gae


@dataclass
class A3CConfig(A2CConfig):
    """A2C's hyperparameters (``n_steps`` and the batch are per worker env) plus the worker count."""

    num_workers: int = param(2, ge=1, help="worker processes, each with its own env.num_envs envs")
    backend: Literal["processes", "ray"] = param("processes", help="processes (this machine) | ray (Ray actors on a cluster)")
    worker_resources: dict | None = param(None, help="backend=ray: Ray resources per worker actor (CPU, GPU, custom; null: {CPU: 1})")
    ray_address: str = param("auto", help="backend=ray: the Ray cluster to join (auto: this machine's; HEAD_IP:6379)")


def share_optimizer_state_(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's per-parameter statistics now and move them to shared memory, so every
    worker process updates the same ones (a SharedAdam / SharedRMSprop for any torch optimizer).

    The statistics are created by one step with zero gradients and lr 0 (parameters unchanged,
    moments stay 0), then the step counters are reset to 0.
    """
    if not optimizer.state:
        lrs = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = 0.0
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for state in optimizer.state.values():
            for v in state.values():
                if isinstance(v, Tensor):
                    v.zero_()
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, Tensor):
                v.share_memory_()


class WorkerModel:
    """A worker's plain (unstacked) :class:`ActorCritic` and the optimizer its gradients go to, acting as the
    on-policy loop asks (:class:`rlx.algos.protocols.OnPolicyAlgorithm`) with torch's RNG (each worker
    process seeds its own). A3C's workers are not a population: Hogwild updates of one shared model, whose
    parameters torch's optimizers step tensor by tensor in shared memory; ``update`` is the subclass's."""

    def __init__(self, hp: A3CConfig, model: ActorCritic, optimizer: torch.optim.Optimizer):
        self.hp, self.model, self.optimizer = hp, model, optimizer
        self.device, self.n_steps = torch.device("cpu"), hp.n_steps

    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.explore(obs)

    def value(self, obs: Tensor) -> Tensor:
        return self.model.value(obs)

    def policy_input(self, obs: Tensor) -> Tensor | None:
        return None  # no observation normalization in A3C (A3C.__init__ refuses it): the raw obs is what it saw

    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.model.act(obs, deterministic)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])

    def anneal(self, progress: float) -> float:
        """The learning rate for this update: linearly decayed when the config says ``anneal_lr``."""
        if self.hp.anneal_lr:
            return anneal_lr(self.optimizer, progress)
        return self.optimizer.param_groups[0]["lr"]

    def a2c_step(self, rollout: Rollout, local_params: Sequence[nn.Parameter] | None = None) -> dict[str, float]:
        """One gradient step on a whole [T, N] rollout:  L = -mean(log pi(a|s) A) + vf_coef * 1/2 mean((V(s) - G)^2)
        - ent_coef * mean(H)  with GAE(lambda) advantages A and A + V(s) value targets G (lambda=1: n-step
        returns to the rollout end); truncated episodes bootstrap V(final obs). ``local_params``: this
        worker's local copy of the parameters the optimizer owns (their gradients are handed over)."""
        hp, model = self.hp, self.model
        advantages = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done,
                         hp.gamma, hp.gae_lambda)
        returns = (advantages + rollout.values).reshape(-1)
        obs, actions = rollout.flat("obs", "actions")
        weights = normalize(advantages.reshape(-1)) if hp.normalize_advantage else advantages.reshape(-1)
        log_prob, entropy, values = model.evaluate_actions(obs, actions, entropy_grad=hp.ent_coef > 0)
        policy_loss = reinforce_loss(log_prob, weights)
        v_loss = value_loss(values, returns)
        entropy_mean = entropy.mean()
        loss = policy_loss + hp.vf_coef * v_loss
        if hp.ent_coef > 0:
            loss = loss - hp.ent_coef * entropy_mean
        norm = gradient_step(self.optimizer, loss, hp.max_grad_norm, local_params)
        stats = torch.stack([policy_loss.detach(), v_loss.detach(), entropy_mean.detach(), norm]).tolist()
        metrics = dict(zip(STEP_KEYS, stats, strict=True))
        if returns.numel() > 1:
            metrics["explained_variance"] = explained_variance(rollout.values.reshape(-1), returns).item()
        return metrics


class A3C:
    """The shared half: the model and optimizer every worker updates; ``act`` for evaluation.

    ``worker(rank)`` builds a worker's view (:class:`A3CWorker`) inside its process. Runs on the
    CPU (Hogwild updates on shared memory); ``worker_updates[rank]`` counts each worker's updates.
    """

    loop = "async"  # backend=ray: "ray" (rlx/train/loops/ray_workers.py: worker Ray actors, the learner in this process)
    Config = A3CConfig
    action_spaces = ("discrete", "continuous")

    def __init__(self, spec: EnvSpec, hp: A3CConfig, net: NetworkConfig, device: torch.device):
        if hp.normalize_obs:  # each worker would keep its own running statistics, and the shared model none
            raise UserError("algo.normalize_obs=true is not supported by a3c; use a2c or ppo for observation normalization")
        self.spec, self.hp, self.net = spec, hp, net
        self.device = torch.device("cpu")
        self.model = ActorCritic(spec, net, False, hp.log_std_init).share_memory()
        # flat=False: workers hand their gradients to the shared parameters one by one (gradient_step's local_params)
        self.optimizer = make_optimizer(self.model.parameters(), hp.lr, hp.optimizer, hp.optimizer_eps, hp.rms_alpha,
                                        flat=False)
        share_optimizer_state_(self.optimizer)
        self.worker_updates = torch.zeros(hp.num_workers, dtype=torch.int64).share_memory_()
        self.num_workers, self.n_steps = hp.num_workers, hp.n_steps
        if hp.backend == "ray":
            self.loop = "ray"

    @property
    def updates(self) -> int:
        return int(self.worker_updates.sum())

    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.model.act(obs.cpu(), deterministic).to(obs.device)

    def worker(self, rank: int) -> A3CWorker:
        return A3CWorker(self, rank)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "worker_updates": self.worker_updates.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])  # copies into the shared tensors
        self.optimizer.load_state_dict(state["optimizer"])  # new tensors: share them again
        share_optimizer_state_(self.optimizer)
        if state["worker_updates"].shape == self.worker_updates.shape:
            self.worker_updates.copy_(state["worker_updates"])


class A3CWorker(WorkerModel):
    """One worker's view for the shared on-policy loop: acts with a local copy of the shared model,
    computes the A2C loss gradient on it, hands the gradient to the shared parameters and steps the
    shared optimizer (no lock: Hogwild), then pulls the latest shared weights."""

    def __init__(self, shared: A3C, rank: int):
        model = ActorCritic(shared.spec, shared.net, False, shared.hp.log_std_init)
        model.load_state_dict(shared.model.state_dict())
        super().__init__(shared.hp, model, shared.optimizer)
        self.shared, self.rank = shared, rank
        self.local_params = list(self.model.parameters())  # their gradients go to the shared ones

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        lr = self.anneal(progress)  # progress of all workers together (the shared step counter)
        metrics = self.a2c_step(rollout, self.local_params)
        self.model.load_state_dict(self.shared.model.state_dict())
        self.shared.worker_updates[self.rank] += 1
        return {**metrics, "lr": lr}

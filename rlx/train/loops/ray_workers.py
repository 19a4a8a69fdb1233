"""A3C on a Ray cluster (``algo=a3c algo.backend=ray``): workers are Ray actors, this process is the learner.

Each of ``algo.num_workers`` actors (placed anywhere on the cluster, ``algo.worker_resources`` each) owns
``env.num_envs`` envs and a local copy of the model. A call ``compute(params, version)`` loads the
parameters it is given, collects one n-step rollout with the ordinary on-policy loop
(:mod:`rlx.train.loops.on_policy`) and returns the A2C loss gradient (clipped to ``max_grad_norm``), its env
steps, finished episodes and metrics. The learner keeps one call in flight per worker and applies each
gradient the moment it arrives (``ray.wait``: whichever worker is first), with the run's optimizer on
the model the checkpoints hold, then sends that worker the new parameters. Workers never wait for
one another: the notes' asynchronous parallel actor-critic, with the learner as the parameter server.

Staleness: a gradient computed on parameters of version v and applied when the learner is at version
v' (updates applied so far) has staleness v' - v. With one call in flight per worker it is at most the
number of updates the other workers make meanwhile, typically about ``num_workers - 1``; every update
logs it (``staleness``) and the summary holds its histogram and mean.

A worker actor that dies (its process or node) is restarted by Ray (up to MAX_RESTARTS times each) with
fresh envs and is sent the current parameters again; its lost rollout is simply not applied. The summary
counts the restarts (``worker_restarts``). Evaluation, checkpoints, SIGTERM and ``rlx resume`` are the
session's, as for every run; worker envs are not checkpointed (a resumed run starts new episodes).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlx.algos.a3c import WorkerModel
from rlx.algos.common import ActorCritic, anneal_lr
from rlx.buffers.rollout import Rollout
from rlx.envs.make import EpisodeTracker, make_vec_env
from rlx.errors import UserError
from rlx.networks.fused import fused_kernels, set_fused_kernels
from rlx.train.loops import on_policy
from rlx.train.loops.async_workers import WorkerError
from rlx.train.session import Session

MAX_RESTARTS = 3  # per worker actor (Ray's max_restarts); after that its calls fail and the run fails
UNAVAILABLE_S = 120.0  # a worker whose calls keep failing this long (dead for good) fails the run
NO_RAY = "algo.backend=ray needs Ray: pip install 'rlx[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(NO_RAY) from None
    return ray


def connect(ray: Any, address: str) -> bool:
    """Join the running cluster at ``address``; True when this call connected (so it disconnects).
    The run's own SIGINT/SIGTERM handlers stay in place (checkpoint and exit, as for every run)."""
    if ray.is_initialized():
        return False
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except ConnectionError as e:
        raise UserError(f"algo.ray_address={address}: no Ray cluster there ({e}); start one with `ray start --head` "
                        f"or give its address (HEAD_IP:6379)") from None
    finally:
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)
    return True


def run(algo: Any, envs: gym.vector.VectorEnv, session: Session, device: torch.device) -> dict[str, Any]:
    ray = import_ray()
    hp = algo.hp
    owns_connection = connect(ray, hp.ray_address)
    env_cfg = session.config["env"]
    # fused_kernels: this process's setting (prepare_process resolved it; an older checkpoint's config has no such key)
    run_cfg = {**{k: session.config.get(k) for k in ("seed", "torch_threads")}, "fused_kernels": fused_kernels()}
    res = dict(hp.worker_resources or {})
    actor_cls = ray.remote(_RayWorker).options(num_cpus=res.pop("CPU", 1), num_gpus=res.pop("GPU", 0), resources=res or None,
                                               max_restarts=MAX_RESTARTS, max_task_retries=0)
    actors = [actor_cls.remote(rank, algo.spec, hp, algo.net, env_cfg, run_cfg) for rank in range(algo.num_workers)]
    params = list(algo.model.parameters())
    version = 0
    staleness: Counter[int] = Counter()
    restarts = [0] * algo.num_workers
    workers: list[dict | None] = [None] * algo.num_workers  # where each actor runs (node, pid)
    failing: dict[int, float] = {}  # rank -> since when its calls fail
    warned: set[int] = set()

    def loop_state() -> dict[str, Any]:
        return {}  # worker envs are not checkpointed: a resumed run starts new episodes

    def submit(rank: int, weights: Any) -> None:
        pending[actors[rank].compute.remote(weights, version)] = rank

    pending: dict[Any, int] = {}
    try:
        weights = ray.put(algo.model.state_dict())
        for rank in range(algo.num_workers):
            submit(rank, weights)
        while not session.done:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            if not ready:
                continue
            rank = pending.pop(ready[0])
            try:
                fetched, where, grads, steps, returns, lengths, metrics = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:  # the actor's process or node died (Ray restarts it), or is restarting
                first = failing.setdefault(rank, time.monotonic())
                if time.monotonic() - first > UNAVAILABLE_S:
                    raise WorkerError(f"A3C worker {rank} unavailable for {UNAVAILABLE_S:.0f} s: {str(e).splitlines()[0]}") from None
                if rank not in warned:
                    print(f"rlx: A3C worker {rank} died; Ray restarts it", file=sys.stderr)
                    warned.add(rank)
                time.sleep(0.1)
                submit(rank, weights)
                continue
            except ray.exceptions.RayTaskError as e:
                raise WorkerError(f"A3C worker {rank} crashed:\n{e}") from None
            failing.pop(rank, None)
            warned.discard(rank)
            if workers[rank] != where:  # first report, or a restarted actor (a new process)
                if workers[rank] is not None:
                    restarts[rank] += 1
                workers[rank] = where
                _write_worker_file(session, workers)
            lr = anneal_lr(algo.optimizer, session.progress) if hp.anneal_lr else algo.optimizer.param_groups[0]["lr"]
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            algo.optimizer.step()
            algo.optimizer.zero_grad(set_to_none=True)
            stale = version - fetched  # updates applied since this worker fetched its parameters
            staleness[stale] += 1
            version += 1
            algo.worker_updates[rank] += 1
            weights = ray.put(algo.model.state_dict())
            submit(rank, weights)
            session.add_steps(steps)
            session.tracker.add_finished(returns, lengths)
            session.record({**metrics, "lr": lr, "staleness": float(stale)})
            session.tick(loop_state)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if owns_connection:
            ray.shutdown()
    summary = session.finish(loop_state)
    n = sum(staleness.values())
    summary["worker_updates"] = algo.worker_updates.tolist()
    summary["worker_restarts"] = restarts
    summary["staleness"] = {"mean": sum(k * v for k, v in staleness.items()) / n if n else None,
                            "max": max(staleness) if n else None,
                            "histogram": {str(k): staleness[k] for k in sorted(staleness)}}
    return summary


def _write_worker_file(session: Any, workers: list[dict | None]) -> None:
    """``ray_workers.json`` in the run dir: where each worker actor runs now (node, pid)."""
    text = json.dumps([{"rank": rank, **(w or {})} for rank, w in enumerate(workers)])
    path = Path(session.logger.run_dir) / "ray_workers.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- inside a worker actor ------------------------------------------------------------------------


class _RolloutSession:
    """What the on-policy loop needs from a Session for exactly one rollout; the envs' observation is
    kept between calls, so episodes run on across rollouts."""

    loop_state = None

    def __init__(self, num_envs: int):
        self.tracker = EpisodeTracker(num_envs)
        self.obs: np.ndarray | None = None
        self.steps, self.metrics, self.progress = 0, None, 0.0

    def initial_obs(self, envs: Any) -> np.ndarray:
        if self.obs is None:
            self.obs, _ = envs.reset()
        return self.obs

    def check_transition(self, obs: np.ndarray, rewards: np.ndarray) -> None:
        Session.check_transition(self, obs, rewards)  # type: ignore[arg-type]  # the same NaN/inf guard on env output
        self.obs = obs  # the loop's next observation (autoreset: a new episode's first one after a done)

    @property
    def done(self) -> bool:
        return self.metrics is not None

    def add_steps(self, n: int) -> None:
        self.steps += n

    def record(self, metrics: Any) -> None:
        self.metrics = metrics

    def tick(self, loop_state: Any) -> None:
        pass

    def finish(self, loop_state: Any) -> dict[str, Any]:
        return {}


class _GradientAgent(WorkerModel):
    """A worker's model: ``update`` computes the clipped A2C gradient and keeps it (a zero-lr SGD step
    leaves the parameters alone); the learner applies it."""

    def __init__(self, spec: Any, hp: Any, net: Any):
        model = ActorCritic(spec, net, False, hp.log_std_init)
        super().__init__(hp, model, torch.optim.SGD(model.parameters(), lr=0.0))
        self.grads: list[torch.Tensor] = []

    def update(self, rollout: Rollout, progress: float) -> dict[str, float]:
        metrics = self.a2c_step(rollout)
        self.grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self.model.parameters()]
        return metrics


class _RayWorker:
    """One A3C worker actor (``ray.remote`` is applied by :func:`run`, so importing this module needs no Ray)."""

    def __init__(self, rank: int, spec: Any, hp: Any, net: Any, env: dict, run_cfg: dict):
        torch.set_num_threads(int(run_cfg.get("torch_threads") or 1))
        set_fused_kernels(run_cfg["fused_kernels"])  # a new process starts with the module's default
        seed = int(run_cfg["seed"]) + 1000 * (rank + 1)  # distinct streams per worker, as with backend=processes
        torch.manual_seed(seed)
        self.envs = make_vec_env(env["id"], env["num_envs"], seed, env.get("kwargs"), env.get("max_episode_steps"),
                                 batched=env.get("batched", "auto"), wrappers=env.get("wrappers") or (),
                                 train_wrappers=env.get("train_wrappers") or ())
        self.agent = _GradientAgent(spec, hp, net)
        self.session = _RolloutSession(self.envs.num_envs)

    def compute(self, weights: dict, version: int) -> tuple:
        self.agent.model.load_state_dict(weights)
        s = self.session
        s.steps, s.metrics = 0, None
        on_policy.run(self.agent, self.envs, s, torch.device("cpu"))  # s: a LoopSession
        returns, lengths = s.tracker.drain()
        return version, {"node": socket.gethostname(), "pid": os.getpid()}, self.agent.grads, s.steps, returns, lengths, s.metrics

"""The asynchronous loop (A3C): worker processes learn, the main process watches.

Each of ``algo.num_workers`` worker processes (torch.multiprocessing, spawn) runs the ordinary
on-policy loop (:mod:`rlx.train.loops.on_policy`) on its own env copy with ``algo.worker(rank)``, whose
updates go straight to the shared model. A worker's Session is a stand-in that counts steps in a
shared counter (all workers stop at ``total_steps``) and sends env steps, finished episodes and
update metrics to the main process through a queue. The main process feeds those to the real
:class:`Session` (logging, progress, evaluation and checkpoints of the shared model). A crashed
worker stops the run with its traceback; any exit (error, Ctrl-C) stops every worker.

Evaluations and checkpoints read the shared model while the workers keep updating it (no lock, as in
Hogwild), so a checkpoint may mix parameters one update apart. Worker envs are not checkpointed: a
resumed run starts new episodes. With more than one worker a run is not reproducible from its seed.
"""
from __future__ import annotations

import os
import queue as queue_module
import signal
import sys
import time
import traceback
from typing import Any, Sequence

import gymnasium as gym
import torch
import torch.multiprocessing as mp

from rlx.envs.make import EpisodeTracker, make_vec_env
from rlx.networks.fused import fused_kernels, set_fused_kernels
from rlx.train.loops import on_policy
from rlx.train.session import Session

FLUSH_S = 0.1  # a worker reports to the main process at most this often
TICK_S = 0.5  # the main process's safe points (log/eval/checkpoint, progress rate) at most this often
JOIN_S = 5.0  # how long stopped workers get to exit before they are terminated


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its traceback or exit code."""


def run(algo: Any, envs: gym.vector.VectorEnv, session: Session, device: torch.device) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    stop = ctx.Event()
    counter = ctx.Value("q", session.env_steps)  # env steps of all workers: each stops at total_steps
    env = session.config["env"]
    # fused_kernels: this process's setting (prepare_process resolved it; an older checkpoint's config has no such key)
    run_cfg = {**{k: session.config.get(k) for k in ("seed", "torch_threads")}, "fused_kernels": fused_kernels()}
    workers = [ctx.Process(target=_worker_main, name=f"rlx-a3c-worker-{rank}", daemon=True,
                           args=(rank, algo, env, run_cfg, session.total_steps, messages, stop, counter))
               for rank in range(algo.num_workers)]

    def loop_state() -> dict[str, Any]:
        return {}  # worker envs are not checkpointed: a resumed run starts new episodes

    finished: set[int] = set()
    last_tick = time.monotonic()
    try:
        # Workers start with SIGINT blocked (the mask is inherited), so a Ctrl-C while they import
        # reaches only this process's handler (session.stop_requested), which then stops them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
        try:
            for w in workers:
                w.start()
        finally:
            if blocked is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        while len(finished) < len(workers) and session.stop_requested is None:
            _check_alive(workers, finished, messages)  # cheap (a non-blocking waitpid per worker)
            try:
                kind, rank, payload = messages.get(timeout=0.5)
            except queue_module.Empty:
                continue
            if kind == "error":
                raise WorkerError(f"A3C worker {rank} crashed:\n{payload}")
            if kind == "done":
                finished.add(rank)
                continue
            steps, returns, lengths, metrics = payload
            session.add_steps(steps)
            session.tracker.add_finished(returns, lengths)
            for m in metrics:
                session.record(m)
            if time.monotonic() - last_tick >= TICK_S:  # reports arrive in bursts: a steadier rate
                session.tick(loop_state)
                last_tick = time.monotonic()
    finally:
        stop.set()
        _shutdown(workers, messages)
    summary = session.finish(loop_state)
    summary["worker_updates"] = algo.worker_updates.tolist()
    return summary


def _check_alive(workers: list, finished: set[int], messages: Any) -> None:
    """A worker that died without reporting (killed, segfault) fails the run too."""
    for rank, w in enumerate(workers):
        if rank not in finished and w.exitcode is not None and w.exitcode != 0:
            try:  # its own error report may still be on the way
                kind, r, payload = messages.get(timeout=1.0)
                if kind == "error":
                    raise WorkerError(f"A3C worker {r} crashed:\n{payload}")
            except queue_module.Empty:
                pass
            code = w.exitcode
            how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise WorkerError(f"A3C worker {rank} (pid {w.pid}) died without a report ({how})")


def _shutdown(workers: list, messages: Any) -> None:
    """Stop every worker: they see the stop event at their next rollout; stragglers are terminated.
    The queue is drained meanwhile (a process with unflushed queue data cannot exit)."""
    deadline = time.monotonic() + JOIN_S
    while any(w.pid is not None and w.is_alive() for w in workers) and time.monotonic() < deadline:
        try:
            messages.get(timeout=0.05)
        except queue_module.Empty:
            pass
    for w in workers:
        if w.pid is None:  # never started
            continue
        if w.is_alive():
            w.terminate()
        w.join(timeout=JOIN_S)
        if w.is_alive():
            w.kill()
            w.join()


# --- inside a worker process ----------------------------------------------------------------------


class _WorkerSession:
    """What the on-policy loop needs from a Session, inside a worker: steps go to the shared
    counter, finished episodes and update metrics to the main process (batched, every FLUSH_S).
    A worker also stops when the main process is gone (killed, or a second Ctrl-C's hard exit)."""

    loop_state = None  # worker envs start fresh episodes, also on resume
    initial_obs = Session.initial_obs
    check_transition = Session.check_transition  # the same NaN/inf guard on env output

    def __init__(self, rank: int, total_steps: int, num_envs: int, messages: Any, stop: Any, counter: Any):
        self.rank, self.total_steps, self.messages, self.stop, self.counter = rank, total_steps, messages, stop, counter
        self.tracker = EpisodeTracker(num_envs)
        self.steps = 0
        self.metrics: list[dict[str, float]] = []
        self.last_flush = time.monotonic()
        self.parent = os.getppid()

    @property
    def env_steps(self) -> int:
        return self.counter.value

    @property
    def done(self) -> bool:
        return self.stop.is_set() or self.counter.value >= self.total_steps or os.getppid() != self.parent

    @property
    def progress(self) -> float:
        return min(1.0, self.counter.value / self.total_steps)

    def add_steps(self, n: int) -> None:
        with self.counter.get_lock():
            self.counter.value += n
        self.steps += n

    def record(self, metrics: dict[str, float] | Sequence[dict[str, float]]) -> None:
        self.metrics.append(metrics if isinstance(metrics, dict) else metrics[0])

    def tick(self, loop_state: Any) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        returns, lengths = self.tracker.drain()
        self.messages.put(("progress", self.rank, (self.steps, returns, lengths, self.metrics)))
        self.steps, self.metrics, self.last_flush = 0, [], time.monotonic()

    def finish(self, loop_state: Any) -> dict[str, Any]:
        self.flush()
        return {}


def _worker_main(rank: int, algo: Any, env: dict, run_cfg: dict, total_steps: int, messages: Any, stop: Any, counter: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the workers
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        if run_cfg.get("torch_threads"):
            torch.set_num_threads(run_cfg["torch_threads"])
        set_fused_kernels(run_cfg["fused_kernels"])  # a new process starts with the module's default
        seed = int(run_cfg["seed"]) + 1000 * (rank + 1)  # distinct, reproducible streams per worker
        torch.manual_seed(seed)
        envs = make_vec_env(env["id"], env["num_envs"], seed, env.get("kwargs"), env.get("max_episode_steps"),
                            batched=env.get("batched", "auto"), wrappers=env.get("wrappers") or (),
                            train_wrappers=env.get("train_wrappers") or ())
        session = _WorkerSession(rank, total_steps, envs.num_envs, messages, stop, counter)
        on_policy.run(algo.worker(rank), envs, session, torch.device("cpu"))
        envs.close()
        messages.put(("done", rank, None))
    except BaseException:
        messages.put(("error", rank, traceback.format_exc()))
        sys.exit(1)

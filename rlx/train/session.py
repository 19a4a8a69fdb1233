"""The machinery every training loop shares: step counting, logging, evaluation, checkpoints, summary.

A loop (on-policy, off-policy, async) only collects experience and calls ``algo.update``; at its safe
points (after an update, when the algorithm's state is consistent) it calls :meth:`Session.tick`,
which logs, evaluates and checkpoints on the configured cadences.
"""
from __future__ import annotations

import contextvars
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from rlx.algos.protocols import Algorithm
from rlx.envs.batched import VecEnv
from rlx.envs.make import EpisodeTracker
from rlx.errors import RunFault
from rlx.rundir.checkpoint import Checkpointer
from rlx.rundir.logging import Logger, RateMeter
from rlx.train.evaluation import Evaluates
from rlx.train.loop_state import LoopState, member_loop_state, restore_vector_env

LOG_WINDOW = 20  # a log line's episode_return_mean/std and episode_length_mean: the last 20 finished episodes
RECENT_EVALS = 10  # periodic eval returns a checkpoint keeps (population-based training scores the last few)
# Stop reasons that end a run as finished (status "ok", or "pruned" for rlx tune's pruner), unlike signals.
STOP_CONDITIONS = ("reward_threshold", "patience")
# Callables told of every periodic evaluation, ``hook(env_steps, eval_return_mean)``; one that returns a
# reason ("pruned") stops the run. Set around a run by its caller (rlx tune reports evals to Optuna).
EvalHook = Callable[[int, float], str | None]
EVAL_HOOKS: contextvars.ContextVar[tuple[EvalHook, ...]] = contextvars.ContextVar("rlx_eval_hooks", default=())


class NonFiniteError(RunFault):
    """A NaN/inf appeared in a loss, the parameters or an observation; the run stops, checkpoints stay good."""


@dataclass
class Cadence:
    """Fires when the step counter crosses the next multiple of ``every`` (never when every == 0)."""

    every: int
    next: int = 0

    def __post_init__(self) -> None:
        if not self.next:
            self.next = self.every

    def due(self, steps: int) -> bool:
        if self.every <= 0 or steps < self.next:
            return False
        self.next = (steps // self.every + 1) * self.every
        return True


@dataclass
class Counters:
    env_steps: int = 0
    updates: int = 0
    wall_s: float = 0.0
    best_eval_return: float = -math.inf
    last_eval: tuple[float, float] | None = None
    evals_since_best: int = 0  # stop.patience counts these


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# what a loop passes at its safe points: its live state (a plain run's or a job's loops) or a ready dict (A3C's)
LoopStateFn = Callable[[], "dict[str, Any] | LoopState"]


class LoopSession(Protocol):
    """What rlx.train.loops.on_policy.run needs of its session: a :class:`Session`, or an A3C worker's stand-in
    (rlx/train/loops/async_workers.py)."""

    tracker: EpisodeTracker

    @property
    def loop_state(self) -> dict[str, Any] | None:
        """A resumed run's checkpointed loop state (None: a fresh run)."""
        ...

    @property
    def done(self) -> bool: ...

    @property
    def progress(self) -> float: ...

    def initial_obs(self, envs: VecEnv) -> np.ndarray: ...

    def check_transition(self, obs: np.ndarray, rewards: np.ndarray) -> None: ...

    def add_steps(self, n: int) -> None: ...

    def record(self, metrics: dict[str, float] | Sequence[dict[str, float]]) -> None: ...

    def tick(self, loop_state: LoopStateFn) -> None: ...

    def finish(self, loop_state: LoopStateFn) -> Any:
        """The summary: one dict (a Session), or one per member (a job's session)."""
        ...


class OffPolicyLoopSession(LoopSession, Protocol):
    """What rlx.train.loops.off_policy.run needs besides: the config (frame stacking) and the step count
    (learning_starts, train_freq)."""

    @property
    def config(self) -> dict: ...

    @property
    def env_steps(self) -> int: ...


class Session:
    """Counts env steps and drives logging, evaluation and checkpoints for one run."""

    def __init__(
        self,
        algo: Algorithm,
        algo_name: str,
        config: dict,
        logger: Logger,
        checkpointer: Checkpointer,
        evaluator: Evaluates,
        total_steps: int,
        log_every: int,
        eval_every: int,
        checkpoint_every: int,
        num_envs: int,
        deterministic_eval: bool = True,
    ):
        self.algo, self.algo_name, self.config = algo, algo_name, config
        self.logger, self.checkpointer, self.evaluator = logger, checkpointer, evaluator
        self.total_steps = total_steps
        self.deterministic_eval = deterministic_eval
        self.counters = Counters()
        self.cadence = {"log": Cadence(log_every), "eval": Cadence(eval_every), "checkpoint": Cadence(checkpoint_every)}
        self.tracker = EpisodeTracker(num_envs)
        self.pending: list[dict[str, float]] = []
        self.recent_returns: list[float] = []
        self.recent_lengths: list[int] = []  # the same episodes' lengths
        self.recent_evals: list[float] = []  # the last periodic eval returns (PBT's scores)
        self.rate = RateMeter()
        self.stop_requested: str | None = None
        self._t0 = time.perf_counter()
        self._wall_before = 0.0
        self._start_steps = 0  # env steps already done when this process started (resume)
        self.loop_state: dict[str, Any] | None = None  # set by resume; consumed by the loop
        self.save_buffer = True  # checkpoint.save_buffer: off-policy loops put their replay buffer in loop_state
        stop = config.get("stop") or {}  # stop conditions on the periodic evals (validated with the config)
        self.reward_threshold: float | None = stop.get("reward_threshold")
        self.patience: int = int(stop.get("patience") or 0)
        self.eval_hooks = list(EVAL_HOOKS.get())

    def initial_obs(self, envs: VecEnv) -> np.ndarray:
        """Fresh episodes, or, on resume, the exact env state and observation from the checkpoint."""
        state = self.loop_state
        if state is not None and restore_vector_env(envs, state.get("envs")):
            return state["obs"]
        obs, _ = envs.reset()
        return obs

    # -- counters --------------------------------------------------------------------------------
    @property
    def env_steps(self) -> int:
        return self.counters.env_steps

    @property
    def done(self) -> bool:
        return self.env_steps >= self.total_steps or self.stop_requested is not None

    @property
    def progress(self) -> float:
        return min(1.0, self.env_steps / self.total_steps)

    def wall_s(self) -> float:
        return self._wall_before + time.perf_counter() - self._t0

    def add_steps(self, n: int) -> None:
        self.counters.env_steps += n

    def record(self, metrics: dict[str, float] | Sequence[dict[str, float]]) -> None:
        """Update metrics from one ``algo.update`` (a population algorithm's list of one member's:
        a Session is one run); averaged into the next log line."""
        if not isinstance(metrics, dict):
            (metrics,) = metrics
        self.counters.updates += 1
        self._check_finite(metrics)
        self.pending.append(metrics)

    # -- the safe-point hook ---------------------------------------------------------------------
    def tick(self, loop_state: LoopStateFn) -> None:
        self.observe(loop_state)
        self.checkpoint_if_due(loop_state)

    def observe(self, loop_state: LoopStateFn) -> None:
        """The first half of :meth:`tick`: progress, the log line and the periodic evaluation when due (a
        population's PBT round runs between the halves, so a checkpoint at this step holds its outcome)."""
        steps = self.env_steps
        self._take_finished_episodes()
        recent = float(np.mean(self.recent_returns)) if self.recent_returns else None
        self.logger.progress(steps, self.rate.read(steps) if steps else 0.0, recent)
        if self.cadence["log"].due(steps):
            self._log_line()
        if self.cadence["eval"].due(steps) and steps < self.total_steps:
            self.evaluate(loop_state)
            self._check_stop()

    def checkpoint_if_due(self, loop_state: LoopStateFn) -> None:
        """The second half of :meth:`tick`: the periodic checkpoint when due."""
        steps = self.env_steps
        if self.cadence["checkpoint"].due(steps) and steps < self.total_steps:
            self.save(loop_state, periodic=True)

    def _take_finished_episodes(self) -> None:
        returns, lengths = self.tracker.drain()
        if returns:
            self.recent_returns = (self.recent_returns + returns)[-100:]
            self.recent_lengths = (self.recent_lengths + lengths)[-100:]

    def _log_line(self) -> None:
        wall = self.wall_s()
        line: dict[str, Any] = {"env_steps": self.env_steps, "updates": self.counters.updates, "wall_s": round(wall, 3),
                                "sps": round(self.env_steps_this_session / max(time.perf_counter() - self._t0, 1e-9), 1),
                                "episodes": self.tracker.episodes}
        if self.recent_returns:  # one window for both: the last LOG_WINDOW finished episodes
            window = self.recent_returns[-LOG_WINDOW:]
            line.update(episode_return_mean=float(np.mean(window)), episode_return_std=float(np.std(window)))
        if self.recent_lengths:
            line["episode_length_mean"] = float(np.mean(self.recent_lengths[-LOG_WINDOW:]))
        if self.pending:
            keys = dict.fromkeys(k for m in self.pending for k in m)  # every key any update reported, in order
            for k in keys:
                vals = [m[k] for m in self.pending if k in m and m[k] is not None]
                line[k] = float(np.mean(vals)) if vals else None
            self.pending = []
        self.logger.log(line)

    @property
    def env_steps_this_session(self) -> int:
        return self.env_steps - self._start_steps

    def _check_finite(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            # explained variance is NaN by definition when the returns have zero variance
            if isinstance(v, float) and not math.isfinite(v) and k != "explained_variance":
                raise NonFiniteError(f"non-finite {k}={v} in update {self.counters.updates} at env step {self.env_steps}")

    def check_transition(self, obs: np.ndarray, rewards: np.ndarray) -> None:
        """Stop on a NaN/inf observation or reward before it reaches the networks (cheap: one pass)."""
        if not (np.isfinite(obs).all() and np.isfinite(rewards).all()):
            what = "observation" if not np.isfinite(obs).all() else "reward"
            raise NonFiniteError(f"non-finite {what} from the env at env step {self.env_steps}")

    def evaluate(self, loop_state: LoopStateFn | None = None) -> tuple[float, float]:
        returns = self.evaluator(self.algo.act, self.deterministic_eval)
        mean, std = float(returns.mean()), float(returns.std())
        self.counters.last_eval = (mean, std)
        if self.env_steps < self.total_steps:  # periodic evals only: PBT scores members on them
            self.recent_evals = (self.recent_evals + [mean])[-RECENT_EVALS:]
        self.logger.log({"env_steps": self.env_steps, "wall_s": round(self.wall_s(), 3),
                         "eval_return_mean": mean, "eval_return_std": std})
        self.counters.evals_since_best += 1
        if mean > self.counters.best_eval_return:
            self.counters.best_eval_return = mean
            self.counters.evals_since_best = 0
            if loop_state is not None:
                # best.pt is for evaluation and picking a model: no replay buffer (last.pt has it)
                keep, self.save_buffer = self.save_buffer, False
                try:
                    self.checkpointer.save_best(self.checkpoint_state(loop_state()))
                finally:
                    self.save_buffer = keep
        return mean, std

    def _check_stop(self) -> None:
        """After a periodic eval: tell the hooks, then apply stop.reward_threshold and stop.patience."""
        assert self.counters.last_eval is not None  # called right after a periodic eval
        mean = self.counters.last_eval[0]
        reasons = [hook(self.env_steps, mean) for hook in self.eval_hooks]
        if self.stop_requested is not None:
            return
        if any(reasons):
            self.stop_requested = next(r for r in reasons if r)
        elif self.reward_threshold is not None and mean >= self.reward_threshold:
            self.stop_requested = "reward_threshold"
        elif self.patience and self.counters.evals_since_best >= self.patience:
            self.stop_requested = "patience"

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_state(self, loop_state: dict[str, Any] | LoopState) -> dict[str, Any]:
        if isinstance(loop_state, LoopState):  # a loop's live state: this run's all of it (a member's: sliced by its job)
            loop_state = member_loop_state(loop_state, 0, 1, self.save_buffer)
        algo_state = self.algo.state_dict()
        _assert_finite(algo_state, self.env_steps)
        c = self.counters
        return {
            "algo_name": self.algo_name,
            "config": self.config,
            "env_steps": self.env_steps,
            "algo": algo_state,
            "loop": loop_state,
            "session": {
                "counters": {**c.__dict__, "wall_s": self.wall_s()},
                "cadence": {k: v.next for k, v in self.cadence.items()},
                "tracker": self.tracker.state_dict(),
                "recent_returns": list(self.recent_returns),
                "recent_lengths": list(self.recent_lengths),
                "recent_evals": list(self.recent_evals),
                "wandb_id": self.logger.wandb_id,
            },
            "rng": rng_state(),
        }

    def save(self, loop_state: LoopStateFn, periodic: bool = False) -> None:
        self.checkpointer.save_last(self.checkpoint_state(loop_state()), periodic=periodic)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: algorithm, counters, cadences, episode stats, RNG, loop state."""
        self.algo.load_state_dict(state["algo"])
        s = state["session"]
        last_eval = s["counters"]["last_eval"]
        self.counters = Counters(**{**s["counters"], "last_eval": tuple(last_eval) if last_eval else None})
        self._wall_before = self.counters.wall_s
        for k, nxt in s["cadence"].items():
            self.cadence[k].next = nxt
        self.tracker.load_state_dict(s["tracker"])
        self.recent_returns = list(s["recent_returns"])
        self.recent_lengths = list(s.get("recent_lengths", []))
        self.recent_evals = list(s.get("recent_evals", []))
        self._start_steps = self.counters.env_steps
        self.rate = RateMeter(self.counters.env_steps)
        set_rng_state(state["rng"])
        self.loop_state = state["loop"]

    # -- the end ---------------------------------------------------------------------------------
    def finish(self, loop_state: LoopStateFn) -> dict[str, Any]:
        """Final evaluation, last checkpoint, summary.json contents.

        ``wall_s``/``sps`` cover training (periodic evals and checkpoints included), not the final
        evaluation, so they compare with libraries that time ``learn()`` alone."""
        if self.pending or self.tracker.finished_returns:
            self._take_finished_episodes()
            self._log_line()
        wall = self.wall_s()
        session_wall = time.perf_counter() - self._t0
        if self.stop_requested is None:
            mean, std = self.evaluate(loop_state)
        elif self.stop_requested in (*STOP_CONDITIONS, "pruned"):  # decided on the eval just made at this step
            assert self.counters.last_eval is not None
            mean, std = self.counters.last_eval
        else:  # preempted: checkpoint fast, report the last evaluation
            mean, std = self.counters.last_eval or (math.nan, math.nan)
        self.save(loop_state)
        return {
            "status": ("ok" if self.stop_requested in (None, *STOP_CONDITIONS)
                       else "pruned" if self.stop_requested == "pruned" else "stopped"),
            "stopped_by": self.stop_requested,
            "algo": self.algo_name,
            "env_id": self.config["env"]["id"],
            "seed": self.config["seed"],
            "env_steps": self.env_steps,
            "updates": self.counters.updates,
            "wall_s": round(wall, 3),
            "sps": round(self.env_steps_this_session / max(session_wall, 1e-9), 1),
            "eval_return_mean": mean,
            "eval_return_std": std,
            "best_eval_return": self.counters.best_eval_return,
            "episodes": self.tracker.episodes,
        }


def _assert_finite(obj: Any, step: int, path: str = "") -> None:
    """Refuse to checkpoint NaN/inf weights: the last good checkpoint must stay the last one written."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise NonFiniteError(f"non-finite values in {path or 'state'} at env step {step}; last good checkpoint kept")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k == "hypers":  # hyperparameters, not weights: inf stands for "off" (target_kl=null)
                continue
            _assert_finite(v, step, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _assert_finite(v, step, f"{path}[{i}]")

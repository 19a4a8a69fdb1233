"""Members of one job (issues 12, 22): K >= 1 runs that differ only in per-member keys, trained as ONE
process by the one driver (rlx/train/driver.py); a plain run is a job of one.

- :func:`member_keys`: per algorithm (its class's ``member_keys``), the dotted config keys that may differ
  within one population; :func:`population_group_key`: jobs with equal keys go into one population;
- :class:`PopulationSession`: the session a loop sees for a job, fanning out to one ordinary
  :class:`~rlx.train.session.Session` per member (its run dir, logger, evaluations, checkpoints);
- :class:`MemberView`, :class:`MemberEvaluations`: member k as one run's algorithm and evaluation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from rlx.algos.protocols import PopulationAlgorithm
from rlx.algos.registry import ALGOS
from rlx.config.typed import as_dict
from rlx.errors import UserError
from rlx.members import Members, member_state
from rlx.train.evaluation import ActFn, Evaluates, Evaluator
from rlx.train.faults import failed_summary
from rlx.train.loop_state import LoopState, join_loop_states, member_loop_state, restore_vector_env
from rlx.train.session import LoopStateFn, NonFiniteError, Session


class RoundHook(Protocol):
    """Told at every safe point, after the members' periodic evals and before their checkpoints (PBT)."""

    def after_evals(self, training: list[int], failed: list[int]) -> None: ...


# Keys every algorithm lets vary per member; then each algorithm's own (its class's ``member_keys``).
COMMON_MEMBER_KEYS = ("seed",)


def member_keys(algo_name: str) -> tuple[str, ...]:
    """The config keys that may differ within one population of ``algo_name`` (empty: no population support)."""
    return tuple(getattr(ALGOS[algo_name], "member_keys", ())) if algo_name in ALGOS else ()


# Keys that never change what is learned and may differ freely (run bookkeeping).
BOOKKEEPING_KEYS = ("logger.wandb.name", "logger.wandb.group", "logger.wandb.tags", "overwrite")


def population_algos() -> tuple[str, ...]:
    """Algorithms with population support."""
    return tuple(name for name in ALGOS if member_keys(name))


def check_population_algo(algo_name: str) -> None:
    if not member_keys(algo_name):
        raise UserError(f"hydra/launcher=population: algo={algo_name} has no population support yet; "
                        f"algorithms that do: {', '.join(population_algos())} (or use another launcher)")


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and k != "kwargs":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def population_group_key(cfg: DictConfig | Mapping[str, Any]) -> str:
    """What must be equal for two jobs to share a population: the resolved config without the
    algorithm's per-member keys (and run bookkeeping). Raises UserError for an algorithm without
    population support."""
    c = as_dict(cfg, resolve=True)
    c.pop("hydra", None)
    algo_name = str((c.get("algo") or {}).get("name"))
    check_population_algo(algo_name)
    skip = set(COMMON_MEMBER_KEYS) | set(member_keys(algo_name)) | set(BOOKKEEPING_KEYS)
    flat = _flatten(c)
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in skip))


def check_population(configs: Sequence[Mapping[str, Any]]) -> None:
    """One population: same group key; nothing that would mix members' data."""
    keys = {population_group_key(c) for c in configs}
    if len(keys) > 1:
        raise UserError("train_population: these jobs differ in keys that cannot vary within one population "
                        "(the population launcher splits them; see each algorithm's member_keys)")
    env = configs[0].get("env") or {}
    if len(configs) > 1 and env.get("normalize_reward"):
        raise UserError("env.normalize_reward=true is not supported in a population of more than one member yet "
                        "(its running statistics would mix members); use another launcher or env.normalize_reward=false")


class MemberView:
    """Member k of a population algorithm as one run's algorithm, for that member's :class:`Session`:
    its evaluation acts with member k's weights, its checkpoints hold member k's state in a plain run's
    layout (so ``rlx eval`` and ``rlx resume`` see an ordinary run). The population loads and steps all
    members at once, so :meth:`load_state_dict` is done by the population (see ``_train_population``)."""

    def __init__(self, algo: PopulationAlgorithm, k: int):
        self.algo, self.k = algo, k

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.algo.act_member(self.k, obs, deterministic)

    def state_dict(self) -> dict:
        return member_state(self.algo.state_dict(), self.k, self.algo.members.k)

    def load_state_dict(self, state: dict) -> None:
        """Nothing: the population has loaded every member's state, stacked, before the sessions restore."""


class MemberEvaluations:
    """Every member's evaluation in one pass: one :class:`~rlx.train.evaluation.Evaluator` whose block k is
    member k's eval envs (seeded as member k's own run's), acting with the population's stacked ``act``,
    so a round of K evaluations costs about one evaluation's env steps and forwards' Python overhead, not
    K (measured: a K=16 PPO CartPole population spent 3.9 s of 57 s in its members' final evaluations).

    Members evaluate at the same env steps (their sessions share the cadence and step together): the
    first member's request in a round (:meth:`new_round`) evaluates every member expected to ask, the
    others take their block's returns. Deterministic evaluation only (the default): stochastic actions
    would come from one stream for all members, so then each member evaluates on its own envs."""

    def __init__(self, algo: PopulationAlgorithm, evaluator: Evaluator):
        self.algo, self.evaluator = algo, evaluator
        self.expected: Callable[[], list[int]] = lambda: []
        self.results: dict[int, np.ndarray] = {}

    def new_round(self, expected: Callable[[], list[int]]) -> None:
        """Forget the last round's returns; ``expected``: the members that may evaluate in this one."""
        self.results, self.expected = {}, expected

    def returns_of(self, k: int) -> np.ndarray:
        if k not in self.results:
            self.results = self.evaluator.evaluate_blocks(self.algo.act, sorted({*self.expected(), k}))
        return self.results.pop(k)

    def member(self, k: int) -> Evaluates:
        def evaluate(act: ActFn, deterministic: bool = True) -> np.ndarray:
            assert deterministic, "a population evaluates together only deterministically"
            return self.returns_of(k)
        return evaluate


class _MemberTrackers:
    """The loop's episode tracker for K*N envs: member k's N envs feed member k's session's tracker.

    The members' running returns and lengths are views of two ``[K*N]`` arrays (bound by :meth:`bind`), so
    a step of every training member is two whole-array ops; only a member with a finished episode is
    visited (one ``EpisodeTracker.step`` per member and env step cost ~120 us per step at K=16)."""

    def __init__(self, population: PopulationSession):
        self.population = population
        self.returns: np.ndarray | None = None
        self.lengths: np.ndarray | None = None

    def bind(self) -> None:
        """Make every member's running returns and lengths views of the shared arrays, keeping their
        values (a resumed member continues its unfinished episodes, as its plain run does)."""
        sessions = self.population.sessions
        self.returns = np.concatenate([s.tracker.returns for s in sessions]).astype(np.float64)
        self.lengths = np.concatenate([s.tracker.lengths for s in sessions]).astype(np.int64)
        for k, s in enumerate(sessions):
            sl = self.population.envs_of(k)
            s.tracker.returns, s.tracker.lengths = self.returns[sl], self.lengths[sl]

    def step(self, rewards: np.ndarray, done: np.ndarray) -> None:
        pop = self.population
        training = pop.updating  # the members stepping in this rollout (synced at safe points)
        if self.returns is None or self.lengths is None:
            self.bind()
        assert self.returns is not None and self.lengths is not None
        if len(training) == len(pop.sessions):
            self.returns += rewards
            self.lengths += 1
        else:
            for k in training:
                sl = pop.envs_of(k)
                self.returns[sl] += rewards[sl]
                self.lengths[sl] += 1
        ended = np.flatnonzero(done)
        if not len(ended):
            return
        live = None if len(training) == len(pop.sessions) else set(training)
        for k in sorted({i // pop.n for i in ended.tolist()}):  # only members with a finished episode
            if live is None or k in live:
                pop.sessions[k].tracker.end_episodes(done[pop.envs_of(k)])

    @property
    def episodes(self) -> int:
        return sum(s.tracker.episodes for s in self.population.sessions)


class PopulationSession:
    """The :class:`~rlx.train.session.LoopSession` a loop sees for a job of K >= 1 members (a plain run is
    K=1): it fans the loop's calls out to one ordinary :class:`Session` per member (its own run dir,
    logger, evaluations, checkpoints), and writes member k's slice of the loop's state into member k's
    checkpoints (:func:`rlx.train.loop_state.member_loop_state`), so every member resumes exactly, alone or
    with the others.

    A member whose session is done (its step budget, a stop condition) or that failed (a non-finite loss,
    observation or weight) stops training: the algorithm masks its updates, its steps stop counting, its
    checkpoints stay as they were; the others go on. The loop ends when no member is training.
    ``members``: the algorithm's member layout (None: an algorithm without a member dimension, K=1)."""

    def __init__(self, algo: Any, members: Members | None, sessions: Sequence[Session], run_dirs: Sequence[Path],
                 num_envs: int, seeds: Sequence[int], evaluations: MemberEvaluations | None = None):
        self.algo, self.members, self.sessions, self.run_dirs = algo, members, list(sessions), list(run_dirs)
        self.evaluations = evaluations
        self.n, self.seeds = num_envs, list(seeds)
        self.failed: dict[int, str] = {}
        self.revived: dict[int, list[dict[str, Any]]] = {}  # PBT: failed members replaced by an exploit
        self.tracker = _MemberTrackers(self)
        self.updating = list(range(len(self.sessions)))  # the members the algorithm updates (its active mask)
        self.pbt: RoundHook | None = None  # population-based training (rlx.train.pbt), set by the driver
        self._loop_state = join_loop_states([s.loop_state for s in self.sessions]) \
            if any(s.loop_state is not None for s in self.sessions) else None

    # -- members ---------------------------------------------------------------------------------
    def training(self) -> list[int]:
        return [k for k, s in enumerate(self.sessions) if k not in self.failed and not s.done]

    def envs_of(self, k: int) -> slice:
        return slice(k * self.n, (k + 1) * self.n)

    def _sync_mask(self) -> None:
        """The members the algorithm updates = the members still training (the algorithm's active mask;
        rewritten only when that set changed). Synced after each safe point, so a member whose budget ran
        out during a rollout still gets that rollout's update recorded and its tick, as its plain run does."""
        training = self.training()
        if training == self.updating:
            return
        self.updating = training
        if self.members is not None:
            active = torch.zeros_like(self.members.active)
            active[training] = True
            self.members.active.copy_(active)

    def _fail(self, k: int, error: str) -> None:
        from rlx.train.faults import record_fault

        self.failed[k] = record_fault(self.run_dirs[k], error, self.sessions[k])
        if len(self.sessions) > 1:
            self.sessions[k].logger.message(f"rlx: member {k} ({self.run_dirs[k]}) failed: {self.failed[k]}; the others go on")
        if self.members is not None:
            _zero_non_finite(self.algo, self.members.k, k)
        self._sync_mask()

    def revive(self, k: int, note: dict[str, Any]) -> None:
        """Failed member k trains again (PBT has copied a healthy member into its rows): its summary will say
        so (``pbt_revived``: when, from whom, the error it had), its run dir goes on as a run that recovered."""
        error = self.failed.pop(k)
        self.revived.setdefault(k, []).append({**note, "error": error})
        self.sessions[k].logger.message(f"rlx: member {k} ({self.run_dirs[k]}) failed and is replaced by an exploit "
                                        f"of {note.get('from')}; it trains on")
        self._sync_mask()

    def _each(self, fn: Callable[[int], None], members: Sequence[int]) -> None:
        for k in list(members):
            if k in self.failed:
                continue
            try:
                fn(k)
            except NonFiniteError as e:
                self._fail(k, str(e))

    # -- LoopSession -----------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return self.sessions[0].config

    @property
    def loop_state(self) -> dict | None:
        """The members' checkpointed loop states joined (None: fresh, or some member has none)."""
        return self._loop_state

    @property
    def done(self) -> bool:
        return not self.training()

    @property
    def progress(self) -> float:
        live = self.training()
        return self.sessions[live[0] if live else 0].progress

    @property
    def env_steps(self) -> int:
        return max(s.env_steps for s in self.sessions)

    @property
    def stop_requested(self) -> str | None:
        return next((s.stop_requested for s in self.sessions if s.stop_requested in ("SIGINT", "SIGTERM")), None)

    @stop_requested.setter
    def stop_requested(self, reason: str | None) -> None:
        for s in self.sessions:
            if s.stop_requested is None:
                s.stop_requested = reason  # the members stop at the next safe point (their mask is synced there)

    def initial_obs(self, envs: Any) -> np.ndarray:
        """Resumed: the members' envs exactly as checkpointed, mid-episode. Fresh: member k's envs seeded as
        member k's plain run seeds them (``make_vec_env``: sub-env i with seed + i), then reset once more
        as a plain run's first observation is drawn (the session's reset after make_vec_env's seeded one)."""
        state = self._loop_state
        if state is not None and restore_vector_env(envs, state.get("envs")):
            obs = state["obs"]
        else:
            if state is None or len(self.sessions) > 1:
                envs.reset(seed=[seed + i for seed in self.seeds for i in range(self.n)])
            obs, _ = envs.reset()
        self.tracker.bind()
        return obs

    def check_transition(self, obs: np.ndarray, rewards: np.ndarray) -> None:
        if np.isfinite(obs).all() and np.isfinite(rewards).all():  # the usual case: one pass over all members
            return
        self._each(lambda k: self.sessions[k].check_transition(obs[self.envs_of(k)], rewards[self.envs_of(k)]),
                   self.training())

    def add_steps(self, n: int) -> None:
        # the members stepping in this rollout count every step of it, as a plain run counts its rollout
        # after a signal or past its budget (their mask changes at the next safe point)
        for k in self.updating:
            if k not in self.failed:
                self.sessions[k].add_steps(n // len(self.sessions))

    def record(self, metrics: dict[str, float] | Sequence[dict[str, float]]) -> None:
        per_member = [metrics] if isinstance(metrics, dict) else list(metrics)
        self._each(lambda k: self.sessions[k].record(per_member[k]), self.updating)

    def _member_state(self, loop_state: LoopStateFn, k: int) -> Callable[[], dict[str, Any]]:
        def state() -> dict[str, Any]:
            whole = loop_state()
            if not isinstance(whole, LoopState):
                return whole
            # the member's own session decides about its buffer (best.pt: none; checkpoint.save_buffer)
            return member_loop_state(whole, k, len(self.sessions), self.sessions[k].save_buffer)
        return state

    def tick(self, loop_state: LoopStateFn) -> None:
        if self.evaluations is not None:
            self.evaluations.new_round(self.training)
        ticking = list(self.updating)
        self._each(lambda k: self.sessions[k].observe(self._member_state(loop_state, k)), ticking)
        if self.pbt is not None:  # after this step's evals, before its checkpoints (which then hold the round)
            self.pbt.after_evals([k for k in ticking if k not in self.failed], sorted(self.failed))
        self._each(lambda k: self.sessions[k].checkpoint_if_due(self._member_state(loop_state, k)), ticking)
        self._sync_mask()

    def finish(self, loop_state: LoopStateFn) -> list[dict[str, Any]]:
        if self.evaluations is not None:  # a member's final evaluation: not after a stop (it reports its last)
            self.evaluations.new_round(lambda: [k for k, s in enumerate(self.sessions)
                                                if k not in self.failed and s.stop_requested is None])
        summaries: list[dict[str, Any]] = []
        for k, s in enumerate(self.sessions):
            if k not in self.failed:
                try:
                    summaries.append(s.finish(self._member_state(loop_state, k)))
                    if k in self.revived:
                        summaries[-1]["pbt_revived"] = self.revived[k]
                    continue
                except NonFiniteError as e:
                    self._fail(k, str(e))
            summaries.append(failed_summary(self.failed[k], s))
        return summaries


@torch.no_grad()
def _zero_non_finite(algo: Any, members: int, k: int) -> None:
    """Member k failed and is masked out of every update; its weights may be NaN: zero those entries of
    its rows of every network's ``[K, ...]`` parameters so that its (ignored) acting stays well-defined."""
    for module in vars(algo).values():
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.dim() and p.shape[0] == members:
                    p[k].nan_to_num_(0.0, 0.0, 0.0)



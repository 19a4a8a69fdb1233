"""Populations (issue 12): jobs that differ only in per-member keys, trained as ONE process.

API used by the launcher (hydra_plugins/rlx_population_launcher) and ``rlx resume``:
- :func:`member_keys`: per algorithm (its class's ``member_keys``), the dotted config keys that may differ within one population;
- :func:`population_group_key`: jobs with equal keys go into one population;
- :func:`train_population`: train a population into its members' run dirs (one ordinary run dir each);
- :func:`resume_population`: continue a population from its members' last checkpoints.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlx.algos.protocols import PopulationAlgorithm
from rlx.algos.registry import ALGOS
from rlx.config.typed import as_dict
from rlx.errors import RunFault, UserError
from rlx.members import member_state, stack_states
from rlx.train.evaluation import ActFn, Evaluates, Evaluator
from rlx.train.session import NonFiniteError, Session

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


def train_population(cfgs: Sequence[DictConfig | Mapping[str, Any]], run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Train ``cfgs`` (one population: equal :func:`population_group_key`) as one process, member k into
    ``run_dirs[k]`` (an ordinary run dir each: config.yaml, metrics.jsonl, checkpoints/, summary.json).
    Returns the members' summaries in order (a member that failed: status "failed"). Bad input:
    UserError before anything runs or is written."""
    from rlx.rundir.lock import RunDirLock, claim_fresh
    from rlx.train.run import parse_settings

    if not cfgs or len(cfgs) != len(run_dirs):
        raise ValueError(f"train_population: {len(cfgs)} configs for {len(run_dirs)} run dirs")
    configs = [as_dict(c, resolve=True) for c in cfgs]
    for c in configs:
        c.pop("hydra", None)
    settings = [parse_settings(c) for c in configs]
    check_population(configs)
    dirs = [Path(d) for d in run_dirs]
    with contextlib.ExitStack() as locks:
        for d, st in zip(dirs, settings, strict=True):
            locks.enter_context(RunDirLock(d))
            claim_fresh(d, st.run.overwrite)
        return _train_population(configs, settings, dirs, None)


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
        """Zero every member's running episodes and make them views of the shared arrays."""
        sessions, n = self.population.sessions, self.population.n
        self.returns = np.zeros(len(sessions) * n)
        self.lengths = np.zeros(len(sessions) * n, dtype=np.int64)
        for k, s in enumerate(sessions):
            sl = self.population.envs_of(k)
            s.tracker.returns, s.tracker.lengths = self.returns[sl], self.lengths[sl]

    def step(self, rewards: np.ndarray, done: np.ndarray) -> None:
        pop = self.population
        training = pop.training()
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
    """The :class:`~rlx.train.session.LoopSession` a loop sees for a population: it fans the loop's calls
    out to one ordinary :class:`Session` per member (its own run dir, logger, evaluations, checkpoints).

    A member whose session is done (its step budget, a stop condition) or that failed (a non-finite loss,
    observation or weight) stops training: the algorithm masks its updates, its steps stop counting, its
    checkpoints stay as they were; the others go on. The loop ends when no member is training."""

    def __init__(self, algo: PopulationAlgorithm, sessions: Sequence[Session], run_dirs: Sequence[Path], num_envs: int,
                 seeds: Sequence[int] | None, evaluations: MemberEvaluations | None = None):
        self.algo, self.sessions, self.run_dirs = algo, list(sessions), list(run_dirs)
        self.evaluations = evaluations
        self.n, self.seeds = num_envs, seeds
        self.failed: dict[int, str] = {}
        self.tracker = _MemberTrackers(self)
        self.save_buffer = False  # see _member_loop_state
        self._synced: list[int] | None = None  # the training members the algorithm's mask was last set to

    # -- members ---------------------------------------------------------------------------------
    def training(self) -> list[int]:
        return [k for k, s in enumerate(self.sessions) if k not in self.failed and not s.done]

    def envs_of(self, k: int) -> slice:
        return slice(k * self.n, (k + 1) * self.n)

    def _sync_mask(self) -> None:
        """The algorithm's active mask = the members still training (rewritten only when that set changed:
        this runs after every env step)."""
        training = self.training()
        if training == self._synced:
            return
        self._synced = training
        active = torch.zeros_like(self.algo.members.active)
        active[training] = True
        self.algo.members.active.copy_(active)

    def _fail(self, k: int, error: str) -> None:
        from rlx.train.run import record_fault

        self.failed[k] = record_fault(self.run_dirs[k], error, self.sessions[k])
        self.sessions[k].logger.message(f"rlx: member {k} ({self.run_dirs[k]}) failed: {self.failed[k]}; the others go on")
        _zero_non_finite(self.algo, k)
        self._sync_mask()

    def _each(self, fn: Callable[[int], None]) -> None:
        for k in self.training():
            try:
                fn(k)
            except NonFiniteError as e:
                self._fail(k, str(e))
        self._sync_mask()

    # -- LoopSession -----------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return self.sessions[0].config

    @property
    def loop_state(self) -> dict | None:
        return None  # members' loop states are not restored: a resumed population starts new episodes

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
                s.stop_requested = reason
        self._sync_mask()

    def initial_obs(self, envs: Any) -> np.ndarray:
        """New episodes, member k's envs seeded as member k's plain run would seed them (seed + i)."""
        seeds = None if self.seeds is None else [seed + i for seed in self.seeds for i in range(self.n)]
        obs, _ = envs.reset(seed=seeds)
        self.tracker.bind()  # a resumed member's unfinished episodes are not continued: do not count them
        return obs

    def check_transition(self, obs: np.ndarray, rewards: np.ndarray) -> None:
        if np.isfinite(obs).all() and np.isfinite(rewards).all():  # the usual case: one pass over all members
            return
        self._each(lambda k: self.sessions[k].check_transition(obs[self.envs_of(k)], rewards[self.envs_of(k)]))

    def add_steps(self, n: int) -> None:
        for k in self.training():
            self.sessions[k].add_steps(n // len(self.sessions))

    def record(self, metrics: dict[str, float] | Sequence[dict[str, float]]) -> None:
        per_member = [metrics] if isinstance(metrics, dict) else list(metrics)
        self._each(lambda k: self.sessions[k].record(per_member[k]))

    def _member_loop_state(self, loop_state: Callable[[], dict[str, Any]], k: int) -> Callable[[], dict[str, Any]]:
        def state() -> dict[str, Any]:
            # member k's observations; no env snapshot, replay buffer or reward statistics (they are the
            # population's, not separable per member yet): a resumed population starts new episodes and an
            # off-policy one refills its buffer before training again
            whole = loop_state()
            return {**{key: None for key in whole}, "obs": whole["obs"][self.envs_of(k)]}
        return state

    def tick(self, loop_state: Callable[[], dict[str, Any]]) -> None:
        if self.evaluations is not None:
            self.evaluations.new_round(self.training)
        self._each(lambda k: self.sessions[k].tick(self._member_loop_state(loop_state, k)))

    def finish(self, loop_state: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
        if self.evaluations is not None:  # a member's final evaluation: not after a stop (it reports its last)
            self.evaluations.new_round(lambda: [k for k, s in enumerate(self.sessions)
                                                if k not in self.failed and s.stop_requested is None])
        summaries: list[dict[str, Any]] = []
        for k, s in enumerate(self.sessions):
            if k not in self.failed:
                try:
                    summaries.append(s.finish(self._member_loop_state(loop_state, k)))
                    continue
                except NonFiniteError as e:
                    self._fail(k, str(e))
            summaries.append({"status": "failed", "error": self.failed[k], "algo": s.algo_name,
                              "env_id": s.config["env"]["id"], "seed": s.config["seed"], "env_steps": s.env_steps})
        return summaries


@torch.no_grad()
def _zero_non_finite(algo: PopulationAlgorithm, k: int) -> None:
    """Member k failed and is masked out of every update; its weights may be NaN: zero those entries of
    its rows of every network's ``[K, ...]`` parameters so that its (ignored) acting stays well-defined."""
    members = algo.members.k
    for module in vars(algo).values():
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.dim() and p.shape[0] == members:
                    p[k].nan_to_num_(0.0, 0.0, 0.0)


def _train_population(configs: list[dict], settings: list[Any], run_dirs: list[Path],
                      resumes: list[dict] | None) -> list[dict[str, Any]]:
    """The population itself, in dirs this process has locked (``resumes``: the members' loaded last.pt)."""
    from rlx.envs.make import make_vec_env
    from rlx.train.run import (
        LOOPS,
        OS_FAULTS,
        eval_seed,
        prepare_process,
        record_fault,
        run_session,
        stop_on_signals,
        write_summary,
    )

    s0, k = settings[0], len(settings)
    for config, d in zip(configs, run_dirs, strict=True):
        (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        _write_json(d / "population.json", {"members": [os.path.relpath(m, d) for m in run_dirs]})
    device, spec = prepare_process(s0)
    algo_cls: Any = ALGOS[s0.algo_name]
    algo = algo_cls(spec, [s.algo for s in settings], s0.network, device, seeds=[s.run.seed for s in settings])
    if resumes:
        algo.load_state_dict(stack_states([r["algo"] for r in resumes]))
    exit_code = 1
    with contextlib.ExitStack() as stack:
        envs = make_vec_env(s0.env.id, k * s0.env.num_envs, s0.run.seed, s0.env.kwargs, s0.env.max_episode_steps,
                            batched=s0.env.batched, wrappers=s0.env.wrappers, train_wrappers=s0.env.train_wrappers)
        stack.callback(envs.close)
        evaluations = None
        if s0.eval.deterministic:
            evaluator = Evaluator(s0.env.id, s0.eval.episodes, [eval_seed(s.run.seed) for s in settings], device,
                                  s0.env.kwargs, s0.env.max_episode_steps, wrappers=s0.env.wrappers)
            stack.callback(evaluator.close)
            evaluations = MemberEvaluations(algo, evaluator)
        sessions = [run_session(s, c, d, MemberView(algo, i), spec, device, resumes[i] if resumes else None, stack,
                                lambda: exit_code, progress=i == 0,
                                evaluator=None if evaluations is None else evaluations.member(i))
                    for i, (s, c, d) in enumerate(zip(settings, configs, run_dirs, strict=True))]
        if resumes:
            for session, state in zip(sessions, resumes, strict=True):
                session.restore(state)
        sessions[0].logger.message(f"rlx: population of {k} in one process: {', '.join(str(d) for d in run_dirs)}")
        population = PopulationSession(algo, sessions, run_dirs, s0.env.num_envs,
                                       None if resumes else [s.run.seed for s in settings], evaluations)
        try:
            with stop_on_signals(population, sessions[0].logger):  # type: ignore[arg-type]
                summaries = importlib.import_module(LOOPS[algo.loop]).run(algo, envs, population, device)
        except OSError as e:
            if e.errno not in OS_FAULTS:
                raise
            error = f"{e.strerror or e} ({getattr(e, 'filename', None) or run_dirs[0]})"
            raise RunFault("; ".join(record_fault(d, error, s) for d, s in zip(run_dirs, sessions, strict=True))) from None
        for session, d, summary in zip(sessions, run_dirs, summaries, strict=True):
            summary["device"] = str(device)
            summary["population"] = k
            write_summary(d, summary)
            session.logger.summary(summary)
        exit_code = 0
        if population.stop_requested in ("SIGINT", "SIGTERM"):
            sessions[0].logger.message(f"rlx: stopped by {population.stop_requested}; checkpoints saved. Continue the "
                                       f"population with: rlx resume {run_dirs[0]}")
        return summaries
    raise AssertionError("unreachable")  # pragma: no cover


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def population_members(run_dir: str | Path) -> list[Path] | None:
    """The member dirs of the population ``run_dir`` belongs to (None: a plain run)."""
    marker = Path(run_dir) / "population.json"
    if not marker.is_file():
        return None
    return [Path(os.path.normpath(Path(run_dir) / m)) for m in json.loads(marker.read_text())["members"]]


def resume_population(run_dirs: Sequence[str | Path], overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Continue a population from its members' ``checkpoints/last.pt`` (each with its own config plus the
    same safe overrides ``rlx resume`` takes), every member locked first."""
    from rlx.rundir.checkpoint import load_checkpoint
    from rlx.rundir.lock import RunDirLock
    from rlx.train.run import parse_settings, resumed_config, truncate_metrics

    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not (d / "checkpoints" / "last.pt").is_file():
            raise UserError(f"{d}: no checkpoints/last.pt to resume this population member from")
    with contextlib.ExitStack() as locks:
        for d in dirs:
            locks.enter_context(RunDirLock(d))
        states, configs = [], []
        for d in dirs:
            state = load_checkpoint(d / "checkpoints" / "last.pt")
            states.append(state)
            configs.append(resumed_config(state["config"], overrides))
        settings = [parse_settings(c) for c in configs]
        check_population(configs)
        if all(s.run.total_steps <= st["env_steps"] for s, st in zip(settings, states, strict=True)):
            raise UserError(f"{dirs[0]}: every member already trained its total_steps; pass a larger total_steps=... "
                            "to extend the population")
        for d, st in zip(dirs, states, strict=True):
            truncate_metrics(d / "metrics.jsonl", st["env_steps"])
        return _train_population(configs, settings, dirs, states)


def resume_at(path: str | Path, overrides: Sequence[str] = ()) -> list[dict[str, Any]] | None:
    """``rlx resume PATH`` for populations: a member's run dir resumes its whole population (said so on
    stderr); a sweep dir resumes each of its populations with an unfinished member, one after another.
    None: PATH is no population (a plain run: ``rlx.train.run.resume``)."""
    import sys

    path = Path(path)
    members = population_members(path)
    if members is not None:
        print(f"rlx: {path} is one member of a population of {len(members)}: resuming the whole population "
              f"({', '.join(str(m) for m in members)})", file=sys.stderr)
        return resume_population(members, overrides)
    if not path.is_dir() or (path / "config.yaml").is_file():
        return None
    populations: list[list[Path]] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        found = population_members(sub)
        if found is not None and found not in populations:
            populations.append(found)
    if not populations:
        return None
    summaries: list[dict[str, Any]] = []
    for members in populations:
        if all(_finished(m) for m in members):
            continue
        print(f"rlx: resuming a population of {len(members)}: {', '.join(m.name for m in members)}", file=sys.stderr)
        summaries += resume_population(members, overrides)
    if not summaries:
        raise UserError(f"{path}: every population in this sweep dir has finished; nothing to resume")
    return summaries


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") in ("ok", "pruned")
    except (OSError, ValueError):
        return False

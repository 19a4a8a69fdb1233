"""Population-based training inside one process (issue 25; Jaderberg et al. 2017, Ray Tune's
``PopulationBasedTraining``): every ``pbt.interval`` env steps, the members in the bottom ``quantile`` of the
ranking by score copy a member of the top quantile (exploit) and perturb the copied hyperparameters (explore).

A population already holds its members as rows of stacked ``[K, ...]`` tensors, so an exploit is a row copy
of the algorithm's state (weights, target networks, optimizer state, observation statistics and the current
hyperparameters, :attr:`rlx.members.Members.hypers`) — no checkpoint goes through disk or an object store.
What a member keeps of its own: its random streams (:class:`rlx.members.MemberRandom`: a copy must not
replay its source's actions), its envs and their running episodes (no episode is cut), its replay buffer
(its transitions stay valid off-policy data; copying K buffers would cost more than the population's
updates), its run dir and its history (metrics, best.pt).

A round runs at a safe point after the members' periodic evals and before their checkpoints
(:meth:`rlx.train.population.PopulationSession.tick`), so a checkpoint holds the round's outcome and the round
count (``Members.pbt_rounds``); each round's random draws come from ``(seed, round)`` alone, so a resumed
population makes the same decisions as an uninterrupted one. Lineage: ``pbt.jsonl`` next to the member dirs,
one line per round (scores, who copied whom, hyperparameters before and after); each member's metrics get
``pbt_round`` and ``hp/<key>`` lines (curves in TensorBoard / W&B / ``rlx plot``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import Tensor

from rlx.config.schema import PBTConfig
from rlx.errors import UserError
from rlx.members import Members
from rlx.train.session import Session

LINEAGE = "pbt.jsonl"

# [low, high] of each mutable hyperparameter unless pbt.bounds says otherwise (values beyond these are rarely
# useful and some break the algorithm: gamma >= 1, clip_eps <= 0, tau > 1)
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "lr": (1e-6, 1e-1), "critic_lr": (1e-6, 1e-1), "gamma": (0.8, 0.9999), "gae_lambda": (0.5, 1.0),
    "clip_eps": (0.02, 0.5), "ent_coef": (0.0, 0.1), "vf_coef": (0.05, 2.0), "max_grad_norm": (0.05, 10.0),
    "target_kl": (1e-3, 0.5), "tau": (1e-4, 1.0), "noise_std": (0.0, 1.0), "target_policy_noise": (0.0, 1.0),
    "target_noise_clip": (0.0, 1.0), "target_entropy_scale": (0.05, 1.0), "max_kl": (1e-4, 0.1), "cg_damping": (1e-4, 1.0),
    "line_search_shrink": (0.1, 0.95), "rms_alpha": (0.9, 0.9999),
}
# member keys that cannot change mid-run: switches, and values used only when the networks are built
NOT_MUTABLE = ("anneal_lr", "anneal_clip", "log_std_init", "alpha", "noise_std")
# a state entry every member keeps: its own random streams
OWN_STATE = ("random",)


def mutable_keys(algo_name: str) -> list[str]:
    """The ``algo.*`` keys PBT may mutate for ``algo_name``: its per-member numbers (``member_keys``)."""
    from rlx.train.population import member_keys

    return [k for k in member_keys(algo_name) if k.startswith("algo.") and k[len("algo."):] not in NOT_MUTABLE]


def _value(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def check_pbt(cfg: PBTConfig, algo_name: str, configs: Sequence[Mapping[str, Any]], eval_every: int) -> dict[str, tuple[float, float]]:
    """Bad input as one line before anything runs; returns each mutating key's bounds."""
    if len(configs) < 2:
        raise UserError("pbt.enabled=true needs a population of at least 2 members: `rlx pbt <grid>` "
                        "(or rlx sweep <grid> hydra/launcher=population pbt.enabled=true)")
    allowed = mutable_keys(algo_name)
    if not allowed:
        raise UserError(f"pbt.enabled=true: algo={algo_name} has no member dimension (no population support)")
    if eval_every <= 0 or cfg.interval % eval_every:
        raise UserError(f"pbt.interval={cfg.interval}: must be a multiple of eval.every={eval_every} "
                        "(members are scored on their periodic evals)")
    if cfg.interval < cfg.ready_evals * eval_every:
        raise UserError(f"pbt.interval={cfg.interval} is shorter than pbt.ready_evals={cfg.ready_evals} evals of "
                        f"eval.every={eval_every}: a member would be scored on evals from before its last exploit")
    if not cfg.perturb:
        raise UserError("pbt.perturb=[]: give at least one factor, e.g. [0.8, 1.2]")
    keys = list(cfg.keys) or [k for k in allowed if len({repr(_value(c, k)) for c in configs}) > 1]
    if not keys:
        raise UserError(f"pbt: nothing to mutate (the members differ only in seed); set pbt.keys, e.g. "
                        f"pbt.keys=[{allowed[0]}]; mutable for {algo_name}: {', '.join(allowed)}")
    for key in keys:
        if key not in allowed:
            raise UserError(f"pbt.keys: {key} cannot mutate; mutable for {algo_name}: {', '.join(allowed)}")
    unknown = sorted(set(cfg.bounds) - set(keys))
    if unknown:
        raise UserError(f"pbt.bounds.{unknown[0]}: not a mutating key ({', '.join(keys)})")
    bounds: dict[str, tuple[float, float]] = {}
    for key in keys:
        name = key[len("algo."):]
        given = cfg.bounds.get(key)
        if given is not None:
            if not (isinstance(given, (list, tuple)) and len(given) == 2 and all(isinstance(v, (int, float)) for v in given)
                    and given[0] < given[1]):
                raise UserError(f"pbt.bounds.{key}={given!r}: expected [low, high] with low < high")
            lo, hi = float(given[0]), float(given[1])
        else:
            lo, hi = DEFAULT_BOUNDS.get(name, (0.0, math.inf))
        for k, c in enumerate(configs):
            v = _value(c, key)
            if v is None:  # e.g. target_kl=null: nothing to perturb
                raise UserError(f"pbt.keys: {key} is null for member {k}; give it a value or leave it out of pbt.keys")
            if not lo <= float(v) <= hi:
                raise UserError(f"pbt.bounds.{key}=[{lo:g}, {hi:g}] excludes member {k}'s initial value {key}={v}")
        bounds[key] = (lo, hi)
    return bounds


def check_pbt_settings(s: Any, configs: Sequence[Mapping[str, Any]]) -> None:
    """A job's ``pbt.*`` (``s``: its first member's :class:`~rlx.train.run.Settings`), before anything is written."""
    if s.pbt is None:
        return
    if s.pbt.enabled and s.pbt.replay:
        raise UserError("pbt.enabled=true and pbt.replay: a replay is a plain run following a schedule; choose one")
    if s.pbt.enabled:
        check_pbt(s.pbt, s.algo_name, configs, s.eval.every)
    elif s.pbt.replay:
        if len(configs) > 1:
            raise UserError("pbt.replay: a schedule is replayed by one plain run (rlx train ... pbt.replay=FILE)")
        read_schedule(s.pbt.replay, s.algo_name)


def explore(value: float, low: float, high: float, rng: np.random.Generator, resample_probability: float,
            perturb: Sequence[float]) -> float:
    """One explored value: with ``resample_probability`` drawn anew in [low, high] (log-uniformly when the
    range spans a decade or more of positive values, as learning rates do), else ``value`` times one of the
    ``perturb`` factors; clipped to the bounds either way."""
    if rng.random() < resample_probability:
        if low > 0 and math.isfinite(high) and high / low >= 10:
            new = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            new = rng.uniform(low, high if math.isfinite(high) else max(2 * value, low + 1.0))
    else:
        new = value * float(perturb[int(rng.integers(len(perturb)))])
    return float(min(max(new, low), high))


def copy_member_rows(state: Any, src: Sequence[int], dst: Sequence[int], members: int) -> Any:
    """``state`` with rows ``dst[i]`` of every member-stacked tensor (leading dim K) replaced by rows
    ``src[i]``; every other row, and entries in :data:`OWN_STATE`, as they were (copies, never in place)."""
    if isinstance(state, Tensor):
        if state.dim() == 0 or state.shape[0] != members:
            return state
        out = state.clone()
        out[list(dst)] = state[list(src)]
        return out
    if isinstance(state, dict):
        return {k: v if k in OWN_STATE else copy_member_rows(v, src, dst, members) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(copy_member_rows(v, src, dst, members) for v in state)
    return state


class PopulationBasedTraining:
    """The rounds of one population (:class:`rlx.train.population.RoundHook`)."""

    def __init__(self, cfg: PBTConfig, bounds: Mapping[str, tuple[float, float]], algo: Any, members: Members,
                 sessions: Sequence[Session], run_dirs: Sequence[Path], seed: int):
        self.cfg, self.bounds, self.algo, self.members = cfg, dict(bounds), algo, members
        self.sessions, self.run_dirs, self.seed = list(sessions), [Path(d) for d in run_dirs], seed
        self.names = [d.name for d in self.run_dirs]
        self.revive: Callable[[int, dict[str, Any]], None] | None = None  # the job's: a failed member trains again
        self.lineage = Path(os.path.commonpath([str(d.parent.resolve()) for d in self.run_dirs])) / LINEAGE
        missing = [k for k in self.bounds if k[len("algo."):] not in members.hypers]
        if missing:  # an algorithm that declares a member key but does not read it from Members.hyper
            raise UserError(f"pbt.keys: {missing[0]} is not a live hyperparameter of this algorithm yet")
        self._drop_rounds_after(self.rounds)
        if all(s.env_steps == 0 for s in self.sessions):  # the curves of rlx plot --metric hp/... start at 0
            for k, s in enumerate(self.sessions):
                s.logger.log({"env_steps": 0, "pbt_round": 0, **{f"hp/{key}": v for key, v in self.hyperparameters(k).items()}})

    @property
    def rounds(self) -> int:
        return int(self.members.pbt_rounds.max())

    def hyperparameters(self, k: int) -> dict[str, float]:
        """Member k's current values (float32 in the algorithm: 7 significant digits are all there is)."""
        return {key: float(f"{float(self.members.hypers[key[len('algo.'):]][k, 0]):.7g}") for key in self.bounds}

    def after_evals(self, training: list[int], failed: list[int]) -> None:
        if not training:
            return
        # members step together (a revived member may lag: it did not count steps while failed)
        steps = max(self.sessions[k].env_steps for k in training)
        if steps < (self.rounds + 1) * self.cfg.interval or steps >= max(self.sessions[k].total_steps for k in training):
            return
        n = self.cfg.ready_evals
        scores = {k: float(np.mean(self.sessions[k].recent_evals[-n:])) for k in training
                  if len(self.sessions[k].recent_evals) >= n}
        self.run_round(self.rounds + 1, steps, scores, failed)

    def run_round(self, number: int, steps: int, scores: Mapping[int, float], failed: Sequence[int] = ()) -> list[dict[str, Any]]:
        """Round ``number``: rank ``scores`` (member -> score), the bottom quantile copies the top one; a
        ``failed`` member (NaN) is replaced first, by a copy of a top member, and trains again."""
        rng = np.random.default_rng([self.seed, number, 0x9B7])
        ranked = sorted(scores, key=lambda k: (-scores[k], k))
        q = max(1, math.ceil(len(ranked) * self.cfg.quantile)) if len(ranked) >= 2 else 0
        top = ranked[:q] if ranked else []
        bottom = [*failed, *ranked[len(ranked) - q:]] if top and q else []
        sources = [int(top[int(rng.integers(len(top)))]) for _ in bottom]
        before = {k: self.hyperparameters(k) for k in range(self.members.k)}
        if bottom:
            state = self.algo.state_dict()
            self.algo.load_state_dict(copy_member_rows(state, sources, bottom, self.members.k))
        exploits = []
        for dst, src in zip(bottom, sources, strict=True):
            after = {}
            for key, (lo, hi) in self.bounds.items():
                after[key] = explore(before[src][key], lo, hi, rng, self.cfg.resample_probability, self.cfg.perturb)
                self.members.hypers[key[len("algo."):]][dst, 0] = after[key]
            exploits.append({"member": self.names[dst], "from": self.names[src], "before": before[dst],
                             "copied": before[src], "after": after, **({"failed": True} if dst in failed else {})})
            if dst in failed and self.revive is not None:
                self.revive(dst, {"pbt_round": number, "env_steps": steps, "from": self.names[src]})
        if bottom:
            self.algo.hyperparameters_changed()
        self.members.pbt_rounds.fill_(number)
        copied = dict(zip(bottom, sources, strict=True))
        for k in scores:
            line: dict[str, Any] = {"env_steps": self.sessions[k].env_steps, "pbt_round": number,
                                    **{f"hp/{key}": v for key, v in self.hyperparameters(k).items()}}
            if k in copied:
                line["pbt_copied_from"] = copied[k]
            self.sessions[k].logger.log(line)
        record = {"round": number, "env_steps": steps, "members": self.names,
                  "scores": {self.names[k]: v for k, v in scores.items()}, "exploits": exploits,
                  "hyperparameters": {self.names[k]: self.hyperparameters(k) for k in range(self.members.k)}}
        with self.lineage.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if exploits:
            self.sessions[0].logger.message(
                f"rlx: pbt round {number} at env step {steps:,}: " + ", ".join(f"{e['member']} <- {e['from']}" for e in exploits))
        return exploits

    def _drop_rounds_after(self, rounds: int) -> None:
        """A resumed population goes on from its checkpoint's round: later lines of this population (written
        after that checkpoint, by the process that stopped) are dropped, so the file stays one history."""
        if not self.lineage.is_file():
            return
        lines = self.lineage.read_text().splitlines()
        kept = [ln for ln in lines if not _later_round_of(ln, self.names, rounds)]
        if len(kept) != len(lines):
            tmp = self.lineage.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(ln + "\n" for ln in kept))
            os.replace(tmp, self.lineage)


def _later_round_of(line: str, names: list[str], rounds: int) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return True  # a torn last line
    return sorted(record.get("members", [])) == sorted(names) and int(record.get("round", 0)) > rounds


def read_lineage(path: Path) -> list[dict[str, Any]]:
    """``pbt.jsonl``'s rounds (a sweep dir or the file itself)."""
    path = path / LINEAGE if path.is_dir() else path
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def member_schedule(path: Path, member: str) -> list[dict[str, Any]]:
    """A member's hyperparameters per round, from the lineage: ``[{"env_steps", "round", <key>: value}]``."""
    return [{"round": r["round"], "env_steps": r["env_steps"], **r["hyperparameters"][member]}
            for r in read_lineage(path) if member in r.get("hyperparameters", {})]


def read_schedule(path: str | Path, algo_name: str) -> list[dict[str, Any]]:
    """A schedule to replay (``pbt.replay``): a JSON list of ``{"env_steps": N, "algo.<key>": value, ...}``,
    as ``rlx report`` writes for a PBT sweep's winner; bad files and keys are one line."""
    p = Path(path)
    try:
        entries = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"pbt.replay={path}: cannot read a schedule ({e.__class__.__name__}: {e})") from None
    allowed = mutable_keys(algo_name)
    if not isinstance(entries, list) or not all(isinstance(x, dict) and isinstance(x.get("env_steps"), int) for x in entries):
        raise UserError(f"pbt.replay={path}: expected a JSON list of {{\"env_steps\": N, \"algo.lr\": value, ...}}")
    for x in entries:
        bad = [k for k in x if k != "env_steps" and k not in allowed]
        if bad:
            raise UserError(f"pbt.replay={path}: {bad[0]} cannot change during a run of algo={algo_name}; "
                            f"allowed: {', '.join(allowed)}")
    return sorted(entries, key=lambda x: x["env_steps"])


class ScheduleReplay:
    """Ray's "PBT replay": a plain run whose hyperparameters follow a PBT member's schedule (``pbt.replay``),
    each entry applied at the first safe point at or after its env step (where PBT applied it)."""

    def __init__(self, schedule: Sequence[Mapping[str, Any]], algo: Any, members: Members, session: Session):
        self.schedule, self.algo, self.members, self.session = list(schedule), algo, members, session
        missing = sorted({k for x in self.schedule for k in x if k != "env_steps" and k[len("algo."):] not in members.hypers})
        if missing:
            raise UserError(f"pbt.replay: {missing[0]} is not a live hyperparameter of this algorithm yet")
        # a resumed replay: what applies up to its checkpoint is in the checkpoint's hyperparameters already
        self.next = sum(1 for x in self.schedule if 0 < x["env_steps"] <= session.env_steps)
        if session.env_steps == 0:
            self._apply([x for x in self.schedule if x["env_steps"] == 0])
            self.next = sum(1 for x in self.schedule if x["env_steps"] == 0)

    def _apply(self, entries: Sequence[Mapping[str, Any]]) -> None:
        for x in entries:
            for key, value in x.items():
                if key != "env_steps":
                    self.members.hypers[key[len("algo."):]][0, 0] = float(value)
        if entries:
            self.algo.hyperparameters_changed()

    def after_evals(self, training: list[int], failed: list[int]) -> None:
        steps = self.session.env_steps
        due = [x for x in self.schedule[self.next:] if x["env_steps"] <= steps]
        self.next += len(due)
        self._apply(due)

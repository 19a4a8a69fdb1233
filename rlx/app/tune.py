"""`rlx tune`: hyperparameter search with Optuna, pruning on the runs' periodic deterministic evals.

Data flow: command-line overrides -> (search space, fixed overrides, ``tune.*`` settings), all validated
before the first trial -> an Optuna study in persistent storage (SQLite in the study dir by default) ->
each trial is an ordinary rlx run in ``STUDY_DIR/trials/<number>/`` whose periodic evals are reported to
the pruner through the shared session (:data:`rlx.train.session.EVAL_HOOKS`); a pruned trial ends as a
finished run with ``status: pruned`` and keeps its curve (``tune.trial_seeds=N``: a trial is N runs, its
objective their mean, and ``tune.pruner=wilcoxon`` prunes it between seeds) -> a trial stopped by Ctrl-C/SIGTERM
is continued from its checkpoint by ``--resume`` (Optuna ends the stopped record; a continuation trial takes
over its run dir and its reported evals) -> the top-k completed trials are re-run over
``tune.confirm_seeds`` fresh seeds in ``STUDY_DIR/confirm/`` and judged with rlx.analysis.report's statistics ->
``best.yaml`` (a ``# @package _global_`` preset) and ``tune.md`` with the verdict.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml

from rlx.config.typed import build, param
from rlx.errors import UserError

STUDY_FILE = "tune.yaml"  # what a --resume needs: search space, fixed overrides, tune settings
# Only these may change on --resume (they do not change what a trial is).
RESUMABLE = ("trials", "n_jobs", "pruner", "startup_trials", "warmup_evals", "top_k", "confirm_seeds", "population")
MIN_OPTUNA = (4, 0)  # what CI tests (the tune and test extras); hydra-optuna-sweeper (rlx[optuna]) pins optuna<3
INTERVAL_TAGS = ("log", "int")  # tag(log, interval(...)), tag(int, interval(...)); Hydra accepts any tag name


@dataclass
class TuneConfig:
    trials: int = param(20, ge=1, help="trials in the study (a resumed study runs until it has this many)")
    pruner: Literal["median", "hyperband", "wilcoxon", "none"] = param(
        "median", help="stops hopeless trials: median/hyperband on a trial's evals, wilcoxon between its seeds")
    sampler: Literal["tpe", "random"] = param("tpe")
    startup_trials: int = param(5, ge=0, help="finished trials before the median pruner prunes and TPE models")
    warmup_evals: int = param(1, ge=0, help="periodic evals a trial always runs before it may be pruned "
                                            "(wilcoxon: seeds, at least 2)")
    n_jobs: int = param(1, ge=1, help="trials (and confirmation runs) in parallel processes")
    storage: str | None = param(None, help="Optuna storage URL (default sqlite:///STUDY_DIR/study.db)")
    study_name: str | None = param(None, help="Optuna study name (default: the study dir's name)")
    seed: int = param(0, ge=0, help="sampler seed")
    top_k: int = param(3, ge=1, help="best completed trials re-run over confirm_seeds seeds")
    confirm_seeds: int = param(3, ge=0, help="fresh seeds per confirmation (0: no confirmation)")
    trial_seeds: int = param(1, ge=1, help="runs per trial (seed, seed+1, ...); the objective is their mean final eval return")
    population: int = param(1, ge=1, help="trials asked at once and trained as one population (a member is its trial's "
                                          "run); a pruned trial's member is masked, the others go on")


def check_tune(t: TuneConfig) -> None:
    """What the pruner needs from a trial: a learning curve (one seed) or paired per-seed results (several)."""
    if t.population > 1 and t.trial_seeds > 1:
        raise UserError(f"tune.population={t.population} trains each trial as one member (one seed); with tune.trial_seeds="
                        f"{t.trial_seeds} use tune.population=1")
    if t.pruner == "wilcoxon" and t.trial_seeds < 2:
        raise UserError("tune.pruner=wilcoxon compares a trial with the best one seed by seed; give tune.trial_seeds >= 2 "
                        "(e.g. tune.trial_seeds=5)")
    if t.pruner in ("median", "hyperband") and t.trial_seeds > 1:
        raise UserError(f"tune.pruner={t.pruner} prunes a one-seed trial on its learning curve; with tune.trial_seeds="
                        f"{t.trial_seeds} use tune.pruner=wilcoxon (prunes between seeds) or tune.pruner=none")


@dataclass
class Dimension:
    """One searched key: an Optuna distribution built from a Hydra sweep override."""

    key: str
    kind: Literal["float", "int", "categorical"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: list[str] | None = None  # override strings ('0.1', '[64,64]'), typed again by Hydra

    def suggest(self, trial: Any) -> str:
        if self.kind == "float":
            return repr(trial.suggest_float(self.key, self.low, self.high, log=self.log))
        if self.kind == "int":
            return str(trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log))
        assert self.choices is not None  # set for categorical dimensions
        return trial.suggest_categorical(self.key, list(self.choices))

    def end_points(self) -> str:
        """The values that validate the whole range: both ends, or every choice."""
        if self.kind == "categorical":
            assert self.choices is not None
            return ",".join(self.choices)
        fmt = (lambda x: str(int(x))) if self.kind == "int" else repr
        return f"{fmt(self.low)},{fmt(self.high)}"


@dataclass
class Plan:
    """Everything a study needs, as written to STUDY_DIR/tune.yaml."""

    fixed: list[str]  # overrides every trial shares (algo=ppo, total_steps=...)
    space: list[Dimension]
    tune: TuneConfig
    study_dir: Path
    timestamped: bool = False  # the default dir: another study started the same second gets name-1

    @property
    def storage_url(self) -> str:
        return self.tune.storage or f"sqlite:///{(self.study_dir / 'study.db').resolve()}"

    @property
    def study_name(self) -> str:
        return self.tune.study_name or self.study_dir.resolve().name

    def save(self) -> None:
        data = {"fixed": self.fixed, "space": [asdict(d) for d in self.space], "tune": asdict(self.tune)}
        (self.study_dir / STUDY_FILE).write_text(yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, study_dir: Path, tune_overrides: dict[str, Any]) -> "Plan":
        path = study_dir / STUDY_FILE
        if not path.is_file():
            raise UserError(f"--resume {study_dir}: no {STUDY_FILE} (not an rlx tune study dir)")
        data = yaml.safe_load(path.read_text())
        for key in tune_overrides:
            if key not in RESUMABLE:
                raise UserError(f"tune.{key} cannot change on --resume; allowed: {', '.join('tune.' + k for k in RESUMABLE)}")
        tune = build(TuneConfig, {**data["tune"], **tune_overrides}, "tune")
        check_tune(tune)
        plan = cls(list(data["fixed"]), [Dimension(**d) for d in data["space"]], tune, study_dir)
        if "population" in tune_overrides:  # a study resumed as a population: its space must fit one
            check_population_space(plan.fixed, plan.space, tune.population)
        return plan


# --------------------------------------------------------------------------- parsing and validation


def yaml_value(text: str) -> Any:
    """A command-line value, typed as Hydra types it (1e-3 -> float, true -> bool, [64,64] -> list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"x={text}").value()
    except HydraException:
        return yaml.safe_load(text) if text != "" else ""


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("rlx tune needs Optuna: pip install 'rlx[tune]'") from None
    except Exception as e:  # e.g. an Optuna 2.x that fails on import against a newer SQLAlchemy
        raise UserError(f"rlx tune: Optuna fails to import ({type(e).__name__}: {e}); pip install 'rlx[tune]'") from None
    version = tuple(int(x) if x.isdigit() else 0 for x in optuna.__version__.split(".")[:2])
    if version < MIN_OPTUNA:
        import importlib.metadata as md

        try:
            sqlalchemy = f", SQLAlchemy {md.version('sqlalchemy')}"
        except md.PackageNotFoundError:
            sqlalchemy = ""
        raise UserError(f"rlx tune needs Optuna >= {'.'.join(map(str, MIN_OPTUNA))}, found Optuna {optuna.__version__}{sqlalchemy} "
                        "(hydra-optuna-sweeper, rlx[optuna], pins optuna<3); pip install 'rlx[tune]' in a venv without rlx[optuna]")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # rlx reports each trial itself
    return optuna


@contextlib.contextmanager
def _experimental_ok() -> Iterator[None]:
    """Optuna features rlx chose on purpose (heartbeats, fail_stale_trials, WilcoxonPruner) warn that they are
    experimental; that warning is for rlx, not its user. Warnings from anything else still show."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def split_tune_args(args: list[str]) -> tuple[list[str], dict[str, Any], str | None]:
    """(run overrides, tune.* settings, hydra.sweep.dir) from the command line."""
    from rlx.config.compose import split_args

    overrides, flags = split_args(args)
    if flags:
        raise UserError(f"rlx tune: unsupported flag {flags[0]}; pass Hydra overrides, tune.KEY=VALUE and --resume STUDY_DIR")
    run, settings, study_dir = [], {}, None
    for o in overrides:
        key, sep, value = o.partition("=")
        if key.startswith("tune."):
            if not sep:
                raise UserError(f"'{o}': expected tune.KEY=VALUE")
            settings[key[len("tune."):]] = yaml_value(value)
        elif key == "hydra.sweep.dir":
            study_dir = value.strip("'\"")
        elif key.lstrip("+~").startswith("hydra"):
            raise UserError(f"'{o}': rlx tune runs its trials itself; only hydra.sweep.dir (the study dir) applies "
                            "(tune.n_jobs sets the parallelism)")
        else:
            run.append(o)
    return run, settings, study_dir


def parse_space(overrides: list[str]) -> tuple[list[str], list[Dimension]]:
    """Hydra's override grammar -> (fixed overrides, searched dimensions).

    ``interval(a,b)`` is a float range (an int range when the key's default is an int, or with
    ``tag(int, ...)``), ``tag(log, interval(a,b))`` log-uniform; ``choice(...)``, ``range(...)`` and
    ``a,b,c`` are categorical."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from rlx.config.compose import compose_config, friendly_hydra_error, override_text

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(friendly_hydra_error(str(e))) from None
    fixed = [override_text(o) for o in parsed if not o.is_sweep_override()]
    base = None
    space: list[Dimension] = []
    for o in parsed:
        if not o.is_sweep_override():
            continue
        key = o.get_key_element()
        if key.lstrip("+") == "seed":
            raise UserError(f"'{o.input_line}': seed is not a hyperparameter; trials use seed={{run seed}} and "
                            "the winners are confirmed over tune.confirm_seeds fresh seeds")
        value = o.value()
        tags = sorted(getattr(value, "tags", None) or ())  # Hydra's grammar takes any name: check them here
        if tags and not isinstance(value, IntervalSweep):
            raise UserError(f"'{o.input_line}': tag({tags[0]}) applies to interval() only; choice, range and a,b,c take no tag")
        if any(t not in INTERVAL_TAGS for t in tags):
            raise UserError(f"'{o.input_line}': unknown tag '{next(t for t in tags if t not in INTERVAL_TAGS)}'; rlx tune "
                            "knows tag(log, interval(a,b)) (log-uniform) and tag(int, interval(a,b)) (integers)")
        if isinstance(value, IntervalSweep):
            start, end = value.start, value.end
            assert start is not None and end is not None  # interval(a, b): the parser sets both ends
            if base is None:
                base = compose_config(fixed)
            default = OmegaConf.select(base, key.lstrip("+"), default=None)
            is_int = "int" in value.tags or (isinstance(default, int) and not isinstance(default, bool))
            if is_int and (start != int(start) or end != int(end)):
                raise UserError(f"'{o.input_line}': {key} takes integers; give integer interval ends")
            if start >= end:
                raise UserError(f"'{o.input_line}': interval start must be below its end")
            if "log" in value.tags and start <= 0:
                raise UserError(f"'{o.input_line}': a log interval needs a start > 0")
            space.append(Dimension(key, "int" if is_int else "float", float(start), float(end),
                                   log="log" in value.tags))
        else:
            space.append(Dimension(key, "categorical", choices=list(o.sweep_string_iterator())))
    if not space:
        raise UserError("rlx tune: no search space; give at least one swept key, e.g. 'algo.lr=tag(log,interval(1e-4,3e-3))', "
                        "'algo.clip_eps=interval(0.1,0.3)' or algo.n_epochs=5,10,20")
    keys = [d.key for d in space]
    if len(set(keys)) != len(keys):
        raise UserError(f"rlx tune: a key is searched twice: {', '.join(sorted(k for k in keys if keys.count(k) > 1))}")
    return fixed, space


def plan_study(args: list[str]) -> Plan:
    """Parse and validate everything the command line describes (every searched value), before any trial."""
    from rlx.app.sweep import resolve_sweep_dir
    from rlx.app.validate import validate

    run, settings, study_dir = split_tune_args(args)
    tune = build(TuneConfig, settings, "tune")
    check_tune(tune)
    fixed, space = parse_space(run)
    validate([*fixed, *(f"{d.key}={d.end_points()}" for d in space)])
    check_population_space(fixed, space, tune.population)
    if study_dir is None:  # timestamped like a sweep dir; made unique when the study starts
        return Plan(fixed, space, tune, Path(f"{resolve_sweep_dir(fixed)}_tune"), timestamped=True)
    path = Path(study_dir)
    if (path / STUDY_FILE).exists():
        raise UserError(f"{path} already holds a study; continue it with `rlx tune --resume {path}` or choose another hydra.sweep.dir")
    return Plan(fixed, space, tune, path)


def check_population_space(fixed: list[str], space: list[Dimension], population: int) -> None:
    """tune.population=K > 1: trials share one population, so the algorithm needs a member dimension and every
    searched key must be one its members may differ in (its ``member_keys``)."""
    if population <= 1:
        return
    from omegaconf import OmegaConf

    from rlx.config.compose import compose_config
    from rlx.train.population import COMMON_MEMBER_KEYS, member_keys, population_algos

    algo = str(OmegaConf.select(compose_config(fixed), "algo.name"))
    keys = member_keys(algo)
    if not keys:
        raise UserError(f"tune.population={population}: algo={algo} has no member dimension; algorithms that do: "
                        f"{', '.join(population_algos())} (or tune.population=1)")
    allowed = (*COMMON_MEMBER_KEYS, *keys)
    for d in space:
        if d.key.lstrip("+") not in allowed:
            raise UserError(f"tune.population={population}: {d.key} cannot differ within one population of {algo}; keys "
                            f"that can: {', '.join(k for k in keys)} (or tune.population=1)")


# --------------------------------------------------------------------------- the study

STOPPED = "stopped"      # user attr of a trial stopped by SIGINT/SIGTERM (Optuna ends it as FAIL): the signal
CONTINUES = "continues"  # user attr of the trial that continues a stopped one (its run dir, evals, checkpoint): that number
_signals: list[str] = []  # signals this process was stopped by (exit status, messages, skipping queued runs)
_pool_now: list[Any] = []  # the process pool, whose workers a signal to the main process is passed on to


def _make_study(plan: Plan, worker: int = 0, load: bool = False) -> Any:
    optuna = _require_optuna()
    t = plan.tune
    storage = plan.storage_url
    with _experimental_ok():
        if storage.startswith(("sqlite", "postgresql", "mysql")):  # heartbeats: see _sqlite_storage
            if storage.startswith("sqlite"):
                storage = _sqlite_storage(optuna, storage, plan.study_dir / ".study.lock")
            else:
                storage = optuna.storages.RDBStorage(storage, heartbeat_interval=10, grace_period=30)
        existing = 0
        if load:
            try:
                existing = len(optuna.load_study(study_name=plan.study_name, storage=storage).trials)
            except KeyError:
                raise UserError(f"no study {plan.study_name!r} in {plan.storage_url}") from None
        seed = t.seed + 1000 * worker + existing  # parallel workers and resumed studies must not replay one sequence
        # constant_liar: trials asked together (a population, parallel jobs) do not all sample the same point
        sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials,
                                              constant_liar=t.population > 1 or t.n_jobs > 1)
                   if t.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))
        if t.pruner == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=t.warmup_evals + 1)
        elif t.pruner == "hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, t.warmup_evals), max_resource="auto")
        elif t.pruner == "wilcoxon":  # steps are seeds: paired with the best trial's results on the same seeds
            pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=max(2, t.warmup_evals))
        else:
            pruner = optuna.pruners.NopPruner()
        return optuna.create_study(storage=storage, study_name=plan.study_name, direction="maximize",
                                   sampler=sampler, pruner=pruner, load_if_exists=True)


def _sqlite_storage(optuna: Any, url: str, lock: Path) -> Any:
    """An RDBStorage on SQLite whose taking of a queued (WAITING) trial is atomic across processes: SQLite has no
    SELECT ... FOR UPDATE, so two workers could both take the continuation of one stopped trial; a file lock
    (``STUDY_DIR/.study.lock``) serializes that check-and-set."""
    import fcntl

    class LockedSQLiteStorage(optuna.storages.RDBStorage):
        def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
            if state.name != "RUNNING":
                return super().set_trial_state_values(trial_id, state, values)
            with open(lock, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
                return super().set_trial_state_values(trial_id, state, values)

    # heartbeats: a trial whose process was killed is marked failed (not left running) on the next start
    return LockedSQLiteStorage(url, heartbeat_interval=10, grace_period=30, engine_kwargs={"connect_args": {"timeout": 60}})


def _is_stopped(t: Any) -> bool:
    return t.state.name == "FAIL" and STOPPED in t.user_attrs


def _held(study: Any) -> list[Any]:
    """The trials that count towards ``tune.trials``: every one but the records of stopped trials (each is
    continued by a trial of its own, queued on --resume)."""
    return [t for t in study.get_trials(deepcopy=False) if not _is_stopped(t)]


def _waiting(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _continue_stopped(study: Any) -> list[tuple[Any, int]]:
    """Queue a continuation for every stopped trial without one; (stopped trial, its continuation's number)."""
    trials = study.get_trials(deepcopy=False)
    continued = {t.user_attrs.get(CONTINUES) for t in trials}
    for t in trials:
        if _is_stopped(t) and t.number not in continued:
            study.enqueue_trial(dict(t.params), user_attrs={CONTINUES: t.number})
    by = {t.user_attrs[CONTINUES]: t.number for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"
          and CONTINUES in t.user_attrs}
    return [(t, by[t.number]) for t in trials if t.number in by]


def _write_overrides(run_dir: Path, overrides: list[str]) -> None:
    """What Hydra writes for a multirun job, so `rlx report` / `rlx plot` treat the run like any other."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def _study_dir_of(run_dir: Path) -> Path:
    """The study a trial's run (trials/N/, trials/N/seedS/) or a confirmation run (confirm/NAME/) belongs to."""
    return next((p.parent for p in run_dir.parents if p.name == "trials"), run_dir.parent.parent)


def _trial_config(overrides: list[str], run_dir: Path) -> Any:
    """What `rlx train OVERRIDES` trains (an unfitting preset dropped), in its study's W&B group."""
    from rlx.config.compose import compose_run_config

    cfg, _ = compose_run_config(overrides)
    cfg.logger.wandb.group = cfg.logger.wandb.group or run_dir.parent.parent.name  # one W&B group per study
    return cfg


def _run(overrides: list[str], run_dir: Path, hook: Any = None, resume: bool = False) -> dict[str, Any]:
    """One ordinary rlx run (composed like `rlx train OVERRIDES`) in ``run_dir``, or (``resume``) the stopped
    run there continued from its last checkpoint, as `rlx resume RUN_DIR` does; ``hook`` sees its evals.
    rlx tune's call into training for one run (:func:`_run_members` for a population)."""
    from rlx.train.driver import CONTINUE_HINT, resume as resume_run, train
    from rlx.train.run import write_summary
    from rlx.train.session import EVAL_HOOKS

    cfg = None if resume else _trial_config(overrides, run_dir)
    token = EVAL_HOOKS.set((hook,) if hook else ())
    hint = CONTINUE_HINT.set(f"rlx tune --resume {_study_dir_of(run_dir)}")  # a stopped trial goes on with its study
    try:
        return resume_run(run_dir) if cfg is None else train(cfg, run_dir)
    except Exception as e:  # a diverging or crashing trial fails alone; the study goes on
        if not (run_dir / "summary.json").is_file():
            write_summary(run_dir, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    finally:
        EVAL_HOOKS.reset(token)
        CONTINUE_HINT.reset(hint)


def _summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _start_or_continue(overrides: list[str], run_dir: Path, shown: list[str], hook: Any = None) -> dict[str, Any]:
    """``run_dir``'s run to its end: a finished run is kept as it is, a stopped one continues from its checkpoint,
    anything else (no run yet, a failed one, one stopped before its first checkpoint) starts afresh."""
    what = _what_to_run(run_dir, shown)
    return _summary(run_dir) if what == "finished" else _run(overrides, run_dir, hook, resume=what == "resume")


def _what_to_run(run_dir: Path, shown: list[str]) -> Literal["finished", "resume", "fresh"]:
    """How ``run_dir``'s run goes on: kept as it is (finished), continued from its checkpoint (stopped), or started
    afresh (no run yet, a failed one, one stopped before its first checkpoint: the dir cleared, its overrides
    written as Hydra writes a multirun job's)."""
    status = _summary(run_dir).get("status")
    if status in ("ok", "pruned"):
        return "finished"
    if status == "stopped" and (run_dir / "checkpoints" / "last.pt").is_file():
        return "resume"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    _write_overrides(run_dir, shown)
    return "fresh"


def _base_seed(plan: Plan) -> int:
    """The seed the fixed overrides give (the config default unless one of them sets it)."""
    from omegaconf import OmegaConf

    from rlx.config.compose import compose_config

    return int(OmegaConf.select(compose_config(plan.fixed), "seed"))


def _take_over(plan: Plan, trial: Any, run_dir: Path) -> int:
    """For a trial that continues a stopped one: its run dir (moved to this trial's number) and the evals it had
    reported, reported again so the pruner sees the whole curve. Returns how many (0 for a new trial)."""
    number = trial.user_attrs.get(CONTINUES)
    if number is None:
        return 0
    old = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == number)
    src = Path(old.user_attrs.get("run_dir", plan.study_dir / "trials" / str(number)))
    if src.exists() and src.resolve() != run_dir.resolve():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(src, run_dir)
    for step, value in sorted(old.intermediate_values.items()):
        trial.report(value, step)
    _say(f"trial {trial.number}: continues trial {number} (stopped by {old.user_attrs[STOPPED]}) in {run_dir}"
         + (f" after {len(old.intermediate_values)} reported eval(s)" if old.intermediate_values else ""))
    return max(old.intermediate_values, default=0)


def _stopped(plan: Plan, trial: Any, summary: dict[str, Any], label: str) -> None:
    sig = str(summary.get("stopped_by") or "SIGINT")
    _signals.append(sig)
    trial.set_user_attr(STOPPED, sig)
    steps = f" at env step {summary['env_steps']:,}" if isinstance(summary.get("env_steps"), int) else ""
    _say(f"trial {trial.number}: stopped by {sig}{steps}, checkpoint saved ({label}); `rlx tune --resume "
         f"{plan.study_dir}` continues this trial from it (not `rlx resume`, which would finish the run outside the study)")
    raise KeyboardInterrupt


def _trial(plan: Plan, trial: Any) -> float:
    """One trial: its run (or ``tune.trial_seeds`` runs), reported to the pruner; the objective value."""
    optuna = _require_optuna()
    params = {d.key: d.suggest(trial) for d in plan.space}
    shown = [f"{k}={v}" for k, v in params.items()]
    label = " ".join(shown)
    run_dir = plan.study_dir / "trials" / str(trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    reported = _take_over(plan, trial, run_dir)
    n = plan.tune.trial_seeds
    if n == 1:
        summary = _start_or_continue([*plan.fixed, *shown], run_dir, shown, _pruning_hook(trial, reported))
        status = summary.get("status")
        if status == "stopped":  # SIGINT/SIGTERM: stop the study; --resume continues this trial
            _stopped(plan, trial, summary, label)
        _say_outcome(trial, summary, label)
        if status == "pruned":
            raise optuna.TrialPruned()
        if status != "ok":
            trial.set_user_attr("error", str(summary.get("error")))
            return math.nan  # Optuna records NaN as a failed trial
        return float(summary["eval_return_mean"])
    first = _base_seed(plan)
    returns: list[float] = []
    for i in range(n):  # step = seed number: paired across trials (the Wilcoxon pruner's premise)
        seed = first + i
        summary = _start_or_continue([*plan.fixed, *shown, f"seed={seed}"], run_dir / f"seed{seed}", [*shown, f"seed={seed}"])
        status = summary.get("status")
        if status == "stopped":
            _stopped(plan, trial, summary, f"seed {seed}; {label}")
        if status != "ok":
            _say(f"trial {trial.number}: failed (seed {seed}): {summary.get('error')}  {label}")
            trial.set_user_attr("error", f"seed {seed}: {summary.get('error')}")
            return math.nan
        returns.append(float(summary["eval_return_mean"]))
        if i + 1 > reported:
            trial.report(returns[-1], i + 1)
            if i + 1 < n and trial.should_prune():
                _say(f"trial {trial.number}: pruned after {i + 1} of {n} seeds, mean eval return "
                     f"{sum(returns) / len(returns):.2f}  {label}")
                raise optuna.TrialPruned()
    mean = sum(returns) / n
    _say(f"trial {trial.number}: ok, mean eval return {mean:.2f} over seeds {first}..{first + n - 1} "
         f"({', '.join(f'{r:.1f}' for r in returns)})  {label}")
    return mean


def _pruning_hook(trial: Any, reported: int) -> Any:
    """A one-seed trial's periodic evals reported to the pruner; "pruned" stops its run (a member: masked)."""
    evals = {"n": reported}

    def report(env_steps: int, value: float) -> str | None:
        evals["n"] += 1  # step = eval number: aligned across trials whatever their batch sizes
        trial.report(value, evals["n"])
        return "pruned" if trial.should_prune() else None

    return report


def _say_outcome(trial: Any, summary: dict[str, Any], label: str) -> None:
    status = summary.get("status")
    _say(f"trial {trial.number}: {status}" + (f", eval return {summary['eval_return_mean']:.2f} at {summary['env_steps']:,} steps"
                                              if status in ("ok", "pruned") else f": {summary.get('error')}") + "  " + label)


def _run_members(fixed: list[str], members: list[tuple[list[str], Path, Any]]) -> list[dict[str, Any]]:
    """Runs trained as populations, each to its end as :func:`_start_or_continue` takes one: (overrides shown,
    run dir, eval hook) each; a finished run is kept, stopped ones continue from their checkpoints as one job,
    the rest start afresh as another (member k = that run as it would train alone). Their summaries, in order."""
    from rlx.train.driver import CONTINUE_HINT, resume_job, train_job
    from rlx.train.run import write_summary

    summaries: dict[Path, dict[str, Any]] = {}
    resumed: list[tuple[list[str], Path, Any]] = []
    fresh: list[tuple[list[str], Path, Any]] = []
    for shown, run_dir, hook in members:
        what = _what_to_run(run_dir, shown)
        if what == "finished":
            summaries[run_dir] = _summary(run_dir)
        else:
            (resumed if what == "resume" else fresh).append((shown, run_dir, hook))
    hint = CONTINUE_HINT.set(f"rlx tune --resume {_study_dir_of(members[0][1])}")  # stopped members go on with their study
    try:
        for group, resume in ((resumed, True), (fresh, False)):
            if not group:
                continue
            dirs, hooks = [d for _, d, _ in group], [h for _, _, h in group]
            try:
                if resume:
                    outcomes = resume_job(dirs, skip_broken=True, eval_hooks=hooks)
                else:
                    cfgs = [_trial_config([*fixed, *shown], d) for shown, d, _ in group]
                    outcomes = train_job(cfgs, dirs, eval_hooks=hooks)
                if len(outcomes) == len(dirs):
                    summaries.update(zip(dirs, outcomes, strict=True))
            except Exception as e:  # the whole job failed (K=1, or a fault before any member trained)
                for d in dirs:
                    if not (d / "summary.json").is_file():
                        write_summary(d, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
    finally:
        CONTINUE_HINT.reset(hint)
    return [summaries.get(d) or _summary(d) or {"status": "failed", "error": "no summary"} for _, d, _ in members]


def _population_round(plan: Plan, study: Any, count: int) -> None:
    """``tune.population``: ask ``count`` trials at once (Optuna's ask/tell; queued continuations of stopped
    trials first), train them as one population (member k = trial k's ordinary run in trials/<number>/, as
    it would run alone), prune a trial by masking its member (its envs step on, its updates stop), then tell
    each outcome."""
    from optuna.trial import TrialState

    with warnings.catch_warnings():  # rlx runs the heartbeat study.optimize would (_heartbeats), for asked trials
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        trials = [study.ask() for _ in range(count)]
    with _heartbeats(study, trials):
        members, labels = [], []
        for trial in trials:
            shown = [f"{d.key}={d.suggest(trial)}" for d in plan.space]
            run_dir = plan.study_dir / "trials" / str(trial.number)
            trial.set_user_attr("run_dir", str(run_dir))
            members.append((shown, run_dir, _pruning_hook(trial, _take_over(plan, trial, run_dir))))
            labels.append(" ".join(shown))
        _say(f"population of {count}: trial(s) {', '.join(str(t.number) for t in trials)}")
        summaries = _run_members(plan.fixed, members)
        stopped = None
        for trial, summary, label in zip(trials, summaries, labels, strict=True):
            status = summary.get("status")
            if status == "stopped":
                stopped = str(summary.get("stopped_by") or "SIGINT")
                trial.set_user_attr(STOPPED, stopped)
                study.tell(trial, state=TrialState.FAIL)
                continue
            _say_outcome(trial, summary, label)
            if status == "ok":
                study.tell(trial, float(summary["eval_return_mean"]))
            elif status == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                trial.set_user_attr("error", str(summary.get("error")))
                study.tell(trial, state=TrialState.FAIL)
    if stopped is not None:
        _signals.append(stopped)
        _say(f"trial(s) {', '.join(str(t.number) for t in trials)}: stopped by {stopped}, checkpoints saved; `rlx tune "
             f"--resume {plan.study_dir}` continues them from there (not `rlx resume`, which would finish the runs "
             "outside the study)")
        raise KeyboardInterrupt


@contextlib.contextmanager
def _heartbeats(study: Any, trials: list[Any]) -> Iterator[None]:
    """What ``study.optimize`` does for each of its trials, for trials asked by hand: a heartbeat, so that the
    trials of a killed process are failed (not left running) on the next start."""
    with contextlib.ExitStack() as stack:
        try:
            from optuna.storages._heartbeat import get_heartbeat_thread  # internal; in Optuna 3.x to 5.x
        except ImportError:  # pragma: no cover - a later Optuna moved it: trials then go without heartbeats
            yield
            return
        for trial in trials:
            stack.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))  # type: ignore[arg-type]
        yield


def _objective(plan: Plan) -> Any:
    def objective(trial: Any) -> float:
        try:
            return _trial(plan, trial)
        except KeyboardInterrupt:  # a signal outside a run (between runs, while sampling): stopped all the same
            if STOPPED not in trial.user_attrs:
                with contextlib.suppress(Exception):
                    trial.set_user_attr(STOPPED, _signals[-1] if _signals else "SIGINT")
            raise

    return objective


def _say(text: str) -> None:
    print(f"rlx tune: {text}", file=sys.stderr, flush=True)


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM outside a run: pass it on to the pool's workers (in a process group of their own, so only
    this process gets a terminal's Ctrl-C) and stop here as Ctrl-C does. During a run, the run's own handler
    takes over: it finishes the step and checkpoints."""
    _signals.append(signal.Signals(signum).name)
    for pool in _pool_now:
        for pid in list(getattr(pool, "_processes", None) or {}):
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
    raise KeyboardInterrupt


def _catch_signals() -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_signal)


def _trial_worker(study_dir: str, worker: int = 0) -> None:
    """Run trials until the study holds ``tune.trials`` of them and none is queued (several of these may
    share one storage)."""
    import torch

    _catch_signals()
    plan = Plan.load(Path(study_dir), {})
    torch.set_num_threads(1)
    study = _make_study(plan, worker, load=True)
    if plan.tune.population > 1:
        while (count := min(plan.tune.population, _waiting(study) + max(0, plan.tune.trials - len(_held(study))))) > 0:
            with _experimental_ok():
                optuna = _require_optuna()
                optuna.storages.fail_stale_trials(study)  # as study.optimize does before each trial
            _population_round(plan, study, count)
        return
    objective = _objective(plan)
    while _waiting(study) or len(_held(study)) < plan.tune.trials:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)


@contextlib.contextmanager
def _pool(n_jobs: int) -> Iterator[Any]:
    """One pool of ``n_jobs`` spawned processes for the trials and then the confirmation runs (None: in-process)."""
    if n_jobs <= 1:
        yield None
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn"), initializer=os.setpgrp) as pool:
        _pool_now.append(pool)
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # queued runs never start after a stop
            raise
        finally:
            _pool_now.remove(pool)


def _parallel(fn: Any, jobs: list[tuple], pool: Any) -> list[Any]:
    if pool is None or len(jobs) <= 1:
        return [fn(*a) for a in jobs]
    return [f.result() for f in [pool.submit(fn, *a) for a in jobs]]


# --------------------------------------------------------------------------- confirmation and verdict


def _top_trials(study: Any, k: int) -> list[Any]:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None
            and math.isfinite(t.value)]
    return sorted(done, key=lambda t: (-t.value, t.number))[:k]


def _params_overrides(plan: Plan, trial: Any) -> list[str]:
    return [f"{d.key}={trial.params[d.key]}" if d.kind == "categorical" else
            f"{d.key}={trial.params[d.key]!r}" for d in plan.space]


def confirm(plan: Plan, study: Any, base_seed: int, pool: Any = None) -> tuple[list, Any, dict[str, str] | None]:
    """Re-run the top-k trials over fresh seeds; (report rows, verdict, winning overrides)."""
    from rlx.analysis.report import aggregate, compare_top, load_sweep, write_report

    top = _top_trials(study, plan.tune.top_k)
    if not top or plan.tune.confirm_seeds == 0:
        return [], None, None
    # never a search seed (seed .. seed + trial_seeds - 1), whose lucky draws picked the top trials: no selection bias
    seeds = [base_seed + plan.tune.trial_seeds + i for i in range(plan.tune.confirm_seeds)]
    root = plan.study_dir / "confirm"
    # (fixed, searched params + seed, run dir): the report groups runs by the params, seeds aggregated
    jobs = [(plan.fixed, [*_params_overrides(plan, t), f"seed={seed}"], str(root / f"trial{t.number}-seed{seed}"))
            for t in top for seed in seeds]
    _say(f"confirming the top {len(top)} trial(s) over seeds {', '.join(map(str, seeds))} ({len(jobs)} runs"
         + (f", in populations of up to {plan.tune.population})" if plan.tune.population > 1 else ")"))
    if plan.tune.population > 1:  # the confirmation runs differ only in member keys and seeds: populations too
        size = plan.tune.population
        chunks = [[(params, Path(d), None) for _, params, d in jobs[i:i + size]] for i in range(0, len(jobs), size)]
        statuses = [str(s.get("status", "failed")) for chunk in chunks for s in _run_members(plan.fixed, chunk)]
    else:
        statuses = _parallel(_confirm_job, jobs, pool)
    if "stopped" in statuses:  # Ctrl-C/SIGTERM: --resume keeps the finished runs and continues the stopped ones
        raise KeyboardInterrupt
    write_report(root)
    rows = aggregate(load_sweep(root))
    verdict = compare_top(rows)
    winner = next((r for r in rows if r.is_best), None)
    return rows, verdict, (dict(winner.config) if winner else None)


def _confirm_job(fixed: list[str], params: list[str], run_dir: str) -> str:
    """One confirmation run; a resumed study keeps those that finished and continues stopped ones from their
    checkpoints. After a stop in this process, queued runs are not started ("stopped")."""
    _catch_signals()
    if _signals:
        return "stopped"
    summary = _start_or_continue([*fixed, *params], Path(run_dir), params)
    status = str(summary.get("status", "failed"))
    if status == "stopped":
        _signals.append(str(summary.get("stopped_by") or "SIGINT"))
    return status


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.lstrip("+").split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def write_best(plan: Plan, params: dict[str, str], header: list[str]) -> Path:
    """best.yaml: a `# @package _global_` preset of the winner's values (plus the fixed algo/env/network values)."""
    values: dict[str, Any] = {}
    for o in plan.fixed:
        key, _, value = o.partition("=")
        if key.lstrip("+").split(".")[0] in ("algo", "env", "network") and "." in key:
            values[key.lstrip("+")] = yaml_value(value)
    values.update({k.lstrip("+"): yaml_value(v) for k, v in params.items()})
    text = "# @package _global_\n" + "".join(f"# {line}\n" for line in header) + yaml.safe_dump(_nested(values), sort_keys=True)
    best = plan.study_dir / "best.yaml"
    best.write_text(text)
    (plan.study_dir / "preset").mkdir(exist_ok=True)
    (plan.study_dir / "preset" / "best.yaml").write_text(text)  # `rlx train --config-dir STUDY_DIR +preset=best`
    return best


def _state(t: Any, continued_as: dict[int, int]) -> str:
    if _is_stopped(t):
        after = continued_as.get(t.number)
        return f"stopped ({t.user_attrs[STOPPED]}" + (f"; continued as trial {after})" if after is not None else ")")
    state = t.state.name.lower()
    return state + (f" (continues trial {t.user_attrs[CONTINUES]})" if CONTINUES in t.user_attrs else "")


def _trials_table(plan: Plan, study: Any) -> list[str]:
    from rlx.analysis.report import fmt_number

    keys = [d.key for d in plan.space]
    steps = "evals" if plan.tune.trial_seeds == 1 else "seeds"
    lines = ["| trial | state | " + " | ".join(keys) + f" | eval return | {steps} | env steps |",
             "|" + "---|" * (len(keys) + 5)]
    continued_as = {t.user_attrs[CONTINUES]: t.number for t in study.trials if CONTINUES in t.user_attrs}
    for t in sorted(study.trials, key=lambda t: t.number):
        run_dir = Path(t.user_attrs.get("run_dir", plan.study_dir / "trials" / str(t.number)))
        runs = [run_dir] if plan.tune.trial_seeds == 1 else sorted(run_dir.glob("seed*"))
        env_steps = [_summary(r).get("env_steps") for r in runs]
        shown = sum(x for x in env_steps if isinstance(x, int)) if any(isinstance(x, int) for x in env_steps) else ""
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                      if t.intermediate_values else None)
        lines.append(f"| {t.number} | {_state(t, continued_as)} | " + " | ".join(str(t.params.get(k, "")) for k in keys)
                     + f" | {fmt_number(value)} | {len(t.intermediate_values)} | {shown} |")
    return lines


def finish(plan: Plan, study: Any, pool: Any = None) -> int:
    """Confirmation, best.yaml, tune.md, printed summary. Exit status: 0 with a winner, 1 without."""
    base_seed = _base_seed(plan)
    held = _held(study)
    states = [t.state.name.lower() for t in held]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail", "running", "waiting") if states.count(s))
    n = plan.tune.trial_seeds
    objective = (f"final deterministic eval return (seed {base_seed})" if n == 1 else
                 f"mean final deterministic eval return over seeds {base_seed}..{base_seed + n - 1}")
    top = _top_trials(study, 1)
    lines = [f"# Tuning report: {plan.study_name}", "", f"{_n(len(held), 'trial')} ({counts}); objective: {objective}; "
             f"pruner: {plan.tune.pruner}.", ""]
    if not top:
        lines += ["No trial completed: no winner."]
        (plan.study_dir / "tune.md").write_text("\n".join(lines + [""] + _trials_table(plan, study)) + "\n")
        _say(f"no trial completed; see {plan.study_dir / 'tune.md'}")
        return 1
    rows, verdict, winner = confirm(plan, study, base_seed, pool)
    search_best = {d.key: str(top[0].params[d.key]) for d in plan.space}
    if winner is None:
        winner = search_best
        text = (f"Best search trial: {top[0].number} (eval return {top[0].value:.2f}, "
                + ("one seed). " if n == 1 else f"mean of {n} seeds). ")
                + ("Not confirmed (tune.confirm_seeds=0): the best of a search over-states the winner."
                   if plan.tune.confirm_seeds == 0 else "No confirmation run finished."))
    else:
        n_top = min(plan.tune.top_k, len(_top_trials(study, plan.tune.top_k)))
        text = (f"Confirmation over {plan.tune.confirm_seeds} fresh seeds of the top {n_top} "
                f"trials: {verdict.text}")
        if len(_top_trials(study, 2)) >= 2 and winner != search_best:
            text += f" The search's best trial ({top[0].number}) did not win the confirmation."
    best = write_best(plan, winner, [f"rlx tune winner, study {plan.study_name}", *text.split("\n")[:1],
                                     f"fixed: {' '.join(plan.fixed) or '(defaults)'}"])
    lines += [text, "", f"Winner: {' '.join(f'{k}={v}' for k, v in winner.items())} -> `{best.name}`", "",
              "## Trials", "", *_trials_table(plan, study)]
    if rows:
        lines += ["", "Confirmation runs: `confirm/` (report.md, report.csv, report.png there)."]
    (plan.study_dir / "tune.md").write_text("\n".join(lines) + "\n")
    print(text)
    print(f"winner: {' '.join(f'{k}={v}' for k, v in winner.items())}")
    print(f"study: {plan.study_dir} ({counts}); best.yaml, tune.md")
    return 0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _resume_message(plan: Plan, study: Any, continued: list[tuple[Any, int]]) -> str:
    held, wanted = len(_held(study)), plan.tune.trials
    text = f"resuming {plan.study_dir}: "
    if held < wanted:
        text += f"{held} of {wanted} trials exist, {wanted - held} to run"
    else:
        text += (f"the study already holds {_n(held, 'trial')} (tune.trials={wanted}): no new trial"
                 + (f"; give tune.trials above {held} for more" if held > wanted or not continued else ""))
    for old, new in continued:
        text += f"; trial {old.number} (stopped by {old.user_attrs[STOPPED]}) continues as trial {new} from its checkpoint"
    return text


def run_tune(args: list[str], resume_dir: Path | None = None) -> int:
    """`rlx tune`: plan (validate everything), run the trials, confirm, write the winner. Returns the exit status."""
    optuna = _require_optuna()
    if resume_dir is not None:
        run, settings, study_dir = split_tune_args(args)
        if run or study_dir:
            raise UserError(f"--resume: only tune.* settings may be given ({', '.join('tune.' + k for k in RESUMABLE)}); "
                            f"got {run[0] if run else study_dir}")
        plan = Plan.load(Path(resume_dir), settings)
        plan.save()  # the new settings (e.g. more trials) hold for later resumes too
        study = _make_study(plan, load=True)
        with _experimental_ok():
            optuna.storages.fail_stale_trials(study)  # trials of a killed process: failed, not running
        _say(_resume_message(plan, study, _continue_stopped(study)))
    else:
        plan = plan_study(args)
        if plan.timestamped:
            from rlx.rundir.lock import unique_dir

            plan.study_dir.parent.mkdir(parents=True, exist_ok=True)
            plan.study_dir = unique_dir(plan.study_dir)
        plan.study_dir.mkdir(parents=True, exist_ok=True)
        plan.save()
        study = _make_study(plan)
        seeds = "" if plan.tune.trial_seeds == 1 else f" of {plan.tune.trial_seeds} seeds each"
        _say(f"study {plan.study_name} in {plan.study_dir} ({plan.storage_url}); {plan.tune.trials} trials{seeds}, "
             f"pruner {plan.tune.pruner}, {plan.tune.n_jobs} job(s)")
    from concurrent.futures.process import BrokenProcessPool

    t0 = time.perf_counter()
    _signals.clear()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _catch_signals()
        with _pool(plan.tune.n_jobs) as pool:
            _parallel(_trial_worker, [(str(plan.study_dir), w) for w in range(plan.tune.n_jobs)], pool)
            study = _make_study(plan, load=True)
            _say(f"search done in {time.perf_counter() - t0:.0f} s")
            return finish(plan, study, pool)
    except (KeyboardInterrupt, BrokenProcessPool) as e:
        if isinstance(e, BrokenProcessPool) and not _signals:
            _say(f"a trial process died ({e}); continue the study with: rlx tune --resume {plan.study_dir}")
            return 1
        name = _signals[0] if _signals else "SIGINT"
        _say(f"stopped by {name}; continue the study with: rlx tune --resume {plan.study_dir} "
             "(a stopped trial continues from its checkpoint)")
        return 128 + int(getattr(signal, name, signal.SIGINT))
    finally:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)

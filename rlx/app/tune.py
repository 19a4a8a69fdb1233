"""`rlx tune`: hyperparameter search with Optuna, pruning on the runs' periodic deterministic evals.

Data flow: command-line overrides -> (search space, fixed overrides, ``tune.*`` settings), all validated
before the first trial -> an Optuna study in persistent storage (SQLite in the study dir by default) ->
each trial is an ordinary rlx run in ``STUDY_DIR/trials/<number>/`` whose periodic evals are reported to
the pruner through the shared session (:data:`rlx.train.session.EVAL_HOOKS`); a pruned trial ends as a
finished run with ``status: pruned`` and keeps its curve -> the top-k completed trials are re-run over
``tune.confirm_seeds`` fresh seeds in ``STUDY_DIR/confirm/`` and judged with rlx.analysis.report's statistics ->
``best.yaml`` (a ``# @package _global_`` preset) and ``tune.md`` with the verdict.
"""
from __future__ import annotations

import contextlib
import json
import math
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
RESUMABLE = ("trials", "n_jobs", "pruner", "startup_trials", "warmup_evals", "top_k", "confirm_seeds")


@dataclass
class TuneConfig:
    trials: int = param(20, ge=1, help="trials in the study (a resumed study runs until it has this many)")
    pruner: Literal["median", "hyperband", "none"] = param("median", help="stops hopeless trials on their evals")
    sampler: Literal["tpe", "random"] = param("tpe")
    startup_trials: int = param(5, ge=0, help="finished trials before the median pruner prunes and TPE models")
    warmup_evals: int = param(1, ge=0, help="periodic evals a trial always runs before it may be pruned")
    n_jobs: int = param(1, ge=1, help="trials (and confirmation runs) in parallel processes")
    storage: str | None = param(None, help="Optuna storage URL (default sqlite:///STUDY_DIR/study.db)")
    study_name: str | None = param(None, help="Optuna study name (default: the study dir's name)")
    seed: int = param(0, ge=0, help="sampler seed")
    top_k: int = param(3, ge=1, help="best completed trials re-run over confirm_seeds seeds")
    confirm_seeds: int = param(3, ge=0, help="fresh seeds per confirmation (0: no confirmation)")


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
        return cls(list(data["fixed"]), [Dimension(**d) for d in data["space"]], tune, study_dir)


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
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # rlx reports each trial itself
    return optuna


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
    fixed, space = parse_space(run)
    validate([*fixed, *(f"{d.key}={d.end_points()}" for d in space)])
    if study_dir is None:  # timestamped like a sweep dir; made unique when the study starts
        return Plan(fixed, space, tune, Path(f"{resolve_sweep_dir(fixed)}_tune"), timestamped=True)
    path = Path(study_dir)
    if (path / STUDY_FILE).exists():
        raise UserError(f"{path} already holds a study; continue it with `rlx tune --resume {path}` or choose another hydra.sweep.dir")
    return Plan(fixed, space, tune, path)


# --------------------------------------------------------------------------- the study


def _make_study(plan: Plan, worker: int = 0, load: bool = False) -> Any:
    optuna = _require_optuna()
    t = plan.tune
    storage = plan.storage_url
    if storage.startswith(("sqlite", "postgresql", "mysql")):
        # heartbeats: a trial whose process was killed is marked failed (not left running) on the next start
        storage = optuna.storages.RDBStorage(storage, heartbeat_interval=10, grace_period=30,
                                             engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None)
    existing = 0
    if load:
        try:
            existing = len(optuna.load_study(study_name=plan.study_name, storage=storage).trials)
        except KeyError:
            raise UserError(f"no study {plan.study_name!r} in {plan.storage_url}") from None
    seed = t.seed + 1000 * worker + existing  # parallel workers and resumed studies must not replay one sequence
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials) if t.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    if t.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=t.warmup_evals + 1)
    elif t.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, t.warmup_evals), max_resource="auto")
    else:
        pruner = optuna.pruners.NopPruner()
    return optuna.create_study(storage=storage, study_name=plan.study_name, direction="maximize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def _counted(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                        TrialState.RUNNING)))


def _write_overrides(run_dir: Path, overrides: list[str]) -> None:
    """What Hydra writes for a multirun job, so `rlx report` / `rlx plot` treat the run like any other."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def _run(overrides: list[str], run_dir: Path, hook: Any = None) -> dict[str, Any]:
    """One ordinary rlx run (composed like `rlx train OVERRIDES`) in ``run_dir``; ``hook`` sees its evals."""
    from rlx.config.compose import compose_config
    from rlx.train.driver import train
    from rlx.train.run import write_summary
    from rlx.train.session import EVAL_HOOKS

    cfg = compose_config(overrides)
    cfg.logger.wandb.group = cfg.logger.wandb.group or run_dir.parent.parent.name  # one W&B group per study
    token = EVAL_HOOKS.set((hook,) if hook else ())
    try:
        return train(cfg, run_dir)
    except Exception as e:  # a diverging or crashing trial fails alone; the study goes on
        if not (run_dir / "summary.json").is_file():
            write_summary(run_dir, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    finally:
        EVAL_HOOKS.reset(token)


def _objective(plan: Plan) -> Any:
    optuna = _require_optuna()

    def objective(trial: Any) -> float:
        params = {d.key: d.suggest(trial) for d in plan.space}
        overrides = [*plan.fixed, *(f"{k}={v}" for k, v in params.items())]
        run_dir = plan.study_dir / "trials" / str(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        _write_overrides(run_dir, [f"{k}={v}" for k, v in params.items()])
        evals = {"n": 0}

        def report(env_steps: int, value: float) -> str | None:
            evals["n"] += 1  # step = eval number: aligned across trials whatever their batch sizes
            trial.report(value, evals["n"])
            return "pruned" if trial.should_prune() else None

        summary = _run(overrides, run_dir, report)
        status = summary.get("status")
        _say(f"trial {trial.number}: {status}" + (f", eval return {summary['eval_return_mean']:.2f} at {summary['env_steps']:,} steps"
                                                  if status in ("ok", "pruned") else f": {summary.get('error')}")
             + "  " + " ".join(f"{k}={v}" for k, v in params.items()))
        if status == "pruned":
            raise optuna.TrialPruned()
        if status == "stopped":  # SIGINT/SIGTERM: stop the study; --resume continues it
            raise KeyboardInterrupt
        if status != "ok":
            trial.set_user_attr("error", str(summary.get("error")))
            return math.nan  # Optuna records NaN as a failed trial
        return float(summary["eval_return_mean"])

    return objective


def _say(text: str) -> None:
    print(f"rlx tune: {text}", file=sys.stderr, flush=True)


def _trial_worker(study_dir: str, worker: int = 0) -> None:
    """Run trials until the study holds ``tune.trials`` of them (several of these may share one storage)."""
    import torch

    plan = Plan.load(Path(study_dir), {})
    torch.set_num_threads(1)
    study = _make_study(plan, worker, load=True)
    objective = _objective(plan)
    while _counted(study) < plan.tune.trials:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)


@contextlib.contextmanager
def _pool(n_jobs: int) -> Iterator[Any]:
    """One pool of ``n_jobs`` spawned processes for the trials and then the confirmation runs (None: in-process)."""
    if n_jobs <= 1:
        yield None
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
        yield pool


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
    seeds = [base_seed + 1 + i for i in range(plan.tune.confirm_seeds)]  # never the search seed: no selection bias
    root = plan.study_dir / "confirm"
    # (fixed, searched params + seed, run dir): the report groups runs by the params, seeds aggregated
    jobs = [(plan.fixed, [*_params_overrides(plan, t), f"seed={seed}"], str(root / f"trial{t.number}-seed{seed}"))
            for t in top for seed in seeds]
    _say(f"confirming the top {len(top)} trial(s) over seeds {', '.join(map(str, seeds))} ({len(jobs)} runs)")
    _parallel(_confirm_job, jobs, pool)
    write_report(root)
    rows = aggregate(load_sweep(root))
    verdict = compare_top(rows)
    winner = next((r for r in rows if r.is_best), None)
    return rows, verdict, (dict(winner.config) if winner else None)


def _confirm_job(fixed: list[str], params: list[str], run_dir: str) -> str:
    path = Path(run_dir)
    done = path / "summary.json"
    if done.is_file() and json.loads(done.read_text()).get("status") == "ok":
        return "ok"  # a resumed study keeps confirmation runs that already finished
    if path.exists():
        import shutil

        shutil.rmtree(path)
    _write_overrides(path, params)
    return _run([*fixed, *params], path).get("status", "failed")


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


def _trials_table(plan: Plan, study: Any) -> list[str]:
    from rlx.analysis.report import fmt_number

    keys = [d.key for d in plan.space]
    lines = ["| trial | state | " + " | ".join(keys) + " | eval return | evals | env steps |",
             "|" + "---|" * (len(keys) + 5)]
    for t in sorted(study.trials, key=lambda t: t.number):
        summary = {}
        path = Path(t.user_attrs.get("run_dir", plan.study_dir / "trials" / str(t.number))) / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                      if t.intermediate_values else None)
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(str(t.params.get(k, "")) for k in keys)
                     + f" | {fmt_number(value)} | {len(t.intermediate_values)} | {summary.get('env_steps', '')} |")
    return lines


def finish(plan: Plan, study: Any, pool: Any = None) -> int:
    """Confirmation, best.yaml, tune.md, printed summary. Exit status: 0 with a winner, 1 without."""
    from omegaconf import OmegaConf

    from rlx.config.compose import compose_config

    base_seed = int(OmegaConf.select(compose_config(plan.fixed), "seed"))
    states = [t.state.name.lower() for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail", "running") if states.count(s))
    top = _top_trials(study, 1)
    lines = [f"# Tuning report: {plan.study_name}", "", f"{len(states)} trials ({counts}); objective: final "
             f"deterministic eval return (seed {base_seed}); pruner: {plan.tune.pruner}.", ""]
    if not top:
        lines += ["No trial completed: no winner."]
        (plan.study_dir / "tune.md").write_text("\n".join(lines + [""] + _trials_table(plan, study)) + "\n")
        _say(f"no trial completed; see {plan.study_dir / 'tune.md'}")
        return 1
    rows, verdict, winner = confirm(plan, study, base_seed, pool)
    search_best = {d.key: str(top[0].params[d.key]) for d in plan.space}
    if winner is None:
        winner = search_best
        text = (f"Best search trial: {top[0].number} (eval return {top[0].value:.2f}, one seed). "
                + ("Not confirmed (tune.confirm_seeds=0): a single-seed search result over-states the winner."
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


def run_tune(args: list[str], resume_dir: Path | None = None) -> int:
    """`rlx tune`: plan (validate everything), run the trials, confirm, write the winner. Returns the exit status."""
    _require_optuna()
    if resume_dir is not None:
        run, settings, study_dir = split_tune_args(args)
        if run or study_dir:
            raise UserError(f"--resume: only tune.* settings may be given ({', '.join('tune.' + k for k in RESUMABLE)}); "
                            f"got {run[0] if run else study_dir}")
        plan = Plan.load(Path(resume_dir), settings)
        plan.save()  # the new settings (e.g. more trials) hold for later resumes too
        study = _make_study(plan, load=True)
        with warnings.catch_warnings():  # experimental in Optuna 2.x
            warnings.simplefilter("ignore")
            _require_optuna().storages.fail_stale_trials(study)  # trials of a killed process: failed, not running
        _say(f"resuming {plan.study_dir}: {_counted(study)} of {plan.tune.trials} trials exist")
    else:
        plan = plan_study(args)
        if plan.timestamped:
            from rlx.rundir.lock import unique_dir

            plan.study_dir.parent.mkdir(parents=True, exist_ok=True)
            plan.study_dir = unique_dir(plan.study_dir)
        plan.study_dir.mkdir(parents=True, exist_ok=True)
        plan.save()
        study = _make_study(plan)
        _say(f"study {plan.study_name} in {plan.study_dir} ({plan.storage_url}); {plan.tune.trials} trials, "
             f"pruner {plan.tune.pruner}, {plan.tune.n_jobs} job(s)")
    from concurrent.futures.process import BrokenProcessPool

    t0 = time.perf_counter()
    try:
        with _pool(plan.tune.n_jobs) as pool:
            _parallel(_trial_worker, [(str(plan.study_dir), w) for w in range(plan.tune.n_jobs)], pool)
            study = _make_study(plan, load=True)
            _say(f"search done in {time.perf_counter() - t0:.0f} s")
            return finish(plan, study, pool)
    except (KeyboardInterrupt, BrokenProcessPool):
        _say(f"interrupted; continue with: rlx tune --resume {plan.study_dir}")
        return 130

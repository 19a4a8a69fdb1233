"""rlx's Hydra launcher for populations (``hydra/launcher=population``, issue 12).

The jobs of a multirun that differ only in per-member keys (``each algorithm class's member_keys``: seed, lr,
clip_eps, ...) are trained as ONE process, a population (``rlx.train.driver.train_job``). Jobs that
differ in any other key (algo, env, network sizes, n_steps, ...) go into separate populations; a group
bigger than ``max_members`` is split into chunks of at most that many. Populations run one after
another, or ``n_jobs`` at a time in worker processes (one fresh process per population).

Every member still gets its ordinary run dir in the sweep dir (``.hydra/``, ``config.yaml``,
``metrics.jsonl``, ``summary.json``, ...), so ``rlx report`` and ``rlx eval`` work as for any sweep.
A population that fails (bad input, a fault, any exception) records each of its members as a failed
run (``summary.json`` with status "failed") and the sweep goes on. ``populations.json`` in the sweep dir
lists the populations (member dirs relative to the sweep dir), for ``rlx resume SWEEP_DIR``.

On Ray (``hydra.launcher.ray.address=auto``, or ``hydra/launcher=population_ray``): each population is
ONE Ray task (``ray.num_cpus``/``num_gpus``/``resources`` per population) on a running Ray cluster, all
submitted at once (the cluster's resources decide how many run together; ``n_jobs`` does not apply). The
sweep dir must be on a filesystem every node shares. A population whose worker process or node dies is
retried up to ``ray.max_retries`` times, starting over (its members' dirs overwritten), and then every
member is recorded as failed; the sweep goes on. ``.ray/population_<n>.json`` in the sweep dir records
where each attempt ran (node, pid, and the driver's pid). Ray itself is the ``rlx[ray]`` extra.

Hydra only loads launchers from the ``hydra_plugins`` namespace package, hence the one-line subclass in
``hydra_plugins/`` (shipped in the rlx distribution). Torch and rlx's training code are imported only when it launches.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import json
import logging
import multiprocessing
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from rlx.errors import first_line
from rlx.rundir.populations import population_status, read_populations, write_populations

log = logging.getLogger(__name__)
NO_RAY = "hydra.launcher.ray.address (populations on Ray) needs Ray: pip install 'rlx[ray]'"
RAY_DEFAULTS: dict[str, Any] = {"address": None, "num_cpus": 1, "num_gpus": 0, "resources": {}, "max_retries": 1,
                                "namespace": None}


# Plain classes, not dataclasses: Hydra's plugin scan executes this module without registering it in
# sys.modules, where @dataclass (with postponed annotations) looks itself up.
class _Job:
    def __init__(self, idx: int, overrides: list[str], cfg: DictConfig, task_cfg: DictConfig, job_dir: Path) -> None:
        self.idx = idx                 # hydra.job.num
        self.overrides = overrides     # the job's task overrides (as in .hydra/overrides.yaml)
        self.cfg = cfg                 # the full job config (hydra node included), as Hydra composed it
        self.task_cfg = task_cfg       # what rlx.train.run.train would receive (no hydra node; an unfitting tuned preset dropped)
        self.job_dir = job_dir
        self.started = 0.0             # when its population was recorded (just before training)
        self.held_run = False          # its dir held a run before this sweep launched it


class _Population:
    def __init__(self, jobs: list[_Job], varying: dict[str, list[str]]) -> None:
        self.jobs = jobs
        self.varying = varying         # override key -> the members' values, for keys that differ


class PopulationLauncher(Launcher):
    def __init__(self, max_members: int = 64, n_jobs: int = 1, ray: Any = None) -> None:
        self.max_members, self.n_jobs = max_members, n_jobs
        self.ray = OmegaConf.to_container(ray, resolve=True) if isinstance(ray, DictConfig) else ray
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from rlx.errors import UserError

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        cwd = os.getcwd()
        sweep_dir = Path(cwd, str(self.config.hydra.sweep.dir))
        try:  # bad input: one line, exit 2, before anything runs (rlx sweep validated it already)
            max_members, n_jobs = check_settings(self.max_members, self.n_jobs)
            on_ray = check_ray_settings(self.ray)
            if on_ray is not None:
                _connect_ray(on_ray)
            jobs = [self._compose(initial_job_idx + i, list(o), sweep_dir) for i, o in enumerate(job_overrides)]
            populations = group_jobs(jobs, max_members)
        except UserError as e:
            print(f"rlx: error: {e}", file=sys.stderr)
            sys.exit(2)
        log.info(f"Population launcher: {len(jobs)} jobs in {len(populations)} population(s), sweep dir {sweep_dir}")
        for job in jobs:
            _save_hydra_files(job)
        first = _record_populations(sweep_dir, populations)
        for k, pop in enumerate(populations):
            _apply_settings(pop, 0 if on_ray else first + k, sweep_dir)  # Ray assigns a task its GPUs
        for k, pop in enumerate(populations):
            print(f"rlx: population {first + k}: {describe(pop)}", flush=True)
        for pop in populations:  # Hydra callbacks see each member start (and end, below) like any job
            for job in pop.jobs:
                self.hydra_context.callbacks.on_job_start(config=job.cfg, task_function=self.task_function)

        if on_ray is not None:
            outcomes = _train_on_ray(on_ray, populations, first, sweep_dir, cwd)
        elif n_jobs == 1 or len(populations) == 1:
            outcomes = [_train_chunk([j.task_cfg for j in p.jobs], [j.job_dir for j in p.jobs]) for p in populations]
        else:
            ctx = multiprocessing.get_context("spawn")
            # a fresh process per population (its memory goes back when it ends); Python 3.11+
            fresh: dict[str, Any] = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
            with concurrent.futures.ProcessPoolExecutor(max_workers=min(n_jobs, len(populations)), mp_context=ctx,
                                                        **fresh) as pool:
                futures = [pool.submit(_train_chunk, [j.task_cfg for j in p.jobs], [j.job_dir for j in p.jobs])
                           for p in populations]
                outcomes = [_outcome(f) for f in futures]

        values: dict[int, float | None] = {}
        stopped: list[dict[str, Any]] = []
        for k, (pop, (summaries, error)) in enumerate(zip(populations, outcomes, strict=True)):
            if error is not None:
                message, tb = error
                print(f"rlx: population {first + k} ({members_text(pop)}) failed: {message}", file=sys.stderr)
                for job in pop.jobs:
                    _record_failure(job, message, tb)
                    values[job.idx] = None
                continue
            assert summaries is not None
            for job, summary in zip(pop.jobs, summaries, strict=True):
                ok = summary.get("status") != "failed"
                values[job.idx] = summary.get("eval_return_mean") if ok else None
                if not ok:
                    print(f"rlx: run {job.job_dir} failed: {summary.get('error')}", file=sys.stderr)
                if summary.get("status") == "stopped":
                    stopped.append(summary)
        _record_outcomes(sweep_dir, first, populations, outcomes)

        results = []
        for job in jobs:
            ret = JobReturn(overrides=job.overrides, cfg=job.task_cfg, hydra_cfg=job.cfg, working_dir=cwd,
                            task_name=str(job.cfg.hydra.job.name), status=JobStatus.COMPLETED,
                            _return_value=values[job.idx])
            self.hydra_context.callbacks.on_job_end(config=job.cfg, job_return=ret)
            results.append(ret)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if stopped:  # preempted (SIGTERM/Ctrl-C): stop the sweep too, as rlx.app.entry.hydra_job does for one run
            from rlx.train.run import exit_status

            sys.exit(exit_status(stopped[0]))
        return results

    def _compose(self, idx: int, overrides: list[str], sweep_dir: Path) -> _Job:
        """One job's config exactly as Hydra's launchers compose it, and the task config rlx.app.entry.hydra_job
        would train (a tuned preset that does not fit the env trained: recomposed without it)."""
        from rlx.config.compose import tuned_preset_conflict

        assert self.config is not None and self.hydra_context is not None
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        loader = self.hydra_context.config_loader
        cfg = loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.id = f"population_{idx}"
            cfg.hydra.job.num = idx
            cfg.hydra.sweep.dir = str(sweep_dir)
        HydraConfig.instance().set_config(cfg)
        job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job_dir.absolute())
        HydraConfig.instance().set_config(cfg)
        source = cfg
        conflict = tuned_preset_conflict(cfg.hydra.runtime.choices, cfg.env.id)
        if conflict:
            print(f"rlx: note: {conflict}", file=sys.stderr)
            source = loader.load_sweep_config(self.config, [*overrides, "~tuned"])
        task_cfg = _without_hydra(source)
        return _Job(idx, list(OmegaConf.to_container(cfg.hydra.overrides.task)), cfg, task_cfg, job_dir)  # type: ignore[arg-type]


def check_settings(max_members: Any, n_jobs: Any) -> tuple[int, int]:
    """``hydra.launcher.max_members`` and ``n_jobs`` as ints >= 1, else a one-line UserError."""
    from rlx.errors import UserError

    out = []
    for key, value, what in (("max_members", max_members, "the most members one population trains"),
                             ("n_jobs", n_jobs, "populations trained at once")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"hydra.launcher.{key}={value}: must be an integer >= 1 ({what})")
        out.append(value)
    return out[0], out[1]


def check_ray_settings(settings: Any) -> dict[str, Any] | None:
    """``hydra.launcher.ray`` with its defaults filled in, or None when ``address`` is null (local
    processes); bad values, or Ray not installed: a one-line UserError."""
    from rlx.errors import UserError

    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise UserError(f"hydra.launcher.ray={settings}: must be a mapping (address, num_cpus, num_gpus, resources, "
                        "max_retries, namespace)")
    unknown = sorted(set(settings) - set(RAY_DEFAULTS))
    if unknown:
        raise UserError(f"hydra.launcher.ray.{unknown[0]}: no such setting (known: {', '.join(RAY_DEFAULTS)})")
    out = {**RAY_DEFAULTS, **settings}
    if out["address"] is None:
        return None
    for key in ("num_cpus", "num_gpus"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"hydra.launcher.ray.{key}={value}: must be a number >= 0 (per population)")
    retries = out["max_retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(f"hydra.launcher.ray.max_retries={retries}: must be an integer >= 0")
    if not isinstance(out["resources"] or {}, dict):
        raise UserError(f"hydra.launcher.ray.resources={out['resources']}: must be a mapping, e.g. '{{accel: 1}}'")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError(NO_RAY)
    out["address"] = str(out["address"])
    return out


def _connect_ray(settings: dict[str, Any]) -> None:
    """Join the cluster at ``settings["address"]`` (before anything is written), else a one-line UserError."""
    import ray

    from rlx.errors import UserError

    if ray.is_initialized():
        return
    try:
        ray.init(address=settings["address"], namespace=settings["namespace"], log_to_driver=True,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise UserError(f"hydra.launcher.ray.address={settings['address']}: cannot connect to a Ray cluster: "
                        f"{lines[0] if lines else type(e).__name__}") from None


def _train_on_ray(settings: dict[str, Any], populations: list[_Population], first: int, sweep_dir: Path,
                  cwd: str) -> list[tuple[list[dict[str, Any]] | None, tuple[str, str] | None]]:
    """Each population one Ray task (:func:`_train_chunk_on_ray`), all submitted at once; a task that
    could not finish (its worker or node died, after ``max_retries``): that population's error."""
    import ray

    (sweep_dir / ".ray").mkdir(parents=True, exist_ok=True)
    remote = ray.remote(_train_chunk_on_ray).options(
        num_cpus=settings["num_cpus"], num_gpus=settings["num_gpus"], resources=settings["resources"] or None,
        max_retries=settings["max_retries"])
    refs = []
    for k, pop in enumerate(populations):
        marker = sweep_dir / ".ray" / f"population_{first + k}.json"
        marker.unlink(missing_ok=True)
        # a retry overwrites a member's dir only where this sweep may write a run (not a run from before it)
        may_overwrite = [not j.held_run or bool(j.task_cfg.get("overwrite", False)) for j in pop.jobs]
        refs.append(remote.remote([j.task_cfg for j in pop.jobs], [j.job_dir for j in pop.jobs], may_overwrite,
                                  str(marker), cwd, os.getpid()))
    outcomes: list[tuple[list[dict[str, Any]] | None, tuple[str, str] | None]] = []
    for k, ref in enumerate(refs):
        try:
            outcomes.append(ray.get(ref))
        except ray.exceptions.RayError as e:  # worker process or node died (after max_retries), or Ray failed
            outcomes.append((None, (f"Ray task of population {first + k} failed after {settings['max_retries']} "
                                    f"retries: {type(e).__name__}: {first_line(e)}", "")))
    return outcomes


def _train_chunk_on_ray(cfgs: list[DictConfig], run_dirs: list[Path], may_overwrite: list[bool], marker: str,
                        cwd: str, driver_pid: int) -> tuple[list[dict[str, Any]] | None, tuple[str, str] | None]:
    """Inside a Ray worker: one population (:func:`_train_chunk`). Each attempt is appended to ``marker``;
    a retry (the previous attempt's worker died) starts the population over, overwriting its members'
    half-written dirs."""
    if os.path.isdir(cwd):  # a shared filesystem: relative paths mean what they meant to the driver
        os.chdir(cwd)
    path = Path(marker)
    try:
        attempts = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        attempts = []
    attempts.append({"node": socket.gethostname(), "pid": os.getpid(), "driver_pid": driver_pid, "time": time.time()})
    path.write_text(json.dumps(attempts))
    if len(attempts) > 1:
        cfgs = [_with_overwrite(c) if ok else c for c, ok in zip(cfgs, may_overwrite, strict=True)]
    return _train_chunk(cfgs, run_dirs)


def _with_overwrite(cfg: DictConfig) -> DictConfig:
    out = copy.deepcopy(cfg)
    with read_write(out), open_dict(out):
        out.overwrite = True
    return out


def group_jobs(jobs: Sequence[_Job], max_members: int) -> list[_Population]:
    """Jobs with equal ``population_group_key`` in one population (first appearance order, jobs in order),
    groups bigger than ``max_members`` split into consecutive chunks."""
    from rlx.train.population import population_group_key

    groups: dict[str, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(population_group_key(job.task_cfg), []).append(job)
    out = []
    for members in groups.values():
        for start in range(0, len(members), max_members):
            chunk = members[start:start + max_members]
            out.append(_Population(chunk, varying_overrides([j.overrides for j in chunk])))
    return out


def varying_overrides(overrides: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """The override keys whose values differ between jobs -> each job's value ('' when a job does not set it)."""
    values: list[dict[str, str]] = []
    for job in overrides:
        kv = {}
        for o in job:
            key, _, value = o.partition("=")
            kv[key.lstrip("+~")] = value
        values.append(kv)
    keys = sorted({k for kv in values for k in kv})
    return {k: [kv.get(k, "") for kv in values] for k in keys if len({kv.get(k) for kv in values}) > 1}


def members_text(pop: _Population) -> str:
    """'4 members (jobs 0-3)', '2 members (jobs 1,3)', '1 member (job 6)'."""
    nums = [j.idx for j in pop.jobs]
    if len(nums) == 1:
        return f"1 member (job {nums[0]})"
    contiguous = nums == list(range(nums[0], nums[0] + len(nums)))
    jobs = f"{nums[0]}-{nums[-1]}" if contiguous and len(nums) > 2 else ",".join(map(str, nums))
    return f"{len(nums)} members (jobs {jobs})"


def describe(pop: _Population) -> str:
    return f"{members_text(pop)}, varying: {', '.join(pop.varying) if pop.varying else 'nothing'}"


def _without_hydra(cfg: DictConfig) -> DictConfig:
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        if "hydra" in task_cfg:
            del task_cfg["hydra"]
    return task_cfg


def _apply_settings(pop: _Population, number: int, sweep_dir: Path) -> None:
    """What rlx.app.entry.hydra_job applies to a multirun job (its W&B group: the sweep's id; device=auto on
    several GPUs: one GPU per population, numbered by population, not by job)."""
    from rlx.app.entry import apply_job_settings

    hc = SimpleNamespace(sweep=SimpleNamespace(dir=str(sweep_dir)), job=SimpleNamespace(num=number))
    for job in pop.jobs:
        apply_job_settings(job.task_cfg, hc, True)


def _save_hydra_files(job: _Job) -> None:
    """``.hydra/{config,hydra,overrides}.yaml`` in the job dir, as Hydra's run_job writes them (rlx report
    reads the overrides from there)."""
    job.job_dir.mkdir(parents=True, exist_ok=True)
    subdir = job.cfg.hydra.output_subdir
    if subdir is None:
        return
    out = job.job_dir / str(subdir)
    _save_config(job.task_cfg, "config.yaml", out)
    _save_config(job.cfg, "hydra.yaml", out)
    _save_config(job.cfg.hydra.overrides.task, "overrides.yaml", out)


def _train_chunk(cfgs: list[DictConfig], run_dirs: list[Path]) -> tuple[list[dict[str, Any]] | None, tuple[str, str] | None]:
    """One population: (member summaries, None), or (None, (one-line error, traceback)) when it raised.
    Runs in this process or in a spawned worker (which must register rlx's resolvers first)."""
    from rlx.conf import register_resolvers
    from rlx.errors import RunFault, UserError
    from rlx.train import driver

    register_resolvers()
    try:
        summaries = driver.train_job(cfgs, run_dirs)
        if len(summaries) != len(run_dirs):
            raise RuntimeError(f"train_job returned {len(summaries)} summaries for {len(run_dirs)} members")
        return list(summaries), None
    except (RunFault, UserError) as e:
        return None, (str(e), "")
    except Exception as e:
        return None, (f"{type(e).__name__}: {e}", traceback.format_exc())


def _outcome(future: concurrent.futures.Future) -> tuple[list[dict[str, Any]] | None, tuple[str, str] | None]:
    try:
        return future.result()
    except Exception as e:  # the worker process died (BrokenProcessPool) or its result did not come back
        return None, (f"{type(e).__name__}: {e}", traceback.format_exc())


def _record_failure(job: _Job, error: str, tb: str) -> None:
    """A failed summary.json in a member's dir, as rlx.app.entry.hydra_job records a failed multirun job; never
    in a dir another run holds (in use by another process, or a run from before this sweep that this
    job was not allowed to replace), and not over the member's own result."""
    from rlx.errors import UserError
    from rlx.rundir.lock import RunDirLock
    from rlx.train.run import write_summary

    summary = job.job_dir / "summary.json"
    try:
        if summary.is_file() and (not job.held_run or summary.stat().st_mtime >= job.started) \
                and json.loads(summary.read_text()).get("status") in ("ok", "failed", "stopped"):
            return  # the member finished, or recorded its own failure, before the population failed
    except (OSError, ValueError):
        pass
    if job.held_run and not job.task_cfg.get("overwrite", False):
        return
    try:
        with RunDirLock(job.job_dir):
            write_summary(job.job_dir, {"status": "failed", "error": error})
            if tb:
                (job.job_dir / "error.txt").write_text(tb)
    except UserError:  # in use by another process
        pass
    except OSError as e:
        print(f"rlx: cannot record the failure in {job.job_dir}: {e}", file=sys.stderr)


def _population_entry(pop: _Population, sweep_dir: Path) -> dict[str, Any]:
    def rel(d: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(d.relative_to(sweep_dir))
        return str(d)

    return {"members": [rel(j.job_dir) for j in pop.jobs], "jobs": [j.idx for j in pop.jobs],
            "varying": pop.varying, "status": "running"}


def _record_populations(sweep_dir: Path, populations: list[_Population]) -> int:
    """Add these populations to SWEEP_DIR/populations.json (a sweeper may launch several batches); returns
    the number of the first one. Written before training starts, so that an interrupted sweep has it."""
    data = read_populations(sweep_dir)
    first = len(data["populations"])
    now = time.time()
    for pop in populations:
        for job in pop.jobs:
            job.started = now
            job.held_run = _holds_run(job.job_dir)
        data["populations"].append(_population_entry(pop, sweep_dir))
    write_populations(sweep_dir, data)
    return first


def _record_outcomes(sweep_dir: Path, first: int, populations: list[_Population],
                     outcomes: list[tuple[list[dict[str, Any]] | None, tuple[str, str] | None]]) -> None:
    data = read_populations(sweep_dir)
    for k, (summaries, error) in enumerate(outcomes):
        if first + k >= len(data["populations"]):
            break
        entry = data["populations"][first + k]
        if error is not None:
            entry.update(status="failed", error=error[0])
        else:
            assert summaries is not None
            statuses = [str(s.get("status")) for s in summaries]
            entry["status"] = population_status(statuses)
            entry["member_status"] = statuses
    write_populations(sweep_dir, data)


def _holds_run(run_dir: Path) -> bool:
    from rlx.rundir.lock import holds_run

    return holds_run(run_dir)

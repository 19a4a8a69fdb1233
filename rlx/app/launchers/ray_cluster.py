"""rlx's Hydra launcher for a running Ray cluster (``hydra/launcher=ray_cluster``).

Each job of a multirun is one Ray task (``num_cpus``/``num_gpus``/``resources`` per task) on the
cluster at ``address`` (``auto``: the cluster this machine belongs to, started with ``ray start``). The
jobs write their run dirs into the normal sweep dir (which must be on a filesystem every node shares)
and ``rlx sweep`` writes the report when they are done. A job whose worker process or node dies is
retried up to ``max_retries`` times (starting the run over) and then recorded as a failed run
(``summary.json`` with status "failed"): it never stops the sweep. ``.ray/<job>.json`` in the sweep dir
records where each attempt ran (node, pid).

Hydra only loads launchers from the ``hydra_plugins`` namespace package, hence the one-line subclass in
``hydra_plugins/`` (shipped in the rlx distribution). Ray itself is the ``rlx[ray]`` extra.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from rlx.errors import first_line

log = logging.getLogger(__name__)
NO_RAY = "hydra/launcher=ray_cluster needs Ray: pip install 'rlx[ray]'"


class RayClusterLauncher(Launcher):
    def __init__(self, address: str | None = "auto", num_cpus: float = 1, num_gpus: float = 0,
                 resources: dict | None = None, max_retries: int = 1, namespace: str | None = None) -> None:
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.resources = dict(resources or {})
        self.max_retries, self.namespace = int(max_retries), namespace
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            import ray
        except ImportError:
            print(f"rlx: error: {NO_RAY}", file=sys.stderr)
            sys.exit(2)
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        cwd = os.getcwd()
        sweep_dir = Path(cwd, str(self.config.hydra.sweep.dir))
        (sweep_dir / ".ray").mkdir(parents=True, exist_ok=True)
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=self.namespace, log_to_driver=True, configure_logging=False)
        remote = ray.remote(_run_job_remotely).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                       resources=self.resources or None, max_retries=self.max_retries)
        log.info(f"Ray cluster launcher: {len(job_overrides)} jobs on {self.address}, sweep dir {sweep_dir}")
        pending = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = f"ray_{idx}"
                cfg.hydra.job.num = idx
                cfg.hydra.sweep.dir = str(sweep_dir)
            HydraConfig.instance().set_config(cfg)
            job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
            ref = remote.remote(self.hydra_context, self.task_function, cfg, Singleton.get_state(), cwd, str(sweep_dir))
            pending.append((idx, list(overrides), cfg, job_dir, ref))
        results = []
        for idx, overrides, cfg, job_dir, ref in pending:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as e:  # worker process or node died (after max_retries), or Ray itself failed
                error = f"Ray task of job {idx} failed after {self.max_retries} retries: {type(e).__name__}: {first_line(e)}"
                print(f"rlx: run {job_dir} failed: {error}", file=sys.stderr)
                _record_failure(job_dir, error)
                # COMPLETED with no value, as rlx records any failed run: the sweep goes on and reports it
                results.append(JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=cfg, working_dir=cwd,
                                         task_name=str(cfg.hydra.job.name), status=JobStatus.COMPLETED, _return_value=None))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return results


def _record_failure(job_dir: Path, error: str) -> None:
    """A failed summary.json, unless the run finished (or recorded its own failure) before it died."""
    summary = job_dir / "summary.json"
    try:
        if summary.is_file() and json.loads(summary.read_text()).get("status") in ("ok", "failed"):
            return
    except (OSError, ValueError):
        pass
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        tmp = job_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps({"status": "failed", "error": error}, indent=2))
        tmp.replace(summary)
    except OSError as e:
        print(f"rlx: cannot record the failure in {job_dir}: {e}", file=sys.stderr)


def _run_job_remotely(hydra_context: HydraContext, task_function: TaskFunction, cfg: DictConfig, singleton_state: Any,
                      cwd: str, sweep_dir: str) -> JobReturn:
    """Inside a Ray worker: one Hydra job, as Hydra's basic launcher runs it."""
    setup_globals()
    Singleton.set_state(singleton_state)
    if os.path.isdir(cwd):  # a shared filesystem: relative paths mean what they meant to the driver
        os.chdir(cwd)
    marker = Path(sweep_dir, ".ray", f"{cfg.hydra.job.num}.json")
    attempts = json.loads(marker.read_text()) if marker.is_file() else []
    attempts.append({"node": socket.gethostname(), "pid": os.getpid()})
    marker.write_text(json.dumps(attempts))
    if len(attempts) > 1:  # a retry after the worker died: start the run over in its dir
        with open_dict(cfg):
            cfg.overwrite = True
    HydraConfig.instance().set_config(cfg)
    ret = run_job(hydra_context=hydra_context, task_function=task_function, config=cfg,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    return ret

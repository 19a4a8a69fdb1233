"""The Hydra entry of ``rlx train``: the task function every Hydra launcher runs (one job = one run in
Hydra's output dir), the job settings a multirun adds, and the check of the run dir before Hydra writes."""
from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from rlx.config.compose import compose_config, expand_for_validation, tuned_preset_conflict
from rlx.errors import RunFault, UserError
from rlx.rundir.lock import RunDirTaken, check_creatable_dir, check_dir_path, check_not_in_use, claim_fresh, holds_run
from rlx.train.driver import train
from rlx.train.run import exit_status, job_device, write_summary


def _hydra_dirs(overrides: list[str]) -> tuple[DictConfig, Path, Path, Path]:
    """(config, hydra.run.dir, hydra.sweep.dir, the first job's dir in it) as these overrides resolve them
    (``${now:...}`` at this moment: Hydra resolves it anew, so a timestamped dir is only checked, never created).
    A multirun's: those of its first job."""
    cfg = compose_config(expand_for_validation(overrides)[0], return_hydra_config=True)
    with read_write(cfg.hydra.job):
        cfg.hydra.job.num = 0  # only a multirun sets it; set_config resolves the sweep dir's subdir with it
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the dir's pattern
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    return cfg, Path(str(cfg.hydra.run.dir)), sweep_dir, sweep_dir / str(cfg.hydra.sweep.subdir)


def check_run_dir(overrides: list[str]) -> None:
    """Before Hydra writes anything: the run dir these overrides name must be a path a dir can be created at
    and written, must not hold a run (unless overwrite=true), and must not be in use by another process.
    Writes nothing: Hydra creates the dir (checking by creating it left an empty twin of every timestamped
    run dir, ``${now:%f}`` being resolved again by Hydra)."""
    cfg, run_dir, _, _ = _hydra_dirs(overrides)
    check_creatable_dir(run_dir, f"hydra.run.dir={run_dir}")
    if holds_run(run_dir) and not cfg.overwrite:
        claim_fresh(run_dir, False)  # raises, naming `rlx resume`
    check_not_in_use(run_dir)


def check_sweep_dir(overrides: list[str]) -> None:
    """Before a multirun starts any job: its sweep dir (and the first job's dir in it) must be a path a dir
    can be created at and written. Writes nothing."""
    _, _, sweep_dir, job_dir = _hydra_dirs(overrides)
    check_creatable_dir(sweep_dir, f"hydra.sweep.dir={sweep_dir}")
    check_dir_path(job_dir, f"hydra.sweep.subdir: the job dir {job_dir}")


def hydra_job(cfg: DictConfig) -> float | None:
    """The Hydra task function behind ``rlx train``: one run in Hydra's output dir.

    In a multirun a failed job is recorded (summary.json with status "failed" and the error) and the
    sweep goes on; the return value (final eval return) is the objective for sweepers like Optuna.
    """
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    apply_job_settings(cfg, hc, multirun)
    conflict = tuned_preset_conflict(hc.runtime.choices, cfg.env.id)
    try:
        if conflict:  # recompose without the preset (the running Hydra app composes: same search path)
            from hydra import compose

            print(f"rlx: note: {conflict}", file=sys.stderr)
            cfg = compose(config_name=hc.job.config_name, overrides=[*hc.overrides.task, "~tuned"])
            apply_job_settings(cfg, hc, multirun)
        summary = train(cfg, run_dir)
        if summary["status"] == "stopped":  # preempted: also stop a sweep instead of starting the next run
            sys.exit(exit_status(summary))
        return summary["eval_return_mean"]
    except (RunFault, UserError) as e:
        code = 2 if isinstance(e, UserError) else 1
        if not multirun:
            print(f"rlx: error: {e}", file=sys.stderr)
            sys.exit(code)
        if not isinstance(e, RunDirTaken):  # never write into a dir that belongs to another run
            with contextlib.suppress(OSError):
                write_summary(run_dir, {"status": "failed", "error": str(e)})
        print(f"rlx: run {run_dir} failed: {e}", file=sys.stderr)
        return None
    except Exception as e:
        if not multirun:
            raise
        write_summary(run_dir, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        (run_dir / "error.txt").write_text(traceback.format_exc())
        print(f"rlx: run {run_dir} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def apply_job_settings(cfg: DictConfig, hc: Any, multirun: bool) -> None:
    if multirun and hc.sweep.dir:  # all runs of one sweep share a W&B group: the sweep's id
        cfg.logger.wandb.group = cfg.logger.wandb.group or Path(hc.sweep.dir).name
    if multirun:  # parallel jobs (joblib launcher) spread over the GPUs instead of all landing on cuda:0
        cfg.device = job_device(cfg.device, hc.job.num, torch.cuda.device_count())



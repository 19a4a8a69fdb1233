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

from rlx.config.compose import compose_config, tuned_preset_conflict
from rlx.errors import RunFault, UserError
from rlx.rundir.lock import RunDirLock, RunDirTaken, claim_fresh, holds_run
from rlx.train.run import exit_status, job_device, train, write_summary


def check_run_dir(overrides: list[str]) -> None:
    """Before Hydra writes anything: the run dir these overrides name must not hold a run (unless
    overwrite=true), must be writable, and must not be in use by another process."""
    cfg = compose_config(overrides, return_hydra_config=True)
    with read_write(cfg.hydra.job):
        cfg.hydra.job.num = 0  # only a multirun sets it; set_config resolves the sweep dir's subdir with it
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the dir's pattern
    run_dir = Path(str(cfg.hydra.run.dir))
    if holds_run(run_dir) and not cfg.overwrite:
        claim_fresh(run_dir, False)  # raises, naming `rlx resume`
    RunDirLock(run_dir).acquire().release()  # not writable, or in use elsewhere: one line now, not in Hydra


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



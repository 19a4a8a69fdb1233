"""Train through the same code path as `rlx train` (composed Hydra config -> rlx.train.run.train)."""
from __future__ import annotations

from pathlib import Path

from rlx.config.compose import compose_config
from rlx.train.driver import train

QUIET = ["logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0"]


def train_summary(overrides: list[str], run_dir: Path) -> dict:
    return train(compose_config([*overrides, *QUIET]), run_dir)

"""Algorithm names -> classes: a plain dict, the single place the CLI and configs look algorithms up."""
from __future__ import annotations

from rlx.algos.ppo import PPO

ALGOS: dict[str, type] = {
    "ppo": PPO,
}

DESCRIPTIONS: dict[str, str] = {
    "ppo": "PPO-clip with GAE(lambda), vectorized envs (discrete + continuous)",
}

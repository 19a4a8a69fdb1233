"""Algorithm names -> classes: a plain dict, the single place the CLI and configs look algorithms up."""
from __future__ import annotations

from rlx.algos.ppo import PPO

# --- on-policy family ---------------------------------------------------------------------------
ON_POLICY: dict[str, type] = {
    "ppo": PPO,
}

# --- off-policy family --------------------------------------------------------------------------
OFF_POLICY: dict[str, type] = {
}

ALGOS: dict[str, type] = {**ON_POLICY, **OFF_POLICY}

DESCRIPTIONS: dict[str, str] = {
    "ppo": "PPO-clip with GAE(lambda), vectorized envs",
}

"""Validate every configuration a command line describes before anything runs or is written: each value
of a sweep (and of a ``sweep=`` preset's grid), the algorithm's keys, the env's spaces, the launcher's
settings. Composition itself is :mod:`rlx.config.compose`."""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import TYPE_CHECKING

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import DictConfig, OmegaConf

from rlx.config.compose import compose_config, expand_for_validation, tuned_preset_conflict, with_sweeper_params
from rlx.errors import UserError

if TYPE_CHECKING:
    from rlx.envs.make import EnvSpec


def _chosen_algo(overrides: list[str]) -> str | None:
    """The algorithm these overrides select, composed without their algo.* keys (one of which is bad)."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith("algo.")]
    try:
        return str(compose_config(keep).algo.name)
    except Exception:
        return None


def _name_algorithm(error: UserError, overrides: list[str]) -> UserError:
    """'unknown key algo.X' -> the same, naming the chosen algorithm and the nearest key it does have."""
    # Hydra's "could not override" reads as a dict-merge hint when the DEFAULT algorithm has the key.
    m = re.match(r"unknown key '(algo\.([^'.]+))'|(algo\.([^'.:]+)): new keys can't be merged", str(error))
    if m is None:
        return error
    name = _chosen_algo(overrides)
    from rlx.algos.registry import ALGOS

    if name not in ALGOS:
        return error
    key, leaf = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    fields = [f.name for f in dataclasses.fields(ALGOS[name].Config)]
    if leaf in fields:
        return error
    close = difflib.get_close_matches(leaf, fields, n=1, cutoff=0.6)
    hint = f"did you mean 'algo.{close[0]}'?" if close else f"its keys: {', '.join(sorted(fields))}"
    return UserError(f"unknown key '{key}' for algo={name}: {hint}")


def _check_sweeper_takes(overrides: list[str], hydra_cfg: DictConfig) -> None:
    """interval() is for sampling sweepers (Optuna); Hydra's grid sweeper fails on it only after starting."""
    if not str(OmegaConf.select(hydra_cfg, "hydra.sweeper._target_", default="")).endswith(".BasicSweeper"):
        return
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override() and isinstance(o.value(), IntervalSweep):
            raise UserError(f"{o.input_line}: interval() needs a sampling sweeper such as hydra/sweeper=optuna_max; "
                            "the default grid sweeper takes a,b,c lists, range() and choice()")


def _checked(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    try:
        return compose_config(overrides, return_hydra_config)
    except UserError as e:
        raise _name_algorithm(e, overrides) from None


def _check_population_launcher(with_hydra: DictConfig) -> None:
    """``hydra/launcher=population`` (or ``population_ray``): the algorithm must have population support,
    and the launcher's settings must be integers >= 1 (its ``ray`` settings valid, Ray installed when
    used). (A key that cannot vary within a population is no error: it splits them.)"""
    launcher = with_hydra.hydra.launcher
    if launcher.get("_target_") != "hydra_plugins.rlx_population_launcher.PopulationLauncher":
        return
    from rlx.app.launchers.population import check_ray_settings, check_settings
    from rlx.train.population import check_population_algo

    check_settings(launcher.get("max_members"), launcher.get("n_jobs"))
    ray = launcher.get("ray")
    check_ray_settings(OmegaConf.to_container(ray, resolve=True) if isinstance(ray, DictConfig) else ray)
    check_population_algo(str(with_hydra.algo.name))


def _algorithms_for(kind: str) -> str:
    from rlx.algos.registry import ALGOS

    return ", ".join(n for n, cls in ALGOS.items() if kind in cls.action_spaces)


def check_action_space_kind(algo_name: str, env_id: str, spec: EnvSpec) -> None:
    """The env's action space must be one rlx's policies act in: ``Discrete(n)`` (from 0) or a flat float ``Box``
    (finite bounds for the off-policy algorithms, which squash into them). Anything else (MultiDiscrete,
    MultiBinary, Dict, Tuple, ...) is a one-line UserError now, not a traceback in the run."""
    import gymnasium as gym
    import numpy as np

    from rlx.algos.registry import OFF_POLICY, ON_POLICY

    space = spec.action_space
    where = f"env.id={env_id}: action space {space}"
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise UserError(f"{where} starts at {int(space.start)}: rlx's discrete policies act in 0..n-1 "
                            f"(Discrete(n) with start=0); shift the actions in the env or a wrapper")
        return
    if isinstance(space, gym.spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise UserError(f"{where}: integer Box actions are not supported; rlx takes float Box (continuous: "
                            f"{_algorithms_for('continuous')}) or Discrete actions ({_algorithms_for('discrete')})")
        if len(space.shape) != 1:
            raise UserError(f"{where}: continuous actions must be a flat Box of shape (n,), not {tuple(space.shape)}; "
                            f"reshape them in the env or a wrapper")
        if algo_name in OFF_POLICY and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            unbounded = ", ".join(n for n, cls in ON_POLICY.items() if "continuous" in cls.action_spaces)
            raise UserError(f"algo={algo_name} needs bounded actions (finite low and high), but {where} is unbounded; "
                            f"algorithms that take unbounded Box actions: {unbounded}")
        return
    raise UserError(f"{where} is not supported by any rlx algorithm; allowed: Discrete(n) (algo={_algorithms_for('discrete')}) "
                    f"or a flat float Box (algo={_algorithms_for('continuous')})")


def validate(overrides: list[str]) -> DictConfig:
    """Compose and fully validate every configuration the overrides describe, including every value a
    ``sweep=`` preset's ``hydra.sweeper.params`` sweeps, each as it will run (a tuned preset that does
    not fit the env trained dropped, as :func:`rlx.app.entry.hydra_job` drops it); returns the first."""
    from rlx.envs.make import env_spec
    from rlx.train.run import check_action_space, parse_settings  # run imports torch; keep `rlx --help` fast

    first: DictConfig | None = None
    specs: dict[str, EnvSpec] = {}
    combos = expand_for_validation(overrides)
    hydra_cfg = _checked(combos[0], return_hydra_config=True)
    swept = with_sweeper_params(overrides, hydra_cfg)
    if swept != list(overrides):
        combos = expand_for_validation(swept)
    _check_sweeper_takes(swept, hydra_cfg)
    for combo in combos:
        with_hydra = _checked(combo, return_hydra_config=True)
        _check_population_launcher(with_hydra)
        conflict = tuned_preset_conflict(with_hydra.hydra.runtime.choices, with_hydra.env.id)
        cfg = _checked([*combo, "~tuned"] if conflict else combo)
        try:
            s = parse_settings(cfg)
        except UserError as e:
            raise _name_algorithm(e, combo) from None
        key = repr((s.env.id, s.env.kwargs, s.env.wrappers, s.env.train_wrappers, s.network.encoder))
        if key not in specs:
            specs[key] = env_spec(s.env.id, s.env.kwargs, s.env.wrappers, s.env.train_wrappers, s.network.encoder)
        check_action_space_kind(s.algo_name, s.env.id, specs[key])
        check_action_space(s.algo_name, specs[key])
        first = first or cfg
    assert first is not None
    return first

"""Validate every configuration a command line describes before anything runs or is written: each value
of a sweep (and of a ``sweep=`` preset's grid), the algorithm's keys, the env's spaces, the launcher's
settings. Composition itself is :mod:`rlx.config.compose`."""
from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from typing import TYPE_CHECKING

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import DictConfig, OmegaConf

from rlx.config.compose import compose_config, expand_for_validation, tuned_preset_conflict, with_sweeper_params
from rlx.errors import UserError

if TYPE_CHECKING:
    from rlx.envs.make import EnvSpec
    from rlx.train.run import Settings

# A run may train this share more env steps than total_steps without a warning (whole vector steps, rollouts).
OVERSHOOT = 0.05


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


# how each kind of action space is named to users (the kinds: rlx.envs.make.ACTION_KINDS)
ACTION_SPACE_NAMES = {"discrete": "Discrete(n)", "continuous": "a flat float Box", "multi_discrete": "MultiDiscrete(nvec)",
                      "multi_binary": "MultiBinary(n)"}


def _check_algorithm_takes(algo_name: str, kind: str, where: str) -> None:
    """The algorithm's ``action_spaces`` must list ``kind``: else one line naming what it takes and who takes this."""
    from rlx.algos.registry import ALGOS

    takes = ALGOS[algo_name].action_spaces
    if kind not in takes:
        raise UserError(f"algo={algo_name} does not support {ACTION_SPACE_NAMES[kind]} actions ({where}); algo={algo_name} "
                        f"takes {' or '.join(ACTION_SPACE_NAMES[k] for k in takes)}; algorithms that take "
                        f"{ACTION_SPACE_NAMES[kind]}: {_algorithms_for(kind)}")


def check_action_space_kind(algo_name: str, env_id: str, spec: EnvSpec) -> None:
    """The env's action space must be one rlx's policies act in, and one the algorithm takes (its
    ``action_spaces``): ``Discrete(n)`` (from 0), a flat float ``Box`` (finite bounds for the off-policy
    algorithms, which squash into them), a flat ``MultiDiscrete`` (every sub-action from 0) or a flat
    ``MultiBinary(n)`` (the last two: independent categoricals / Bernoullis, on-policy algorithms). Anything
    else (Dict, Tuple, ...) is a one-line UserError now, not a traceback in the run."""
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
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise UserError(f"{where}: MultiDiscrete actions must be flat (nvec of shape (n,)), not {space.nvec.shape}; "
                            f"flatten them in the env or a wrapper")
        if np.any(space.start != 0):
            raise UserError(f"{where} starts at {space.start.tolist()}: rlx's policies act in 0..nvec[j]-1 "
                            f"(MultiDiscrete with start=0); shift the actions in the env or a wrapper")
        _check_algorithm_takes(algo_name, "multi_discrete", where)
        return
    if isinstance(space, gym.spaces.MultiBinary):
        if len(space.shape) != 1:
            raise UserError(f"{where}: MultiBinary actions must be flat (MultiBinary(n)), not of shape {tuple(space.shape)}; "
                            f"flatten them in the env or a wrapper")
        _check_algorithm_takes(algo_name, "multi_binary", where)
        return
    allowed = ", ".join(f"{name} (algo={_algorithms_for(kind)})" for kind, name in ACTION_SPACE_NAMES.items())
    raise UserError(f"{where} is not supported by any rlx algorithm; allowed: {allowed}")


def check_dict_keys(dict_keys: list[str] | None, spec: EnvSpec) -> None:
    """``network.dict_keys`` must name keys of the env's Dict observation (null: all); on a Box it must be null."""
    from rlx.networks.dict_obs import dict_layout
    from rlx.networks.encoders import dict_keys_of

    layout = dict_layout(spec.observation_space)
    if layout is None:
        if dict_keys is not None:
            raise UserError(f"network.dict_keys={list(dict_keys)}: env.id={spec.id} has no Dict observation (its space: "
                            f"{spec.observation_space}); set network.dict_keys=null")
        return
    dict_keys_of(layout, dict_keys, f"env.id={spec.id}")


def trained_steps_notes(s: Settings) -> list[str]:
    """What a run will train when that is not about ``total_steps``: a whole rollout (on-policy: algo.n_steps x
    env.num_envs env steps, every worker's for A3C) or one step of all envs (off-policy) larger than total_steps
    by more than OVERSHOOT, or off-policy learning that never starts. The loops step whole rollouts (and all
    envs at once) and learn from every step; a run counts its steps per vector step up to total_steps."""
    from rlx.algos.registry import ALGOS

    cls = ALGOS[s.algo_name]
    total, envs = s.run.total_steps, s.env.num_envs
    limit = total * (1 + OVERSHOOT)
    notes = []
    if cls.loop == "off_policy":
        if envs > limit:
            notes.append(f"one step of env.num_envs={envs:,} envs is {envs:,} env steps, more than "
                         f"total_steps={total:,}: this run trains {envs:,} env steps; lower env.num_envs to train fewer")
        starts = int(getattr(s.algo, "learning_starts", 0))
        if starts >= total:
            notes.append(f"algo.learning_starts={starts:,} is not below total_steps={total:,}: this run only takes "
                         f"random actions and never updates its networks")
        return notes
    from rlx.train.run import trained_steps

    configured = getattr(s.algo, "n_steps", None)  # None: a fixed rollout (ac_online: one step of every env)
    n_steps = int(configured if configured is not None else getattr(cls, "n_steps", 1))
    rollout = n_steps * envs
    workers = int(getattr(s.algo, "num_workers", 1)) if cls.loop in ("async", "ray") else 1
    how = (f"algo.n_steps x env.num_envs = {n_steps:,} x {envs:,} = {rollout:,} env steps" if configured is not None
           else f"{n_steps} step of env.num_envs={envs:,} envs = {rollout:,} env steps")
    fewer = "env.num_envs or algo.n_steps" if configured is not None else "env.num_envs"
    if workers > 1 and rollout * workers > limit:
        notes.append(f"one rollout of each of the algo.num_workers={workers} workers ({how}) adds up to more than "
                     f"total_steps={total:,}: this run trains about {rollout * workers:,} env steps (every worker "
                     f"finishes its rollout); lower {fewer} or algo.num_workers to train fewer")
    elif workers == 1 and trained_steps(s) > limit:
        notes.append(f"total_steps={total:,} is not a whole number of rollouts ({how}): runs train whole rollouts, "
                     f"so this run trains {trained_steps(s):,} env steps; lower {fewer} or pick a multiple of "
                     f"{rollout:,} to train what you ask")
    return notes


def print_notes(notes: list[str]) -> None:
    """Each warning once, one line each, on stderr."""
    for note in dict.fromkeys(notes):
        print(f"rlx: warning: {note}", file=sys.stderr)


def _check_pbt_populations(jobs: list[tuple[DictConfig, Settings]]) -> None:
    """PBT's settings against each population the launcher will form (jobs with one group key)."""
    from rlx.config.typed import as_dict
    from rlx.train.pbt import check_pbt
    from rlx.train.population import population_group_key

    groups: dict[str, list[tuple[DictConfig, Settings]]] = {}
    for cfg, s in jobs:
        groups.setdefault(population_group_key(cfg), []).append((cfg, s))
    for group in groups.values():
        s = group[0][1]
        assert s.pbt is not None
        check_pbt(s.pbt, s.algo_name, [as_dict(c, resolve=True) for c, _ in group], s.eval.every)


def validate(overrides: list[str], notes: list[str] | None = None) -> DictConfig:
    """Compose and fully validate every configuration the overrides describe, including every value a
    ``sweep=`` preset's ``hydra.sweeper.params`` sweeps, each as it will run (a tuned preset that does
    not fit the env trained dropped, as :func:`rlx.app.entry.hydra_job` drops it); returns the first.

    What will train differently from what was asked (:func:`trained_steps_notes`) is a warning: appended to
    ``notes`` when given (the caller prints them once its own checks pass), else printed here."""
    from rlx.envs.make import env_spec
    from rlx.train.run import check_action_space, parse_settings  # run imports torch; keep `rlx --help` fast

    first: DictConfig | None = None
    specs: dict[str, EnvSpec] = {}
    pbt_jobs: list[tuple[DictConfig, Settings]] = []
    found: list[str] = []
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
        check_dict_keys(s.network.dict_keys, specs[key])
        found += trained_steps_notes(s)
        first = first or cfg
        if s.pbt is not None and s.pbt.enabled:
            if with_hydra.hydra.launcher.get("_target_") != "hydra_plugins.rlx_population_launcher.PopulationLauncher":
                raise UserError("pbt.enabled=true needs a population of at least 2 members: `rlx pbt <grid>` "
                                "(or rlx sweep <grid> hydra/launcher=population pbt.enabled=true)")
            pbt_jobs.append((cfg, s))
        elif s.pbt is not None and s.pbt.replay:
            from rlx.train.pbt import check_pbt_settings

            check_pbt_settings(s, [cfg])
    assert first is not None
    _check_pbt_populations(pbt_jobs)
    if notes is None:
        print_notes(found)
    else:
        notes += found
    return first

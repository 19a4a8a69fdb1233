"""Hydra composition outside a Hydra app (rlx's config tree, the user's ``./conf`` on the search path) with
Hydra's multi-line errors turned into one line naming the key; the sweep expansions validation needs.
Validation against the algorithms and launchers is :mod:`rlx.app.validate`."""
from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, cast

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from rlx.conf import register_resolvers
from rlx.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python 3.11+; annotations only

CONF_MODULE = "rlx.conf"
# Hydra command-line flags (not overrides); those in the first set take a value.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
CUSTOM_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
PLUGIN_EXTRAS = {"hydra/launcher/joblib": "joblib", "hydra/launcher/submitit_slurm": "slurm",
                 "hydra/launcher/submitit_local": "slurm", "hydra/sweeper/optuna": "optuna"}


# The user's config dir, first on Hydra's search path (hydra_plugins/rlx_searchpath): $RLX_CONFIG_DIR, else ./conf.
USER_CONFIG_ENV = "RLX_CONFIG_DIR"
USER_CONFIG_DEFAULT = "conf"
USER_PROVIDER = "rlx-user"


def user_search_dir() -> Path | None:
    """The user's config dir as an absolute path when it exists, else None (never raises: Hydra's search
    path plugin calls this; :func:`user_config_dir` is the checked version)."""
    given = os.environ.get(USER_CONFIG_ENV) or USER_CONFIG_DEFAULT
    path = Path(given).expanduser().absolute()
    return path if path.is_dir() else None


def user_config_label() -> str:
    """How ``rlx list`` and errors name the user's config dir: ``./conf`` or ``$RLX_CONFIG_DIR``'s value."""
    given = os.environ.get(USER_CONFIG_ENV)
    return given if given else f"./{USER_CONFIG_DEFAULT}"


def user_config_dir() -> Path | None:
    """The user's config dir (``$RLX_CONFIG_DIR``, else ``./conf``; None when unset and ./conf is absent).
    A ``$RLX_CONFIG_DIR`` that is not a directory is a UserError, and so is a ``config.yaml`` at the dir's
    top: Hydra would take it for rlx's root config (the defaults list and every run-level key)."""
    given = os.environ.get(USER_CONFIG_ENV)
    path = user_search_dir()
    if given and path is None:
        raise UserError(f"{USER_CONFIG_ENV}={given}: no such directory (it holds your config groups, e.g. "
                        f"algo/my_ppo.yaml; unset it to use ./{USER_CONFIG_DEFAULT})")
    if path is not None and (path / "config.yaml").is_file():
        raise UserError(f"{path / 'config.yaml'}: a user config dir holds config groups (algo/, env/, network/, "
                        f"...), and a config.yaml at its top would replace rlx's root config; move it, or set "
                        f"{USER_CONFIG_ENV} to another dir")
    return path


def _yaml_names(root: Traversable) -> set[str]:
    return {p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml") and p.is_file()} if root.is_dir() else set()


def shipped_group_options(group: str) -> list[str]:
    """The YAML files rlx ships in one config group (``rlx/conf/<group>/``)."""
    return sorted(_yaml_names(resources.files(CONF_MODULE) / group))


def user_group_options(group: str) -> list[str]:
    """The YAML files of one config group in the user's config dir (see :func:`user_config_dir`)."""
    user = user_config_dir()
    return sorted(_yaml_names(user / group)) if user is not None else []


def group_options(group: str) -> list[str]:
    """The options of one config group (``algo``, ``env``, ...): the YAML files rlx ships and those in the
    user's config dir. FileNotFoundError when neither has the group."""
    shipped, user = shipped_group_options(group), user_group_options(group)
    if not shipped and not user and not (resources.files(CONF_MODULE) / group).is_dir():
        raise FileNotFoundError(f"no config group '{group}'")
    return sorted(set(shipped) | set(user))


def group_file(group: str, option: str) -> Traversable:
    """The YAML file Hydra reads for ``group=option``: the user's when there is one (it comes first on the
    search path), else rlx's."""
    user = user_config_dir()
    if user is not None and (user / group / f"{option}.yaml").is_file():
        return user / group / f"{option}.yaml"
    return resources.files(CONF_MODULE) / group / f"{option}.yaml"


def split_args(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """(overrides, hydra flags) from the raw arguments after ``rlx train``."""
    overrides, flags = [], []
    it = iter(args)
    for a in it:
        if a.startswith("-"):
            flags.append(a)
            if a in FLAGS_WITH_VALUE:
                flags.append(next(it, ""))
        elif flags and flags[-1] == "--info" and a in INFO_VALUES:
            flags.append(a)
        else:
            overrides.append(a)
    return overrides, flags


def compose_config(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose rlx's config as ``rlx train`` would, with friendly errors (``hydra`` node on request)."""
    check_override_syntax(overrides)
    user_config_dir()  # a missing $RLX_CONFIG_DIR: one line here, not a group Hydra cannot find
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONF_MODULE, version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    except Exception as e:  # Hydra's errors, and omegaconf's (type/struct) that surface through it
        raise UserError(friendly_hydra_error(str(e))) from None
    finally:
        GlobalHydra.instance().clear()


def compose_run_config(overrides: list[str]) -> tuple[DictConfig, str | None]:
    """What ``rlx train OVERRIDES`` trains, composed outside Hydra's app (``rlx tune``'s trials): the config
    without its ``hydra`` node and without a tuned preset that belongs to another env id (the rule of
    :func:`tuned_preset_conflict`, as ``rlx train`` applies it); returns (config, the note or None)."""
    cfg = compose_config(overrides, return_hydra_config=True)
    note = tuned_preset_conflict(cfg.hydra.runtime.choices, str(cfg.env.id))
    if note:
        cfg = compose_config([*overrides, "~tuned"])
    else:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg, note


REQUIRED_GROUPS = ("algo", "env", "network")


def check_override_syntax(overrides: Iterable[str]) -> None:
    """The mistakes Hydra reports without naming the override: a missing key, a removed required group,
    a word that is not key=value (often the rest of an unquoted path with spaces), non-ASCII text."""
    overrides = list(overrides)
    for i, o in enumerate(overrides):
        key, sep, value = o.partition("=")
        if o.startswith("~") and key.lstrip("~") in REQUIRED_GROUPS:
            raise UserError(f"'{o}': every run needs an {key.lstrip('~')} config; choose one with {key.lstrip('~')}=NAME "
                            f"(see `rlx list`)")
        if sep and not key.lstrip("+~"):
            raise UserError(f"'{o}': no key before '='; expected key=value (e.g. seed=3)")
        if not sep and not o.startswith("~"):
            after = f" after '{overrides[i - 1]}'" if i else ""
            raise UserError(f"'{o}'{after}: expected key=value. A value with spaces must be quoted for both the "
                            f"shell and Hydra, e.g. 'hydra.run.dir=\"runs/my run\"'")
        if not o.isascii() and not re.search(r"=\s*(['\"]).*\1\s*$", o):
            raise UserError(f"'{o}': Hydra's parser takes non-ASCII text only inside quotes; write it as "
                            f"'{key}=\"{value}\"' (single quotes for the shell, double quotes for Hydra)")


def friendly_hydra_error(msg: str) -> str:
    """One line from Hydra's error text, with a suggestion where we can make one."""
    m = re.search(r"Could not (?:find|load) '([^']+)/([^']+)'", msg)  # load: from a preset's defaults
    if m:
        group, option = m.groups()
        if f"{group}/{option}" in PLUGIN_EXTRAS:
            return f"{group}={option}: the Hydra plugin is not installed; pip install 'rlx[{PLUGIN_EXTRAS[group + '/' + option]}]'"
        try:
            opts = group_options(group)
        except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
            opts = re.findall(r"^\t(\S+)", msg, re.M)
        close = difflib.get_close_matches(option, opts, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{group}={option} is not an option{hint}; choose one of: {', '.join(opts)}"
    m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        full = re.search(r"full_key: (\S+)", msg)
        key = full.group(1) if full else key
        if key in _all_keys():  # a dict value (e.g. env.kwargs) replaced by a dict with new keys
            return f"{key}: new keys can't be merged into it this way; add each with +{key}.NAME=VALUE"
        return f"unknown key '{key}'{_suggest_key(key)}"
    m = re.search(r"Could not append to config. An item is already at '([^']+)'", msg)
    if m:
        return f"'+{m.group(1)}': the key already exists; set it without '+'"
    first = next((line.strip() for line in msg.splitlines() if line.strip()), msg)
    return first


def _all_keys() -> list[str]:
    try:
        cfg = compose_config([])
    except UserError:
        return []
    out: list[str] = []

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            out.append(key)
            if isinstance(v, DictConfig):
                walk(v, key + ".")

    walk(cfg, "")
    return out


def _suggest_key(key: str) -> str:
    keys = _all_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f": did you mean '{close[0]}'?" if close else " (see `rlx train --cfg job` for all keys)"


def override_text(o: Override) -> str:
    """An override as given on the command line (Hydra's parser always sets ``input_line``; it is typed Optional)."""
    assert o.input_line is not None
    return o.input_line


def _sweep_values(o: Override) -> list[str]:
    """The individual values a sweep override will take (interval sweeps: their end points)."""
    if not o.is_sweep_override():
        return [o.get_value_element_as_str()]
    value = o.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return list(o.sweep_string_iterator())


def expand_for_validation(overrides: list[str]) -> list[list[str]]:
    """Override lists that together cover every value of every swept key (not the full product)."""
    check_override_syntax(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(friendly_hydra_error(str(e))) from None
    options = [[f"{o.get_key_element()}={v}" for v in _sweep_values(o)] if o.is_sweep_override() else [override_text(o)]
               for o in parsed]
    base = [opts[0] for opts in options]
    combos = [base]
    for i, opts in enumerate(options):
        for alternative in opts[1:]:
            combos.append(base[:i] + [alternative] + base[i + 1:])
    return combos


def with_sweeper_params(overrides: list[str], hydra_cfg: DictConfig) -> list[str]:
    """What a multirun sweeps: the config's ``hydra.sweeper.params`` (a ``sweep=`` preset's grid), then
    the command line, which wins key by key (Hydra's BasicSweeper merges them the same way)."""
    params = OmegaConf.select(hydra_cfg, "hydra.sweeper.params")
    if not params:
        return list(overrides)
    try:
        on_command_line = {o.get_key_element() for o in OverridesParser.create().parse_overrides(overrides)}
    except HydraException as e:
        raise UserError(friendly_hydra_error(str(e))) from None
    return [f"{k}={v}" for k, v in params.items() if k not in on_command_line] + list(overrides)


def tuned_preset_conflict(choices: Mapping[str, Any], env_id: str) -> str | None:
    """The ``tuned/<algo>_<env>`` preset is chosen by env *group*, but belongs to that group's env id only.
    With ``env.id`` changed (``env.id=Acrobot-v1`` on the default cartpole group) it must not apply:
    returns the note saying so (None when the preset fits or there is none). ``choices``: Hydra's
    ``hydra.runtime.choices``."""
    preset, group = choices.get("tuned"), choices.get("env")
    if not preset or not group or group not in group_options("env"):
        return None
    env_group = cast(DictConfig, OmegaConf.load(str(group_file("env", group))))  # a mapping (the user's file, if any)
    tuned_for = env_group.get("id")
    if tuned_for is None or tuned_for == env_id:
        return None
    return (f"tuned preset '{preset}' is for {tuned_for}, not env.id={env_id}: not applied "
            f"(algo={choices.get('algo')} defaults instead; `~tuned` silences this note)")

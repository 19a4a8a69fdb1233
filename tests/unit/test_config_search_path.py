"""The user's config dir on Hydra's search path (hydra_plugins/rlx_searchpath): ./conf or $RLX_CONFIG_DIR,
composed by rlx.config.compose as by `rlx train`, listed by group_options, overriding shipped files."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from rlx.config.compose import (
    USER_CONFIG_ENV,
    compose_config,
    group_file,
    group_options,
    shipped_group_options,
    tuned_preset_conflict,
    user_config_dir,
    user_group_options,
)
from rlx.errors import UserError


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def user_conf(tmp_path, monkeypatch) -> Path:
    """A cwd with conf/algo/my_ppo.yaml, conf/env/my_env.yaml and conf/env/cartpole.yaml (over rlx's)."""
    monkeypatch.delenv(USER_CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    write(conf / "algo" / "my_ppo.yaml", """\
        # PPO, smaller clip range
        defaults:
          - ppo
        clip_eps: 0.12
        """)
    write(conf / "env" / "my_env.yaml", "# Acrobot, 3 envs\nid: Acrobot-v1\nnum_envs: 3\n")
    write(conf / "env" / "cartpole.yaml", "# my CartPole\nid: CartPole-v1\nmax_episode_steps: 123\n")
    return conf


def test_the_plugin_is_found_by_hydra():
    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(SearchPathPlugin)]
    assert "hydra_plugins.rlx_searchpath.RlxUserConfigSearchPath" in names


def test_user_groups_compose_outside_hydra_apps(user_conf):
    cfg = compose_config(["algo=my_ppo", "env=my_env"], return_hydra_config=True)
    assert cfg.algo.name == "ppo" and cfg.algo.clip_eps == 0.12 and cfg.algo.gae_lambda == 0.95  # ppo's, then mine
    assert cfg.env.id == "Acrobot-v1" and cfg.env.num_envs == 3 and cfg.env.wrappers == []  # the root's env keys too
    assert cfg.hydra.runtime.choices.algo == "my_ppo"
    first = cfg.hydra.runtime.config_sources[0]  # before Hydra's and rlx's own
    assert (first.provider, first.schema, first.path) == ("rlx-user", "file", str(user_conf))


def test_a_user_file_overrides_the_shipped_one(user_conf):
    assert compose_config(["~tuned"]).env.max_episode_steps == 123
    assert group_file("env", "cartpole") == user_conf / "env" / "cartpole.yaml"
    assert group_file("env", "pendulum").name == "pendulum.yaml" and "rlx" in str(group_file("env", "pendulum"))


def test_group_options_include_user_files(user_conf):
    assert "my_ppo" in group_options("algo") and "ppo" in group_options("algo")
    assert group_options("env").count("cartpole") == 1 and "my_env" in group_options("env")
    assert user_group_options("env") == ["cartpole", "my_env"] and "my_env" not in shipped_group_options("env")
    with pytest.raises(FileNotFoundError):
        group_options("no_such_group")


def test_friendly_errors_suggest_user_options(user_conf):
    with pytest.raises(UserError, match=r"algo=my_ppp is not an option \(did you mean 'my_ppo'\?\).*my_ppo"):
        compose_config(["algo=my_ppp"])


def test_tuned_preset_check_reads_the_user_env_file(user_conf):
    assert tuned_preset_conflict({"tuned": "ppo_my_env", "env": "my_env", "algo": "ppo"}, "Acrobot-v1") is None
    assert "is for Acrobot-v1" in tuned_preset_conflict({"tuned": "ppo_my_env", "env": "my_env", "algo": "ppo"}, "CartPole-v1")


def test_rlx_config_dir_wins_over_cwd_conf(user_conf, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    write(other / "algo" / "my_ppo.yaml", "defaults:\n  - ppo\nclip_eps: 0.33\n")
    monkeypatch.setenv(USER_CONFIG_ENV, str(other))
    assert user_config_dir() == other
    assert compose_config(["algo=my_ppo"]).algo.clip_eps == 0.33
    assert "my_env" not in group_options("env")


def test_no_user_dir_is_rlx_alone(tmp_path, monkeypatch):
    monkeypatch.delenv(USER_CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert user_config_dir() is None and user_group_options("algo") == []
    assert group_options("env") == shipped_group_options("env")


def test_missing_rlx_config_dir_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(USER_CONFIG_ENV, str(tmp_path / "nope"))
    with pytest.raises(UserError, match=f"RLX_CONFIG_DIR={tmp_path / 'nope'}: no such directory") as e:
        compose_config([])
    assert "\n" not in str(e.value)
    with pytest.raises(UserError):
        group_options("algo")


def test_a_root_config_yaml_in_the_user_dir_is_refused(user_conf):
    """Hydra would read it as rlx's root config (defaults list, every run-level key)."""
    write(user_conf / "config.yaml", "seed: 1\n")
    with pytest.raises(UserError, match="config.yaml at its top would replace rlx's root config"):
        compose_config([])

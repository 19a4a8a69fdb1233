"""A user's config dir through the real CLI: ./conf (the cwd's) or $RLX_CONFIG_DIR, first on Hydra's search
path, so its group files are options of `rlx train`, `rlx sweep` and `rlx list`, validated as rlx's own."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST, run_cli

QUIET = ["logger.wandb.mode=disabled", "logger.tensorboard=false", *FAST]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project dir whose conf/ has its own algo and env, and its own CartPole over rlx's."""
    root = tmp_path_factory.mktemp("project")
    files = {
        "algo/my_ppo.yaml": """\
            # PPO with short rollouts
            defaults:
              - ppo
            clip_eps: 0.15
            n_steps: 32
            batch_size: 32
            n_epochs: 1
            """,
        "env/my_env.yaml": "# CartPole, two envs\nid: CartPole-v1\nnum_envs: 2\n",
        "env/cartpole.yaml": "# my CartPole\nid: CartPole-v1\nmax_episode_steps: 123\n",
        "algo/bad_ppo.yaml": "defaults:\n  - ppo\nclip_epz: 0.1\n",
    }
    for name, text in files.items():
        path = root / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def env_without_user_dir() -> dict[str, str]:
    return {"RLX_CONFIG_DIR": ""}  # empty: as unset (the tests' own environment may set it)


def test_train_with_user_algo_and_env(project):
    out = project / "runs" / "mine"
    r = run_cli("train", "algo=my_ppo", "env=my_env", "total_steps=64", "eval.episodes=1", f"hydra.run.dir={out}", *QUIET,
                cwd=project, env=env_without_user_dir())
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["algo"]["name"] == "ppo" and cfg["algo"]["clip_eps"] == 0.15 and cfg["algo"]["n_steps"] == 32
    assert cfg["algo"]["gae_lambda"] == 0.95  # the rest from rlx's ppo.yaml
    assert cfg["env"]["num_envs"] == 2


def test_sweep_over_a_user_algo(project):
    out = project / "runs" / "sweep"
    r = run_cli("sweep", "algo=my_ppo", "env=my_env", "seed=0,1", "total_steps=64", "eval.episodes=1",
                f"hydra.sweep.dir={out}", *QUIET, cwd=project, env=env_without_user_dir())
    assert r.returncode == 0, r.stderr
    for job in ("0", "1"):
        assert yaml.safe_load((out / job / "config.yaml").read_text())["algo"]["clip_eps"] == 0.15
    assert (out / "report.md").exists()


def test_cfg_job_shows_the_user_values_and_the_override_of_a_shipped_file(project):
    r = run_cli("train", "algo=my_ppo", "--cfg", "job", cwd=project, env=env_without_user_dir())
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["algo"]["clip_eps"] == 0.15
    assert cfg["env"]["max_episode_steps"] == 123  # conf/env/cartpole.yaml wins over rlx's (the default env)


def test_a_bad_key_in_a_user_file_is_rlx_one_line_error(project):
    r = run_cli("train", "algo=bad_ppo", "total_steps=64", *QUIET, cwd=project, env=env_without_user_dir())
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "unknown key 'algo.clip_epz'" in r.stderr and "did you mean 'algo.clip_eps'" in r.stderr


def test_list_shows_user_options(project):
    r = run_cli("list", cwd=project, env={**env_without_user_dir(), "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") >= 3}
    assert "./conf" in rows["my_ppo"] and "(algo ppo)" in rows["my_ppo"] and "discrete, continuous" in rows["my_ppo"]
    assert "./conf" in rows["my_env"] and "CartPole, two envs" in rows["my_env"]
    assert "./conf (over rlx's)" in rows["cartpole"] and "my CartPole" in rows["cartpole"]
    assert "algo ppo" in rows["bad_ppo"]  # it composes; its bad key is found when it is trained
    assert rows["pendulum"].rstrip("│ ").endswith("rlx")


def test_rlx_config_dir_from_any_cwd(project, tmp_path):
    r = run_cli("train", "algo=my_ppo", "env=my_env", "--cfg", "job", cwd=tmp_path,
                env={"RLX_CONFIG_DIR": str(project / "conf")})
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["algo"]["clip_eps"] == 0.15 and cfg["env"]["num_envs"] == 2
    r = run_cli("list", cwd=tmp_path, env={"RLX_CONFIG_DIR": str(project / "conf"), "COLUMNS": "200"})
    assert r.returncode == 0 and f"{project / 'conf'} (over rlx's)" in r.stdout


def test_missing_rlx_config_dir_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "nope"
    for args in (["train", "total_steps=64", *QUIET], ["list"]):
        r = run_cli(*args, cwd=tmp_path, env={"RLX_CONFIG_DIR": str(missing)})
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"rlx: error: RLX_CONFIG_DIR={missing}: no such directory (it holds your config " \
                                   "groups, e.g. algo/my_ppo.yaml; unset it to use ./conf)"

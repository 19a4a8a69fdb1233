"""Bad input: one line naming the key/value and what is allowed, exit code 2, no traceback."""
import json
import re

import pytest

from tests.conftest import run_cli

CASES = [
    (["train", "algo=nope"], "algo=nope is not an option"),
    (["train", "algo.clip_esp=0.1"], "did you mean 'algo.clip_eps'"),
    (["train", "algo.lr=abc"], "algo.lr='abc': expected float"),
    (["train", "algo.clip_eps=0"], "algo.clip_eps=0"),
    (["train", "algo.gamma=1.5"], "allowed [0, 1]"),
    (["train", "algo.gae_lambda=2"], "allowed [0, 1]"),
    (["train", "total_steps=0"], "total_steps=0"),
    (["train", "env.id=NoSuchEnv-v0"], "gymnasium doesn't know"),
    (["train", "env.id=CartPol-v1"], "Did you mean: CartPole-v1"),
    (["train", "device=tpu"], "device='tpu'"),
    (["train", "-m", "algo.clip_eps=0.1,-1"], "algo.clip_eps=-1"),
    # seeds: NumPy takes 0 .. 2**32 - 1
    (["train", "seed=4294967296"], "seed=4294967296: out of range, allowed [0, 4294967295]"),
    (["train", "seed=-1"], "seed=-1: out of range, allowed [0, 4294967295]"),
    (["train", "-m", "seed=0,4294967296"], "seed=4294967296: out of range"),
    # a float for an int key: accepted when whole (1e4), one line otherwise
    (["train", "total_steps=1234.5"], "total_steps=1234.5: expected int"),
    (["train", "env.num_envs=2.5"], "env.num_envs=2.5: expected int"),
    (["train", "network.hidden_sizes=[64,32.5]"], "network.hidden_sizes=[64, 32.5]: expected list of int"),
]


@pytest.mark.parametrize("args, fragment", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_train_input(args, fragment, tmp_path):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_eval_missing_checkpoint(tmp_path):
    r = run_cli("eval", str(tmp_path / "nope.pt"), cwd=tmp_path)
    assert r.returncode == 2 and "no such checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_eval_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"this is not a checkpoint")
    r = run_cli("eval", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "not a readable rlx checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_eval_empty_run_dir(tmp_path):
    r = run_cli("eval", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "no checkpoints" in r.stderr


QUIET = ["logger.progress=false", "logger.wandb.mode=disabled", "logger.tensorboard=false", "torch_threads=1"]
BASE = ["eval.every=0", "eval.episodes=1", *QUIET]  # any algorithm
TINY = ["total_steps=64", "algo.n_steps=16", "algo.batch_size=64", "env.num_envs=4", *BASE]  # PPO, 64 steps


def test_a_run_into_the_default_outputs_leaves_exactly_one_run_dir(tmp_path):
    """The run dir is checked before Hydra creates it, and checking writes nothing: no empty twin holding
    only .rlx.lock (``${now:%f}`` resolves to another microsecond in Hydra)."""
    r = run_cli("train", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "outputs").glob("*/*")
    assert (run / "summary.json").is_file()


LONG = "x" * 300


@pytest.mark.parametrize("args, fragment", [
    (["train", "hydra.run.dir=FILE"], "hydra.run.dir=FILE: exists and is not a directory"),
    (["train", "hydra.run.dir=FILE/run"], "FILE exists and is not a directory"),
    (["train", f"hydra.run.dir=runs/{LONG}/run"], "is 300 bytes long; a file or directory name may have at most 255"),
    (["train", "-m", "hydra.sweep.dir=FILE", "seed=0,1"], "hydra.sweep.dir=FILE: exists and is not a directory"),
    (["train", "-m", "hydra.sweep.dir=FILE/sweep", "seed=0,1"], "FILE exists and is not a directory"),
    (["train", "-m", f"hydra.sweep.dir=sweeps/{LONG}", "seed=0,1"], "is 300 bytes long"),
    (["train", "-m", "hydra.sweep.dir=sweeps/s", f"hydra.sweep.subdir={LONG}", "seed=0,1"], "is 300 bytes long"),
    (["sweep", "hydra.sweep.dir=FILE", "seed=0,1"], "hydra.sweep.dir=FILE: exists and is not a directory"),
    (["sweep", f"hydra.sweep.dir=sweeps/{LONG}", "seed=0,1"], "is 300 bytes long"),
], ids=["run-dir-file", "run-dir-under-file", "run-dir-long-name", "train-m-sweep-dir-file",
        "train-m-sweep-dir-under-file", "train-m-sweep-dir-long-name", "train-m-subdir-long-name", "sweep-dir-file",
        "sweep-dir-long-name"])
def test_a_run_or_sweep_dir_that_cannot_be_created_is_one_line_before_anything_runs(tmp_path, args, fragment):
    file = tmp_path / "taken.txt"
    file.write_text("not a dir")
    r = run_cli(*[a.replace("FILE", str(file)) for a in args], *TINY, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("rlx: error: ") and fragment.replace("FILE", str(file)) in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.txt"]  # no run dir, no sweep dir, no parent


def test_a_whole_float_is_taken_for_an_int_everywhere(tmp_path):
    """total_steps=1e4 is 10000: in the typed settings and in the config itself (config.yaml, worker processes)."""
    from rlx.config.schema import NetworkConfig, RunConfig
    from rlx.config.typed import build

    run = build(RunConfig, {"total_steps": 1e4, "seed": 3.0}, "")
    assert run.total_steps == 10000 and type(run.total_steps) is int and type(run.seed) is int
    assert build(NetworkConfig, {"hidden_sizes": [64.0, 3.2e1]}, "network").hidden_sizes == [64, 32]
    r = run_cli("train", *TINY, "total_steps=6.4e1", "env.num_envs=4.0", "hydra.run.dir=run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "\ntotal_steps: 64\n" in saved and "  num_envs: 4\n" in saved, saved


MY_ENVS = '''
import gymnasium as gym
import numpy as np


class Plain(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


class MultiDiscreteActions(Plain):
    action_space = gym.spaces.MultiDiscrete([2, 3])


class MultiBinaryActions(Plain):
    action_space = gym.spaces.MultiBinary(3)


class DictActions(Plain):
    action_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})


class DictObservations(Plain):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})


class UnboundedActions(Plain):
    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


class NotAnEnvClass:
    pass


NotAnEnv = 3
gym.register("MyEnvsPlain-v0", entry_point=Plain)
'''


def _one_line_error(r, tmp_path, fragment):
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("rlx: error: ") and fragment in line, line
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("args, fragment", [
    (["algo=td3", "env.id=my_envs:MultiDiscreteActions"], "algo=td3 does not support MultiDiscrete(nvec) actions "
                                                          "(env.id=my_envs:MultiDiscreteActions: action space MultiDiscrete([2 3]))"),
    (["algo=sac", "env.id=my_envs:MultiBinaryActions"], "algo=sac does not support MultiBinary(n) actions"),
    (["env.id=my_envs:DictActions"], "action space Dict('a': Discrete(2)) is not supported by any rlx algorithm; "
                                     "allowed: Discrete(n)"),
    (["algo=sac", "env.id=my_envs:UnboundedActions"], "algo=sac needs bounded actions (finite low and high)"),
    (["env.id=my_envs:DictObservations", "algo=trpo"], "algo=trpo does not support Dict observations"),
    (["-m", "env.id=my_envs:MultiDiscreteActions,my_envs:DictActions"], "Dict('a': Discrete(2)) is not supported"),
], ids=["multidiscrete-td3", "multibinary-sac", "dict-actions", "unbounded-sac", "dict-observations", "multirun"])
def test_a_space_no_algorithm_takes_is_one_line_before_the_run_dir(tmp_path, args, fragment):
    (tmp_path / "my_envs.py").write_text(MY_ENVS)  # importable: run_cli's cwd is on sys.path
    _one_line_error(run_cli("train", *args, *BASE, cwd=tmp_path), tmp_path, fragment)


def test_action_spaces_checked_before_a_run():
    """Every kind of action space the policies cannot act in (unit: no CLI per kind)."""
    import gymnasium as gym
    import numpy as np

    from rlx.app.validate import check_action_space_kind
    from rlx.envs.make import EnvSpec
    from rlx.errors import UserError

    obs = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    bad = [
        (gym.spaces.MultiDiscrete([[2, 2], [2, 2]]), "MultiDiscrete actions must be flat"),
        (gym.spaces.MultiBinary([2, 2]), "MultiBinary actions must be flat"),
        (gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2))), "not supported by any rlx algorithm"),
        (gym.spaces.Discrete(3, start=1), "starts at 1"),
        (gym.spaces.Box(0, 5, (2,), np.int64), "integer Box actions"),
        (gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32), "flat Box of shape (n,)"),
    ]
    for space, fragment in bad:
        with pytest.raises(UserError, match=re.escape(fragment)):
            check_action_space_kind("ppo", "x:Env", EnvSpec("x", obs, space))
    check_action_space_kind("ppo", "x:Env", EnvSpec("x", obs, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)))
    with pytest.raises(UserError, match="algo=td3 needs bounded actions"):
        check_action_space_kind("td3", "x:Env", EnvSpec("x", obs, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)))
    with pytest.raises(UserError, match=re.escape("algo=sac does not support MultiDiscrete(nvec) actions")):
        check_action_space_kind("sac", "x:Env", EnvSpec("x", obs, gym.spaces.MultiDiscrete([2, 2])))
    for good in (gym.spaces.Discrete(2), gym.spaces.Box(-2.0, 2.0, (1,), np.float32), gym.spaces.MultiDiscrete([2, 3]),
                 gym.spaces.MultiBinary(4)):
        check_action_space_kind("ppo", "x:Env", EnvSpec("x", obs, good))


@pytest.mark.parametrize("env_id, fragments", [
    ("my_envs:NotAnEnv", ["my_envs.NotAnEnv is not a gymnasium.Env subclass (it is of type int)",
                          "Env classes: DictActions, ", "registered ids: MyEnvsPlain-v0"]),
    ("my_envs:NotAnEnvClass", ["my_envs.NotAnEnvClass is a class that does not subclass gymnasium.Env"]),
    ("my_envs:Missing", ["module 'my_envs' (", "my_envs.py) has no 'Missing'", "expected module:Class"]),
    ("my_envs:MyEnvsPlain-v1", ["has no 'MyEnvsPlain-v1'", "Did you mean my_envs:MyEnvsPlain-v0?"]),
    ("no_such_module:X", ["env.id=no_such_module:X: no module named 'no_such_module'", "PYTHONPATH"]),
    ("broken_envs:X", ["importing module 'broken_envs' failed: RuntimeError: broken on import"]),
    ("needs_dep:X", ["importing module 'needs_dep' failed: it needs 'no_such_dependency'"]),
], ids=["not-an-env", "not-an-env-class", "missing", "near-registered-id", "no-module", "raises-on-import",
        "missing-dependency"])
def test_a_module_env_id_that_does_not_resolve_names_the_module(tmp_path, env_id, fragments):
    (tmp_path / "my_envs.py").write_text(MY_ENVS)
    (tmp_path / "broken_envs.py").write_text("raise RuntimeError('broken on import')\n")
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency\n")
    r = run_cli("train", f"env.id={env_id}", *BASE, cwd=tmp_path)
    _one_line_error(r, tmp_path, f"env.id={env_id}: ")
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr
    assert "gymnasium doesn't know" not in r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["env.num_envs=64", "total_steps=100"], "total_steps=100 is not a whole number of rollouts (algo.n_steps x "
                                             "env.num_envs = 32 x 64 = 2,048 env steps): runs train whole rollouts, "
                                             "so this run trains 2,048 env steps"),
    (["total_steps=2100"], "total_steps=2,100 is not a whole number of rollouts (algo.n_steps x env.num_envs = 32 x 8 = "
                           "256 env steps): runs train whole rollouts, so this run trains 2,304 env steps"),
    (["algo=sac", "env=pendulum", "env.num_envs=300", "total_steps=200"],
     "one step of env.num_envs=300 envs is 300 env steps, more than total_steps=200: this run trains 300 env steps"),
    (["algo=sac", "env=pendulum", "algo.learning_starts=500", "total_steps=500"],
     "algo.learning_starts=500 is not below total_steps=500: this run only takes random actions"),
    (["algo=a3c", "algo.n_steps=20", "env.num_envs=4", "total_steps=100"], "this run trains about 160 env steps"),
], ids=["on-policy", "whole-rollouts", "off-policy-envs", "learning-never-starts", "a3c-workers"])
def test_a_run_that_trains_other_than_total_steps_says_so_in_one_warning(tmp_path, args, fragment):
    r = run_cli("train", *args, "--cfg", "job", cwd=tmp_path)  # --cfg job: validated, printed, not trained
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("rlx: warning: ") and fragment in line, line


def test_the_rollout_warning_says_what_trains_and_is_printed_once(tmp_path):
    args = ["algo.n_steps=64", "algo.batch_size=64", "env.num_envs=4", "total_steps=100", "hydra.run.dir=run",
            *BASE]
    r = run_cli("train", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("rlx: warning:")]
    assert len(warnings) == 1 and "this run trains 256 env steps" in warnings[0], r.stderr
    counted = json.loads((tmp_path / "run" / "summary.json").read_text())["env_steps"]
    assert counted == 256, counted  # what it said: one rule for the count, the progress and the warning
    r = run_cli("train", "total_steps=3072", "--cfg", "job", cwd=tmp_path)  # whole rollouts of 256 steps: no warning
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr

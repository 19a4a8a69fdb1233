"""One driver (issue 22): a plain run is a job of one; a member's run dir and checkpoints are a plain run's;
members resume exactly, together or alone; `rlx resume` takes a run dir, a member dir or a sweep dir."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlx.config.compose import compose_config
from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import resume, resume_at, train, train_job

QUIET = ["logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0"]
PPO = ["algo=ppo", "env=cartpole", "algo.n_steps=32", "algo.batch_size=64", "algo.n_epochs=2", "env.num_envs=2",
       "network.hidden_sizes=[16]", "eval.every=256", "eval.episodes=2"]
SAC = ["algo=sac", "env=pendulum", "algo.learning_starts=50", "algo.batch_size=32", "network.hidden_sizes=[16]",
       "env.num_envs=2", "eval.every=100", "eval.episodes=1"]
TRPO = ["algo=trpo", "env=cartpole", "algo.n_steps=64", "algo.batch_size=128", "env.num_envs=2",
        "network.hidden_sizes=[16]", "eval.every=256", "eval.episodes=2"]
WALL_CLOCK = ("wall_s", "sps")


def _cfg(*overrides: str):
    return compose_config([*QUIET, *overrides])


def _lines(run_dir: Path, training_only: bool = False) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if training_only:  # a run that stopped and resumed has one more eval: the final one at the stop
        lines = [x for x in lines if "updates" in x]
    return [{k: v for k, v in x.items() if k not in WALL_CLOCK} for x in lines]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa = load_checkpoint(a / "checkpoints" / "last.pt", with_buffer=False)["algo"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt", with_buffer=False)["algo"]

    def walk(x, y, path=""):
        if isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=path)
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), path
            for key in x:
                walk(x[key], y[key], f"{path}.{key}")
        elif isinstance(x, (list, tuple)):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{path}[{i}]")
    walk(wa, wb)


@pytest.mark.parametrize("algo", [PPO, SAC, TRPO], ids=["ppo", "sac", "trpo"])
def test_a_population_of_one_is_the_plain_run(algo, tmp_path):
    """The whole metrics.jsonl (minus wall clock) and the weights: `rlx train` = a job of one."""
    steps = "total_steps=400" if algo is SAC else "total_steps=512"
    plain = train(_cfg(*algo, steps), tmp_path / "plain")
    (member,) = train_job([_cfg(*algo, steps)], [tmp_path / "member"])
    assert _lines(tmp_path / "plain") == _lines(tmp_path / "member")
    assert {k: v for k, v in plain.items() if k not in WALL_CLOCK} == {k: v for k, v in member.items() if k not in WALL_CLOCK}
    _assert_same_weights(tmp_path / "plain", tmp_path / "member")
    assert not (tmp_path / "member" / "population.json").exists()  # nothing that depends on K


@pytest.mark.parametrize("algo,total,half,compiled", [(PPO, 512, 256, False), (SAC, 400, 200, False), (SAC, 400, 200, True)],
                         ids=["ppo", "sac", "sac-compiled"])
def test_a_stopped_and_resumed_population_equals_an_uninterrupted_one(algo, total, half, compiled, tmp_path):
    """Each member's checkpoint carries its slice of the loop (envs mid-episode, observations, its own replay
    buffer, episode statistics): resuming both members from their own checkpoints continues exactly.
    ``compiled``: with compile=true (the update step torch.compile'd: each job compiles it, from inductor's
    cache after the first, tests/unit/test_compile.py's same graph)."""
    every = f"logger.every={half // 2}"  # a log line at the stop in both runs: the same lines

    def cfgs(steps: int) -> list:
        fixed = ["algo.anneal_lr=false", "algo.anneal_clip=false"] if algo is PPO else []  # no schedule over total_steps
        return [_cfg(*algo, *fixed, f"total_steps={steps}", every, f"seed={seed}", f"compile={str(compiled).lower()}")
                for seed in (1, 2)]
    straight = [tmp_path / "straight" / m for m in ("a", "b")]
    stopped = [tmp_path / "stopped" / m for m in ("a", "b")]
    train_job(cfgs(total), straight)
    train_job(cfgs(half), stopped)
    state = load_checkpoint(stopped[1] / "checkpoints" / "last.pt")
    assert state["loop"]["obs"].shape[0] == 2  # member b's two envs, not the population's four
    if algo is SAC:
        assert state["loop"]["buffer"]["data"].shape[0] == half  # its own ring, in a plain run's layout
    resumed = resume_at(tmp_path / "stopped", [f"total_steps={total}"])  # the sweep dir: both members together
    assert [s["env_steps"] for s in resumed] == [total, total]
    for a, b in zip(straight, stopped, strict=True):
        assert _lines(a, training_only=True) == _lines(b, training_only=True)
        _assert_same_weights(a, b)


def test_a_run_stopped_mid_rollout_counts_its_rollout_and_resumes_exactly(tmp_path, monkeypatch):
    """A signal mid-rollout: the rollout is finished, learned from and counted (as a plain Session did), so
    the resumed run keeps the uninterrupted run's cadences and numbers."""
    from rlx.train.session import Session

    fixed = ["algo.anneal_lr=false", "algo.anneal_clip=false", "logger.every=64"]
    straight = train(_cfg(*PPO, *fixed, "total_steps=512"), tmp_path / "straight")
    original = Session.add_steps

    def add_steps(self, n):
        original(self, n)
        if self.env_steps == 100:  # mid-rollout (rollouts of 32 steps x 2 envs)
            self.stop_requested = "SIGTERM"

    monkeypatch.setattr(Session, "add_steps", add_steps)
    stopped = train(_cfg(*PPO, *fixed, "total_steps=512"), tmp_path / "stopped")
    monkeypatch.setattr(Session, "add_steps", original)
    assert stopped["status"] == "stopped" and stopped["env_steps"] == 128
    resumed = resume(tmp_path / "stopped")
    assert resumed["updates"] == straight["updates"] and resumed["eval_return_mean"] == straight["eval_return_mean"]
    assert _lines(tmp_path / "straight", training_only=True) == _lines(tmp_path / "stopped", training_only=True)
    _assert_same_weights(tmp_path / "straight", tmp_path / "stopped")


def test_a_member_resumes_alone_as_its_plain_run(tmp_path):
    """`rlx resume MEMBER_DIR`: that member alone, from its own checkpoint (a plain run's layout)."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    train_job([_cfg(*PPO, "total_steps=256", "seed=1"), _cfg(*PPO, "total_steps=256", "seed=2")], dirs)
    assert json.loads((dirs[0] / "population.json").read_text()) == {"members": [".", "../b"]}
    summary = resume(dirs[0], ["total_steps=512"])
    assert summary["status"] == "ok" and summary["env_steps"] == 512
    assert json.loads((dirs[1] / "summary.json").read_text())["env_steps"] == 256  # its fellow member untouched


def test_a_member_with_a_lost_checkpoint_is_left_out_and_the_others_resume(tmp_path, capsys):
    dirs = [tmp_path / m for m in ("a", "b", "c")]
    train_job([_cfg(*PPO, "total_steps=256", f"seed={i}") for i in range(3)], dirs)
    (dirs[1] / "checkpoints" / "last.pt").unlink()
    summaries = resume_at(tmp_path, ["total_steps=512"])
    assert [s["seed"] for s in summaries] == [0, 2] and all(s["env_steps"] == 512 for s in summaries)
    assert "b: no checkpoints/last.pt to resume from" in capsys.readouterr().err
    assert json.loads((dirs[1] / "summary.json").read_text())["env_steps"] == 256


def test_resume_of_a_sweep_dir_of_plain_runs_and_of_finished_work(tmp_path):
    for seed in (0, 1):
        train(_cfg(*PPO, "total_steps=256", f"seed={seed}"), tmp_path / str(seed))
    shutil.copytree(tmp_path / "0", tmp_path / "copy")  # a finished run counts once as finished
    from rlx.errors import UserError

    with pytest.raises(UserError, match="every run in this sweep dir has finished"):
        resume_at(tmp_path)
    summaries = resume_at(tmp_path, ["total_steps=384"])
    assert sorted(s["env_steps"] for s in summaries) == [384, 384, 384]


def test_rlx_resume_of_a_population_sweep_dir(tmp_path):
    """`rlx sweep hydra/launcher=population` then `rlx resume SWEEP_DIR`: its populations.json names the
    population (the member dirs' own pointer is population.json: different files, different names)."""
    cli = [sys.executable, "-c", "from rlx.app.cli import main; main()"]
    sweep = tmp_path / "sweep"
    r = subprocess.run([*cli, "sweep", *QUIET, *PPO, "total_steps=256", "seed=0,1", "hydra/launcher=population",
                        f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (pop,) = json.loads((sweep / "populations.json").read_text())["populations"]
    assert pop["status"] == "ok" and pop["members"] == ["0", "1"]
    r = subprocess.run([*cli, "resume", str(sweep), "total_steps=384"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "population of 2 in one process" in r.stderr
    for m in ("0", "1"):
        assert json.loads((sweep / m / "summary.json").read_text())["env_steps"] == 384
    assert json.loads((sweep / "populations.json").read_text())["populations"][0]["member_status"] == ["ok", "ok"]


def test_an_env_that_raises_mid_run_fails_the_run_with_one_line_and_a_summary(tmp_path, monkeypatch):
    """Any fault in a plain run: failed summary.json, the traceback in error.txt, one line (issue 24)."""
    from rlx.envs.batched import BatchedClassicControl
    from rlx.errors import RunFault

    original = BatchedClassicControl.step
    calls = {"n": 0}

    def step(self, actions):
        calls["n"] += 1
        if calls["n"] == 100:
            raise RuntimeError("the simulator crashed")
        return original(self, actions)

    monkeypatch.setattr(BatchedClassicControl, "step", step)
    with pytest.raises(RunFault, match="RuntimeError: the simulator crashed; no checkpoint yet"):
        train(_cfg(*PPO, "total_steps=512", "env.batched=true"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "the simulator crashed" in summary["error"]
    assert "Traceback" in (tmp_path / "run" / "error.txt").read_text()
    assert "rlx: error: RuntimeError: the simulator crashed" in (tmp_path / "run" / "rlx.log").read_text()


def test_episode_length_and_return_share_one_window(tmp_path):
    """CartPole pays 1 per step, so over the same episodes the mean return is the mean length (issue 24:
    they were averaged over different windows)."""
    train(_cfg(*PPO, "total_steps=1024", "logger.every=128"), tmp_path / "run")
    lines = [x for x in _lines(tmp_path / "run") if "episode_length_mean" in x]
    assert len(lines) >= 6
    for x in lines:
        assert x["episode_return_mean"] == pytest.approx(x["episode_length_mean"])

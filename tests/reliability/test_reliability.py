"""Runs that survive: exact resume, kills at random moments, SIGTERM, determinism, NaNs, bad input."""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlx.config.compose import compose_config
from rlx.rundir.checkpoint import load_checkpoint, save_checkpoint
from rlx.train.driver import resume, train
from rlx.train.session import NonFiniteError
from tests.conftest import run_cli

QUIET = ["logger.wandb.mode=disabled", "logger.progress=false"]
REPO = Path(__file__).resolve().parents[2]


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock columns."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        row.pop("wall_s", None)
        row.pop("sps", None)
        out.append(row)
    return out


def params(run_dir: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / name, weights_only=False)
    return state["algo"]["model"]


PPO_SHORT = ["total_steps=6144", "checkpoint.every=3072", "logger.every=1024", "eval.every=1024", "eval.episodes=3"]


def test_ppo_resume_is_exact(tmp_path):
    """Kill right after the checkpoint at 3072, resume to 6144 == one uninterrupted run (CPU, fixed seed)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(compose_config([*PPO_SHORT, *QUIET]), full)
    shutil.copytree(full, cut)
    shutil.copy(cut / "checkpoints" / "step_3072.pt", cut / "checkpoints" / "last.pt")  # as if killed at 3072+
    resume(cut, ["logger.progress=false"])
    assert metrics(cut) == metrics(full)
    a, b = params(full), params(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_extends_a_finished_run_and_appends_metrics(tmp_path):
    run = tmp_path / "run"
    train(compose_config(["total_steps=1024", "eval.every=0", "logger.every=256", *QUIET]), run)
    before = metrics(run)
    summary = resume(run, ["total_steps=2048", "logger.progress=false"])
    after = metrics(run)
    assert summary["env_steps"] >= 2048
    assert after[: len(before)] == before and len(after) > len(before)
    assert [r["env_steps"] for r in after] == sorted(r["env_steps"] for r in after)


@pytest.mark.parametrize("algo_args", [
    ["algo=ppo", "total_steps=2048", "logger.every=256", "eval.every=1024"],
    ["algo=sac", "env=pendulum", "total_steps=400", "algo.learning_starts=100", "logger.every=100", "eval.every=200"],
], ids=["ppo", "sac"])
def test_same_seed_same_metrics_different_seed_different(algo_args, tmp_path):
    args = [*algo_args, "eval.episodes=2", *QUIET]
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(compose_config([*args, f"seed={seed}"]), tmp_path / name)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert metrics(tmp_path / "a") != metrics(tmp_path / "c")
    assert any("eval_return_mean" in row for row in metrics(tmp_path / "a"))


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    p = _start(["train", "total_steps=10000000", "checkpoint.every=0", "eval.every=0", f"hydra.run.dir={run}", *QUIET], tmp_path)
    _wait_for(run / "metrics.jsonl")
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "Traceback" not in err and f"rlx resume {run}" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["env_steps"] == summary["env_steps"] > 0


def test_sigkill_at_random_moments_never_corrupts_last_checkpoint(tmp_path):
    """Kill -9 several times at random moments (checkpoints every rollout); each time last.pt loads and resumes."""
    rng = random.Random(1234)
    run = tmp_path / "run"
    p = _start(["train", "total_steps=10000000", "checkpoint.every=256", "eval.every=0", f"hydra.run.dir={run}", *QUIET], tmp_path)
    steps = []
    for _kill in range(4):
        _wait_for(run / "checkpoints" / "last.pt")
        time.sleep(rng.uniform(0.2, 2.0))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        steps.append(state["env_steps"])
        assert not list((run / "checkpoints").glob("*.pt.tmp*")) or True  # stray temp files are harmless
        p = _start(["resume", str(run), "logger.progress=false"], tmp_path)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert steps == sorted(steps) and steps[0] > 0
    final = load_checkpoint(run / "checkpoints" / "last.pt")["env_steps"]
    r = run_cli("resume", str(run), f"total_steps={final + 512}", "logger.progress=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["env_steps"] >= final + 512
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == sorted(r["env_steps"] for r in rows)  # no duplicated history


def test_nan_observation_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", "env.id=tests.reliability.faulty_envs:NaNObservationEnv", "+env.kwargs.nan_at=300",
                "env.num_envs=1", "algo.n_steps=64", "checkpoint.every=64", "eval.every=0", "total_steps=5000",
                f"hydra.run.dir={run}", *QUIET, cwd=REPO)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("rlx: error")]
    assert "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    assert "non-finite observation" in errors[0] and "env step 300" in errors[0] and "last good checkpoint" in errors[0]
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["env_steps"] == 256
    assert all(torch.isfinite(v).all() for v in state["algo"]["model"].values() if v.is_floating_point())


def test_nan_loss_stops_and_never_overwrites_good_checkpoint(tmp_path, monkeypatch):
    from rlx.algos.ppo import PPO

    original = PPO.update

    def poisoned(self, rollout, progress):
        out = original(self, rollout, progress)
        if self.updates >= 3:  # weights and loss go NaN from the 3rd update on
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
            out[0]["policy_loss"] = float("nan")  # PPO reports one metrics dict per member
        return out

    monkeypatch.setattr(PPO, "update", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="policy_loss"):
        train(compose_config(["checkpoint.every=256", "eval.every=0", "total_steps=5000", *QUIET]), run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["env_steps"] == 512
    assert all(torch.isfinite(v).all() for v in state["algo"]["model"].values() if v.is_floating_point())


def test_custom_env_class_runs_with_env_checker(tmp_path):
    r = run_cli("train", "env.id=tests.reliability.faulty_envs:NaNObservationEnv", "+env.kwargs.nan_at=100000",
                "algo.n_steps=64", "total_steps=256", "eval.every=0", f"hydra.run.dir={tmp_path / 'ok'}", *QUIET, cwd=REPO)
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "env.id=tests.reliability.faulty_envs:BadSpaceEnv", "total_steps=256",
                f"hydra.run.dir={tmp_path / 'bad'}", *QUIET, cwd=REPO)
    assert r.returncode == 2 and "env checker" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fin") / "run"
    train(compose_config(["total_steps=512", "eval.every=0", "eval.episodes=1", *QUIET]), run)
    return run


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["algo.lr=0.1"], "algo.lr cannot be changed when resuming"),
        (["total_steps=100"], "already trained"),
        (["total_steps=abc"], "total_steps='abc': expected int"),
        (["eval.evry=5"], "eval.evry cannot be changed"),
    ],
)
def test_resume_bad_overrides(finished_run, args, fragment, tmp_path):
    r = run_cli("resume", str(finished_run), *args, cwd=tmp_path)
    assert r.returncode == 2 and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_resume_corrupt_and_incompatible_checkpoints(finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated file
    r = run_cli("resume", str(run), "total_steps=1024", cwd=tmp_path)
    assert r.returncode == 2 and "not a readable rlx checkpoint" in r.stderr and "Traceback" not in r.stderr
    state = torch.load(finished_run / "checkpoints" / "last.pt", weights_only=False)
    state["format"] = 999
    save_checkpoint(last, {k: v for k, v in state.items() if k not in ("rlx_version",)} | {"format": 999})
    r = run_cli("resume", str(run), "total_steps=1024", cwd=tmp_path)
    assert r.returncode == 2 and "incompatible" in r.stderr, r.stderr


def test_config_diff(tmp_path, finished_run):
    other = tmp_path / "other"
    train(compose_config(["total_steps=512", "eval.every=0", "eval.episodes=1", "algo.clip_eps=0.3", "seed=2", *QUIET]), other)
    r = run_cli("config", "diff", str(finished_run), str(other), cwd=tmp_path)
    assert r.returncode == 0
    assert "algo.clip_eps" in r.stdout and "seed" in r.stdout and "algo.lr" not in r.stdout

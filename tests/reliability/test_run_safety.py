"""Nothing lost, nothing silently wrong: run-dir ownership, refusal to overwrite, unique sweep dirs,
W&B without network, presets that follow env.id, OS faults, exit codes (issue 13, one test per class)."""
from __future__ import annotations

import errno
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlx.app.sweep import claim_sweep_dir
from rlx.app.validate import validate
from rlx.config.compose import compose_config
from rlx.errors import RunFault, UserError
from rlx.rundir.checkpoint import load_checkpoint
from rlx.rundir.lock import RunDirLock, unique_dir
from rlx.train.driver import resume, train
from rlx.train.run import override_value
from tests.conftest import run_cli

QUIET = ["logger.wandb.mode=disabled", "logger.progress=false"]
TINY = ["total_steps=512", "eval.every=0", "eval.episodes=1", "checkpoint.every=256", *QUIET]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("safety") / "run"
    train(compose_config(TINY), run)
    return run


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".rlx.lock"}


# -- data loss -------------------------------------------------------------------------------------

def test_a_second_process_on_a_run_dir_is_refused_and_a_killed_owner_leaves_no_stale_lock(finished_run, tmp_path):
    before = snapshot(finished_run)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from rlx.rundir.lock import RunDirLock; "
                               f"RunDirLock({str(finished_run)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in (["resume", str(finished_run), "total_steps=1024"],
                     ["train", f"hydra.run.dir={finished_run}", "overwrite=true", *TINY]):
            r = run_cli(*args, cwd=tmp_path)
            assert r.returncode == 2, r.stderr
            assert r.stderr.count("\n") == 1 and f"pid {holder.pid}" in r.stderr and "Traceback" not in r.stderr
        assert snapshot(finished_run) == before  # nothing written by the refused processes
    finally:
        holder.kill()  # SIGKILL: the kernel drops the flock with the process
        holder.wait()
    with RunDirLock(finished_run):  # no stale lock
        pass


def test_starting_a_run_in_a_dir_that_holds_one_is_refused_unless_overwrite(tmp_path):
    run = tmp_path / "run"
    train(compose_config(TINY), run)
    before = snapshot(run)
    r = run_cli("train", f"hydra.run.dir={run}", *TINY, cwd=tmp_path)
    assert r.returncode == 2 and f"rlx resume {run}" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert snapshot(run) == before
    with pytest.raises(UserError, match="already holds a run"):  # the library path refuses too
        train(compose_config(TINY), run)
    (run / "checkpoints" / "step_999999.pt").write_bytes(b"old")  # an old run's leftovers
    r = run_cli("train", f"hydra.run.dir={run}", "overwrite=true", "seed=1", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (run / "checkpoints" / "step_999999.pt").exists()
    assert json.loads((run / "summary.json").read_text())["seed"] == 1
    steps = [json.loads(line)["env_steps"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one run's history, not two appended


def test_sweeps_started_in_the_same_second_get_separate_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    same_second = ["hydra.sweep.dir=multirun/${now:%Y-%m-%d}_x"]  # a timestamp both sweeps share
    a, b = claim_sweep_dir(same_second), claim_sweep_dir(same_second)
    assert a != b and a.is_dir() and b.is_dir() and b.name == f"{a.name}-1"
    assert unique_dir(tmp_path / "u") == tmp_path / "u" and unique_dir(tmp_path / "u") == tmp_path / "u-1"


def test_an_explicit_sweep_dir_with_runs_is_refused_unless_overwrite(finished_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="already holds 1 run"):
        claim_sweep_dir([f"hydra.sweep.dir={sweep}"])
    assert claim_sweep_dir([f"hydra.sweep.dir={sweep}", "overwrite=true"]) == sweep
    assert not (sweep / "0" / "summary.json").exists()


# -- hang: W&B without network ---------------------------------------------------------------------

@pytest.fixture
def unresponsive_server():
    """A TCP server that accepts connections and never answers: W&B's requests hang, as with no route."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for c in held:
        c.close()


def test_wandb_online_without_network_falls_back_to_offline_within_the_timeout(tmp_path, unresponsive_server):
    run = tmp_path / "run"
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": unresponsive_server}
    t0 = time.monotonic()
    r = run_cli("train", f"hydra.run.dir={run}", "logger.wandb.mode=online", "logger.wandb.init_timeout=2",
                "logger.progress=false", "total_steps=512", "eval.every=0", "eval.episodes=1", cwd=tmp_path, env=env,
                timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "W&B online unreachable within 2s" in r.stderr and "logging offline" in r.stderr
    assert list((run / "wandb").glob("offline-run-*")), "the run's W&B files are in the run dir, syncable later"
    assert (run / "checkpoints" / "last.pt").is_file()
    assert elapsed < 90  # W&B's own default wait alone is 90 s


# -- silently wrong --------------------------------------------------------------------------------

def test_a_tuned_preset_follows_the_env_actually_trained():
    plain = validate(["env.id=Acrobot-v1"])
    assert plain.algo.n_steps == 2048 and plain.env.num_envs == 1 and plain.algo.gamma == 0.99  # PPO defaults
    preset = validate([])
    assert preset.algo.n_steps == 32 and preset.env.num_envs == 8  # CartPole: RL-Zoo's preset still applies
    cfg = compose_config(["env.id=Acrobot-v1"], return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    with read_write(cfg.hydra.job):
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    assert "/ppo-Acrobot-v1/" in str(cfg.hydra.run.dir)  # filed under the real env, not ppo-cartpole


def test_the_cli_notes_a_dropped_preset_and_trains_the_defaults(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", "env.id=Acrobot-v1", "total_steps=256", "algo.n_steps=256", "eval.every=0", "eval.episodes=1",
                f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tuned preset 'ppo_cartpole' is for CartPole-v1, not env.id=Acrobot-v1: not applied" in r.stderr
    config = (run / "config.yaml").read_text()
    assert "gamma: 0.99" in config and "num_envs: 1" in config


def test_resume_stopped_by_sigterm_exits_143_like_train(tmp_path):
    run = tmp_path / "run"
    train(compose_config(["total_steps=256", "eval.every=0", "eval.episodes=1", *QUIET]), run)
    p = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", "resume", str(run),
                          "total_steps=100000000", "logger.progress=true", "logger.every=256"],
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in p.stderr:  # wait until it is training
        if line.startswith("step"):
            break
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 143
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"


def test_a_fault_before_any_checkpoint_says_so_and_writes_a_failed_summary(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", "env.id=tests.reliability.faulty_envs:NaNObservationEnv", "+env.kwargs.nan_at=20",
                "env.num_envs=1", "algo.n_steps=64", "algo.batch_size=64", "eval.every=0", "total_steps=5000",
                f"hydra.run.dir={run}", "~tuned", *QUIET, cwd=REPO)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("rlx: error")]
    assert "no checkpoint yet" in error and "last good checkpoint" not in error
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite observation" in summary["error"]


def test_resume_values_parse_as_hydra_parses_them():
    assert override_value("1e5") == 100000.0 and isinstance(override_value("1e5"), float)
    assert override_value("200000") == 200000 and override_value("true") is True and override_value("null") is None
    with pytest.raises(UserError, match="one value"):
        override_value("1,2")


def test_one_replay_buffer_file_per_run_referenced_by_last_pt(tmp_path):
    run = tmp_path / "run"
    train(compose_config(["algo=sac", "env=pendulum", "total_steps=600", "algo.learning_starts=100", "checkpoint.every=150",
                          "checkpoint.keep=3", "eval.every=0", "eval.episodes=1", "network.hidden_sizes=[16]", *QUIET]), run)
    ckpt = run / "checkpoints"
    assert [p.name for p in ckpt.glob("replay_buffer_*.pt")] == ["replay_buffer_600.pt"]
    periodic = sorted(ckpt.glob("step_*.pt"))
    assert len(periodic) == 3
    for p in periodic:  # periodic checkpoints carry no copy of the buffer
        assert torch.load(p, weights_only=False)["loop"]["buffer"] is None
    raw = torch.load(ckpt / "last.pt", weights_only=False)
    assert raw["loop"]["buffer"] == {"file": "replay_buffer_600.pt"}
    assert load_checkpoint(ckpt / "last.pt")["loop"]["buffer"]["size"] == 600  # resolved for resume
    summary = resume(run, ["total_steps=700", "logger.progress=false"])
    assert summary["env_steps"] == 700 and [p.name for p in ckpt.glob("replay_buffer_*.pt")] == ["replay_buffer_700.pt"]


def test_ppo_stores_the_normalized_obs_the_policy_acted_on():
    """With normalize_obs the statistics move during the rollout; the update must see what the policy
    saw, so every stored log-prob is reproduced exactly (ratio 1 before the first gradient step)."""
    import gymnasium as gym

    from rlx.buffers.rollout import RolloutBuffer
    from rlx.envs.make import env_spec
    from rlx.train.run import build_algorithm, parse_settings

    s = parse_settings(compose_config(["algo.normalize_obs=true", "~tuned", "algo.n_steps=64"]))
    algo = build_algorithm(s, env_spec("CartPole-v1"), torch.device("cpu"))
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    buffer = RolloutBuffer(64, 2, (4,), (), torch.long, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    raw = []
    for _ in range(64):
        raw.append(obs)
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        actions, log_probs, values = algo.explore(obs_t)
        seen = algo.policy_input(obs_t)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions.numpy())
        buffer.add(seen.numpy(), actions, log_probs, values, rewards, terminated, terminated | truncated)
        obs = next_obs
    rollout = buffer.finish(algo.value(torch.as_tensor(obs, dtype=torch.float32)))
    stored_obs, stored_actions, stored_logp = rollout.flat("obs", "actions", "log_probs")
    with torch.no_grad():  # PPO's model has a member dimension (a population of one): [1, B, ...]
        logp, _, _ = algo.model.evaluate_actions(stored_obs.unsqueeze(0), stored_actions.unsqueeze(0))
        logp = logp[0]
    torch.testing.assert_close(logp, stored_logp, rtol=0, atol=1e-6)
    # what the old code did, re-normalizing the raw observations with the final statistics, is off
    renormalized = algo.model.policy_input(torch.as_tensor(np.stack(raw), dtype=torch.float32).reshape(1, -1, 4))
    with torch.no_grad():
        stale, _, _ = algo.model.evaluate_actions(renormalized, stored_actions.unsqueeze(0))
        stale = stale[0]
    assert (stale - stored_logp).abs().max() > 1e-3


# -- faults and unwritable places: one line, the right exit code -----------------------------------

def test_disk_full_while_checkpointing_stops_cleanly_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    import rlx.rundir.checkpoint as checkpoint

    real = checkpoint.atomic_write_bytes
    calls = {"n": 0}

    def fills_up(path, data):
        calls["n"] += 1
        if calls["n"] > 1:  # the first checkpoint fits, the disk is full from then on
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", fills_up)
    run = tmp_path / "run"
    with pytest.raises(RunFault, match="No space left on device.*last good checkpoint"):
        train(compose_config(["total_steps=2048", "checkpoint.every=256", "checkpoint.keep=0", "eval.every=0",
                              "eval.episodes=1", *QUIET]), run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["env_steps"] == 256  # intact and loadable
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not list((run / "checkpoints").glob(".*.tmp"))  # no half-written files left behind


@pytest.mark.parametrize("args, fragment", [
    (["train", "hydra.run.dir=/proc/rlx-run", *TINY], "not writable"),
    (["sweep", "hydra.sweep.dir=/proc/rlx-sweep", "seed=0,1", *TINY], "not writable"),
    (["eval", "RUN", "--video", "/proc/rlx-videos"], "video dir /proc/rlx-videos: not writable"),
    (["eval", "RUN", "--video", "RUN/config.yaml"], "is not a directory"),
    (["eval", "RUN", "--seed", "-1"], "--seed"),
    (["config", "diff", "RUN/config.yaml", "RUN"], "expected a run dir"),
    (["config", "diff", "RUN/checkpoints/last.pt", "RUN"], "expected a run dir"),
    (["report", "RUN"], "is one run, not a sweep dir"),
    (["train", "~algo"], "'~algo': every run needs an algo"),
    (["train", "=3"], "'=3': no key before '='"),
    (["train", "hydra.run.dir=/tmp/a", "b"], "'b' after 'hydra.run.dir=/tmp/a': expected key=value"),
    (["train", "hydra.run.dir=/tmp/é"], "only inside quotes"),
    (["train", "+devic=cpu"], "did you mean 'device'"),
    (["train", "+foo=1"], "top-level keys: algo, checkpoint, compile, device, env"),
    (["train", "algo.batch_size=5000"], "larger than one rollout"),
])
def test_bad_places_and_overrides_are_one_line(finished_run, tmp_path, args, fragment):
    args = [a.replace("RUN", str(finished_run)) for a in args]
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("rlx: error: ") and r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr


def test_small_things_users_notice(finished_run, tmp_path):
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("rlx ")
    r = run_cli("list", env={"COLUMNS": "200"})  # wide: at 80 columns rich wraps the hint inside its cell
    assert "pip install 'rlx[mujoco]'" in r.stdout
    assert validate(["algo.gamma=0"]).algo.gamma == 0  # a valid discount
    videos = tmp_path / "videos"
    r = run_cli("eval", str(finished_run), "--episodes", "2", "--video", str(videos))
    assert r.returncode == 0, r.stderr
    assert len(list(videos.glob("*.mp4"))) == 2


def test_plain_progress_prints_at_least_every_30_seconds(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from rlx.config.schema import WandbConfig
    from rlx.rundir.logging import PLAIN_PROGRESS_MAX_S, Logger

    out = io.StringIO()
    logger = Logger(tmp_path, {}, WandbConfig(mode="disabled"), total_steps=10**14, console=Console(file=out))
    clock = [1000.0]
    monkeypatch.setattr("rlx.rundir.logging.time.monotonic", lambda: clock[0])
    logger._last_plain = clock[0]
    logger.progress(10**12, 1.0, None)  # < 10% of the run: the step rule alone would print nothing
    logger.progress(1, 1.0, None)
    n = out.getvalue().count("step ")
    clock[0] += PLAIN_PROGRESS_MAX_S + 1
    logger.progress(2, 1.0, None)
    logger.close()
    assert out.getvalue().count("step ") == n + 1


def test_every_default_is_written_once():
    """The YAML config and the dataclasses agree on every run-level default."""
    import dataclasses

    from rlx.config.schema import CheckpointConfig, EvalConfig, LoggerConfig, RunConfig, WandbConfig
    from rlx.train.run import parse_settings

    cfg = compose_config(["~tuned"])
    s = parse_settings(cfg)
    for node, cls in ((s.run, RunConfig), (s.eval, EvalConfig), (s.checkpoint, CheckpointConfig),
                      (s.logger, LoggerConfig), (s.wandb, WandbConfig)):
        defaults = cls()
        for f in dataclasses.fields(cls):
            if f.name == "wandb":
                continue
            assert getattr(node, f.name) == getattr(defaults, f.name), f"{cls.__name__}.{f.name}: YAML vs dataclass"

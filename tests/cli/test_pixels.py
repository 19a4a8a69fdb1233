"""Pixels end to end through the real CLI: Atari Pong (PPO, discrete SAC) run dir, checkpoint,
`rlx eval --json` and `--video` (raw frames); MinAtar resume equivalence; bad observation spaces."""
import json
import shutil
from pathlib import Path

import gymnasium as gym
import pytest
import torch
import yaml

from tests.conftest import FAST, run_cli

pytest.importorskip("ale_py")
REPO = Path(__file__).resolve().parents[2]
# Pong truncated at 300 emulator frames (75 agent steps), so evaluation episodes are short
PONG = ["env=pong", "env.num_envs=2", "env.max_episode_steps=300", "eval.every=0", "eval.episodes=1",
        "logger.every=256", "logger.wandb.mode=disabled", *FAST]


@pytest.fixture(scope="module")
def ppo_pong(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pix") / "ppo"
    r = run_cli("train", *PONG, "total_steps=1024", "algo.n_steps=64", "algo.batch_size=128", "algo.n_epochs=1",
                "checkpoint.every=512", f"hydra.run.dir={out}", cwd=REPO)
    assert r.returncode == 0, r.stderr
    return out


def test_ppo_pong_run_dir_and_checkpoint(ppo_pong):
    cfg = yaml.safe_load((ppo_pong / "config.yaml").read_text())
    assert cfg["env"]["id"] == "ALE/Pong-v5" and cfg["network"]["encoder"] == "nature_cnn"
    assert [w["_target_"] for w in cfg["env"]["wrappers"]] == ["gymnasium.wrappers.AtariPreprocessing",
                                                              "gymnasium.wrappers.FrameStackObservation"]
    assert cfg["algo"]["clip_eps"] == 0.1 and cfg["algo"]["ent_coef"] == 0.01  # RL-Zoo's Atari preset
    summary = json.loads((ppo_pong / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["env_steps"] >= 1024
    state = torch.load(ppo_pong / "checkpoints" / "last.pt", weights_only=False)
    assert any(k.startswith("encoder.trunk.0") for k in state["algo"]["model"])  # the shared CNN


def test_eval_json_and_video_record_raw_frames(ppo_pong, tmp_path):
    pytest.importorskip("moviepy")
    r = run_cli("eval", str(ppo_pong), "--episodes", "1", "--json", cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["episodes"] == 1 and out["return_mean"] == int(out["return_mean"])  # real (unclipped) game score
    r = run_cli("eval", str(ppo_pong), "--episodes", "1", "--video", str(tmp_path / "v"), cwd=REPO)
    assert r.returncode == 0, r.stderr
    videos = list((tmp_path / "v").glob("*.mp4"))
    assert videos
    import cv2

    ok, frame = cv2.VideoCapture(str(videos[0])).read()
    assert ok and frame.shape[0] >= 200 and frame.shape[1] >= 160  # ALE's 210x160 RGB screen, not the 84x84 input


def test_discrete_sac_pong_smoke(tmp_path):
    out = tmp_path / "sac"
    r = run_cli("train", *PONG, "algo=sac_discrete", "total_steps=800", "algo.learning_starts=400", "algo.batch_size=32",
                "algo.train_freq=4",
                "algo.buffer_size=5000", f"hydra.run.dir={out}", cwd=REPO)
    assert r.returncode == 0, r.stderr
    from rlx.rundir.checkpoint import load_checkpoint

    state = load_checkpoint(out / "checkpoints" / "last.pt")  # with the replay buffer it refers to
    buffer = state["loop"]["buffer"]  # checkpoint.save_buffer: the frame-stack replay buffer: uint8, one frame per row
    assert buffer["frame_stack"] == 4
    assert buffer["obs"].dtype == torch.uint8 and tuple(buffer["obs"].shape) == (800, 1, 84, 84)
    assert "next_obs" not in buffer and len(buffer["final_rows"]) == buffer["done"].sum()
    r = run_cli("eval", str(out), "--episodes", "1", "--json", cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["episodes"] == 1


class DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.mark.parametrize("args, fragment", [
    (["env=cartpole", "network=nature_cnn"],
     "network.encoder=nature_cnn: takes (C, H, W) image observations, but env.id=CartPole-v1 has shape (4,); encoders that fit: mlp"),
    (["env.id=tests.cli.test_pixels:DictObsEnv", "algo=trpo"], "algo=trpo does not support Dict observations"),
    (["env=pong", "env.wrappers=[]"],
     "network.encoder=nature_cnn: takes channel-first (C, H, W) images, but env.id=ALE/Pong-v5 has shape (210, 160, 3)"),
])
def test_unsupported_observation_spaces_exit_2_with_one_line(args, fragment, tmp_path):
    r = run_cli("train", *args, "total_steps=100", f"hydra.run.dir={tmp_path / 'r'}", *FAST, cwd=REPO)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_pixel_resume_is_exact(tmp_path):
    """MinAtar Breakout with the CNN: killed after the checkpoint at 1024, resumed to 2048 == one
    uninterrupted run (CPU, fixed seed), as for CartPole."""
    pytest.importorskip("minatar")
    from rlx.config.compose import compose_config
    from rlx.train.driver import resume, train

    quiet = ["logger.wandb.mode=disabled", "logger.progress=false", "device=cpu"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(compose_config(["env=breakout_minatar", "env.num_envs=2", "algo.n_steps=128", "total_steps=2048",
                          "checkpoint.every=1024", "logger.every=256", "eval.every=1024", "eval.episodes=2", *quiet]), full)
    shutil.copytree(full, cut)
    shutil.copy(cut / "checkpoints" / "step_1024.pt", cut / "checkpoints" / "last.pt")
    resume(cut, ["logger.progress=false"])

    def metrics(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in ("wall_s", "sps")} for row in rows]

    assert metrics(cut) == metrics(full)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

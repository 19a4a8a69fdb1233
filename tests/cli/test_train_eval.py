"""End to end through the real CLI: a short PPO run, its run dir, W&B offline files, `rlx eval`."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import FAST, run_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "ppo"
    r = run_cli("train", "total_steps=3000", "eval.every=1024", "eval.episodes=3", "checkpoint.every=1024",
                "logger.every=512", "logger.wandb.mode=offline", f"hydra.run.dir={out}", *FAST)
    assert r.returncode == 0, r.stderr
    return out


def test_run_dir_has_resolved_config_metrics_checkpoints_summary(run_dir):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["algo"]["name"] == "ppo" and cfg["env"]["id"] == "CartPole-v1"
    assert cfg["algo"]["n_steps"] == 32 and cfg["env"]["num_envs"] == 8  # RL-Zoo tuned preset applied
    assert "${" not in (run_dir / "config.yaml").read_text()  # fully resolved
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [row for row in lines if "policy_loss" in row]
    evals = [row for row in lines if "eval_return_mean" in row]
    assert train and evals
    for key in ("env_steps", "wall_s", "sps", "episode_return_mean", "episode_return_std", "policy_loss", "value_loss",
                "entropy", "approx_kl", "clip_fraction", "explained_variance"):
        assert key in train[-1], key
    assert [row["env_steps"] for row in train] == sorted(row["env_steps"] for row in train)
    ckpts = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt"} <= ckpts and any(n.startswith("step_") for n in ckpts)
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("env_steps", "wall_s", "sps", "eval_return_mean", "eval_return_std", "best_eval_return"):
        assert key in summary
    assert summary["env_steps"] >= 3000 and summary["status"] == "ok"
    best, last = summary["best_eval_return"], summary["eval_return_mean"]
    assert best >= last or best == pytest.approx(last)


def test_wandb_offline_files_written(run_dir):
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb")), "no .wandb data file for `wandb sync`"


def test_checkpoint_is_self_contained(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert state["algo_name"] == "ppo" and state["config"]["env"]["id"] == "CartPole-v1"
    assert {"model", "optimizer"} <= state["algo"].keys() and "rng" in state and "rlx_version" in state


def test_eval_json_from_run_dir_and_file(run_dir, tmp_path):
    r = run_cli("eval", str(run_dir), "--json", "--episodes", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["episodes"] == 2 and {"return_mean", "return_std"} <= out.keys()
    assert out["checkpoint"].endswith("best.pt")
    r = run_cli("eval", str(run_dir / "checkpoints" / "last.pt"), "--episodes", "2", "--stochastic", cwd=tmp_path)
    assert r.returncode == 0 and "±" in r.stdout


def test_eval_records_video(run_dir, tmp_path):
    pytest.importorskip("moviepy")
    r = run_cli("eval", str(run_dir), "--episodes", "1", "--video", str(tmp_path / "vid"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "vid").glob("*.mp4"))
    assert r.stderr == ""  # a fresh dir: no "Overwriting existing videos", no SDL display noise
    r = run_cli("eval", str(run_dir), "--episodes", "2", "--video", str(tmp_path / "vid"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()  # the same dir again: one line of ours, not gymnasium's warning
    assert line.startswith(f"rlx: warning: --video {tmp_path / 'vid'} already holds 1 video(s) (rl-video-episode-0.mp4)")


def test_eval_video_without_the_video_extra_is_one_line_naming_it(run_dir, tmp_path):
    fake = tmp_path / "no_moviepy" / "moviepy"  # an installed-looking moviepy that fails to import, as a missing one
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named moviepy')\n")
    r = run_cli("eval", str(run_dir), "--episodes", "1", "--video", str(tmp_path / "vid"), cwd=tmp_path,
                env={"PYTHONPATH": str(fake.parent)})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "gymnasium[other]" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line == f"rlx: error: --video {tmp_path / 'vid'}: recording needs moviepy, which is not installed: pip install 'rlx[video]'"
    assert not (tmp_path / "vid").exists()  # nothing written


def test_list_shows_algorithms_envs_networks(tmp_path):
    r = run_cli("list", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("ppo", "cartpole", "pendulum", "mlp"):
        assert word in r.stdout


def test_cfg_job_shows_tuned_preset_and_overrides(tmp_path):
    r = run_cli("train", "--cfg", "job", "algo.clip_eps=0.1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["algo"]["clip_eps"] == 0.1 and cfg["algo"]["n_epochs"] == 20
    r = run_cli("train", "--cfg", "job", "~tuned", cwd=tmp_path)
    assert yaml.safe_load(r.stdout)["algo"]["n_steps"] == 2048


CORRUPT_ZIP = b"PK\x03\x04" + b"x" * 100  # torch's error for it is 337 characters long


def test_a_corrupt_last_pt_names_the_step_checkpoints_and_the_way_it_says_resumes(run_dir, tmp_path):
    import shlex
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("wandb"))
    steps = sorted((run / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    assert len(steps) >= 2
    (run / "checkpoints" / "last.pt").write_bytes(CORRUPT_ZIP)
    resume = ["total_steps=5000", "logger.wandb.mode=disabled", *FAST]
    r = run_cli("resume", str(run), *resume, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    reason = line.split("not a readable rlx checkpoint (", 1)[1].split(");", 1)[0]
    assert reason == "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory. " \
                     "This is an internal miniz error."  # whole sentences, not cut mid-word
    newest = steps[-1]
    assert f"periodic checkpoints beside it: {newest.name}, {steps[-2].name}" in line
    command = line.split("To resume from the newest: ", 1)[1].split(" (it continues", 1)[0]
    copy, resume_cmd = command.split(" && ")
    assert shlex.split(copy) == ["cp", str(newest), str(run / "checkpoints" / "last.pt")]
    assert shlex.split(resume_cmd) == ["rlx", "resume", str(run)]
    shutil.copy(newest, run / "checkpoints" / "last.pt")  # what the message says, and then rlx resume works
    r = run_cli("resume", str(run), *resume, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["env_steps"] >= 5000

    for name in ("best.pt", "last.pt"):  # no best.pt / last.pt at all: rlx eval names a step file to evaluate
        (run / "checkpoints" / name).unlink()
    r = run_cli("eval", str(run), "--episodes", "1", cwd=tmp_path)
    assert r.returncode == 2 and "no checkpoints/best.pt or checkpoints/last.pt" in r.stderr
    step = r.stderr.strip().rsplit("rlx eval ", 1)[1]
    assert Path(step).parent == run / "checkpoints" and Path(step).name.startswith("step_")
    assert run_cli("eval", step, "--episodes", "1", cwd=tmp_path).returncode == 0


def test_checkpoint_reasons_are_shortened_at_word_or_sentence_ends():
    from rlx.rundir.checkpoint import shorten

    assert shorten("short\nsecond line") == "short"
    assert shorten("word " * 40) == " ".join(["word"] * 23) + "…"
    assert shorten("First sentence here. " + "more words " * 20, limit=60) == "First sentence here."


def test_eval_device_defaults_to_auto_as_the_readme_says(run_dir, tmp_path):
    import inspect

    from rlx.app.cli import eval_

    assert inspect.signature(eval_).parameters["device"].default.default == "auto"
    assert "`--device` is `auto` by default" in (Path(__file__).parents[2] / "README.md").read_text()
    r = run_cli("eval", str(run_dir), "--json", "--episodes", "1", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr  # auto without a GPU: the CPU

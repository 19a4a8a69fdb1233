"""TensorBoard event files: the metrics.jsonl scalars at x = env steps, and one curve per tag across a resume."""
import json
import shutil
import time

import numpy as np
import pytest

from rlx.rundir.tensorboard import TensorBoardSink, tag
from tests.conftest import FAST

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})  # 0: keep every point
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_tags_keep_the_metrics_key_under_a_section():
    assert tag("eval_return_mean") == "eval/eval_return_mean"
    assert tag("episode_return_mean") == "rollout/episode_return_mean"
    assert tag("sps") == "time/sps" and tag("wall_s") == "time/wall_s"
    assert tag("policy_loss") == "train/policy_loss"


def test_sink_writes_numbers_at_env_steps_and_a_resume_purges_the_redone_steps(tmp_path):
    sink = TensorBoardSink(tmp_path)
    for k in range(1, 9):  # a run that logged up to 4096, then was killed (its checkpoint: 2048)
        sink.log({"env_steps": 512 * k, "sps": float(k), "flag": True, "text": "x", "none": None})
    sink.close()
    time.sleep(1.1)  # event file names carry the second they were created
    sink = TensorBoardSink(tmp_path, start_steps=2048)
    for k in range(5, 13):
        sink.log({"env_steps": 512 * k, "sps": 100.0 + k})
    sink.close()
    got = _scalars(tmp_path)
    assert set(got) == {"time/sps"}  # bools, strings and nulls are not scalars
    steps = [s for s, _ in got["time/sps"]]
    assert steps == [512 * k for k in range(1, 13)]  # one monotone curve, no step twice
    values = [v for _, v in got["time/sps"]]
    assert values[:4] == [1.0, 2.0, 3.0, 4.0] and values[4:] == [100.0 + k for k in range(5, 13)]


def test_run_event_files_hold_the_metrics_and_a_killed_run_resumes_one_curve(tmp_path):
    from rlx.config.compose import compose_config
    from rlx.train.driver import resume, train

    run = tmp_path / "run"
    train(compose_config(["total_steps=2048", "eval.every=512", "eval.episodes=2", "logger.every=256",
                          "checkpoint.every=1024", "logger.wandb.mode=disabled", *FAST]), run)
    shutil.copy(run / "checkpoints" / "step_1024.pt", run / "checkpoints" / "last.pt")  # as if killed after 1024
    time.sleep(1.1)  # a resume in another second, as after a real kill (event file names carry the second)
    resume(run, ["total_steps=3072"])
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 2  # one file per process, one curve
    got = _scalars(run / "tb")
    # metrics.jsonl (lines past the checkpoint dropped by the resume) is the reference history
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected: dict[str, dict[int, float]] = {}
    for line in lines:
        is_eval = "eval_return_mean" in line
        for k, v in line.items():
            if is_eval and not k.startswith("eval_"):
                continue  # an eval line's wall_s is not a second point at the log line's step
            if k != "env_steps" and isinstance(v, (int, float)) and not isinstance(v, bool):
                expected.setdefault(tag(k), {})[line["env_steps"]] = v
    assert {"eval/eval_return_mean", "rollout/episode_return_mean", "train/policy_loss", "time/sps"} <= set(got)
    assert set(got) == set(expected)
    for t, points in got.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), f"{t}: steps not strictly increasing: {steps}"
        assert steps == sorted(expected[t]), t
        np.testing.assert_allclose([v for _, v in points], [expected[t][s] for s in steps], rtol=1e-6, err_msg=t)
    assert [s for s, _ in got["eval/eval_return_mean"]] == [512, 1024, 1536, 2048, 2560, 3072]


def test_tensorboard_off_writes_no_event_files(tmp_path):
    from rlx.config.compose import compose_config
    from rlx.train.driver import train

    cfg = compose_config(["total_steps=512", "eval.every=0", "eval.episodes=1", "checkpoint.every=0",
                          "logger.wandb.mode=disabled", "logger.tensorboard=false", *FAST])
    assert train(cfg, tmp_path / "run")["status"] == "ok"
    assert not (tmp_path / "run" / "tb").exists()

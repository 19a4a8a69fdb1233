"""`rlx plot` on a real 2x2 sweep (through the CLI, table checked against metrics.jsonl) and on a resumed run."""
import json
import shutil

import numpy as np

from rlx.analysis.plot import load_runs, run_plot
from rlx.analysis.report import fmt_number
from tests.conftest import FAST, run_cli

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["total_steps=512", "eval.every=256", "eval.episodes=2", "checkpoint.every=0", "logger.wandb.mode=disabled",
        "logger.tensorboard=false", *FAST]


def _evals(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(row["env_steps"], row["eval_return_mean"]) for row in lines if "eval_return_mean" in row]


def test_plot_a_2x2_sweep_with_its_table(tmp_path):
    sweep = tmp_path / "sw"
    r = run_cli("sweep", "algo.clip_eps=0.1,0.3", "seed=0,1", f"hydra.sweep.dir={sweep}", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "curves.png"
    r = run_cli("plot", str(sweep), "--by", "algo.clip_eps", "--table", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(PNG) and f"plot: {out}" in r.stdout
    for clip in ("0.1", "0.3"):
        finals = []
        for job in sweep.iterdir():
            if job.is_dir() and (job / "config.yaml").is_file() and f"clip_eps: {clip}\n" in (job / "config.yaml").read_text():
                finals.append(_evals(job)[-1][1])
        assert len(finals) == 2
        row = next(line for line in r.stdout.splitlines() if line.strip("│ ").startswith(clip))
        cells = [c.strip() for c in row.split("│") if c.strip()]
        assert cells[:3] == [clip, "2", "2"] and cells[4] == fmt_number(float(np.mean(finals))), row  # runs, ok, final mean


def test_a_resumed_run_is_one_curve(tmp_path):
    from rlx.config.compose import compose_config
    from rlx.train.driver import resume, train

    run = tmp_path / "run"
    train(compose_config(["total_steps=1024", "eval.every=256", "eval.episodes=2", "logger.every=256", "checkpoint.every=512",
                          "logger.wandb.mode=disabled", "logger.tensorboard=false", *FAST]), run)
    shutil.copy(run / "checkpoints" / "step_512.pt", run / "checkpoints" / "last.pt")  # as if killed after 512
    resume(run, ["total_steps=1536"])
    (plotted,) = load_runs([run], [], "eval_return_mean", "env_steps")
    xs, ys = plotted.record.curve
    assert xs.tolist() == [256, 512, 768, 1024, 1280, 1536]  # one monotone curve, the redone steps once
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == _evals(run)
    assert plotted.state == "ok"
    out, table = run_plot([run], "algo", "eval_return_mean", "env_steps", tmp_path / "r.png", table=True)
    assert table[0]["final"] == _evals(run)[-1][1] and out.read_bytes().startswith(PNG)


def test_an_unwritable_out_is_one_line_before_anything_is_computed(tmp_path):
    r = run_cli("plot", str(tmp_path / "no-runs-here"), "--out", "/proc/x.png", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()  # about --out, not about the missing runs: checked first
    assert line.startswith("rlx: error: --out /proc/x.png: cannot write a file in /proc")

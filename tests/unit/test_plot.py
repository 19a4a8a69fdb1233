"""rlx plot on hand-written run dirs: grouping by config keys, numbers from rlx.analysis.report's statistics,
failed/pruned/unfinished runs marked (not dropped), bad input as one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlx.analysis.plot import config_value, find_runs, read_curve, run_plot
from rlx.analysis.report import area_under_curve, bootstrap_ci, iqm
from rlx.errors import UserError

SVG, PNG = b"<svg", b"\x89PNG\r\n\x1a\n"


def _run(d, algo, clip, seed, evals, status="ok", extra_lines=()):
    d.mkdir(parents=True)
    cfg = {"seed": seed, "algo": {"name": algo, "clip_eps": clip}, "env": {"id": "CartPole-v1"}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = [{"env_steps": s, "wall_s": s / 1000, "sps": 1000.0} for s, _ in evals]
    lines += [{"env_steps": s, "wall_s": s / 1000 + 0.5, "eval_return_mean": v} for s, v in evals]
    lines += list(extra_lines)
    ordered = sorted(lines, key=lambda row: row["env_steps"])
    (d / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ordered) + '{"env_st')
    if status is not None:
        (d / "summary.json").write_text(json.dumps({"status": status, "eval_return_mean": evals[-1][1] if evals else None,
                                                    **({"error": "boom"} if status == "failed" else {})}))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "sweep"
    _run(root / "0", "ppo", 0.1, 0, [(100, 10.0), (200, 50.0), (300, 90.0)])
    _run(root / "1", "ppo", 0.1, 1, [(100, 20.0), (200, 60.0), (300, 100.0)])
    _run(root / "2", "ppo", 0.3, 0, [(100, 5.0), (200, 7.0), (300, 9.0)])
    _run(root / "3", "ppo", 0.3, 1, [(100, 6.0)], status="failed")
    _run(root / "4", "ppo", 0.3, 2, [(100, 4.0), (200, 8.0)], status="pruned")
    _run(tmp_path / "single", "a2c", 0.2, 0, [(150, 30.0), (300, 40.0)], status=None)  # unfinished
    return tmp_path


def test_finds_runs_in_sweeps_and_single_run_dirs(runs):
    found = find_runs([runs / "sweep", runs / "single"])
    assert [p.name for p in found] == ["0", "1", "2", "3", "4", "single"]
    (runs / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no runs found"):
        find_runs([runs / "empty"])


def test_config_values_for_grouping():
    cfg = {"algo": {"name": "ppo", "clip_eps": 0.2}, "env": {"id": "CartPole-v1"}, "network": {"hidden_sizes": [64, 64]}}
    assert config_value(cfg, "algo") == "ppo" and config_value(cfg, "env") == "CartPole-v1"
    assert config_value(cfg, "algo.clip_eps") == "0.2" and config_value(cfg, "network.hidden_sizes") == "[64, 64]"


def test_curve_keeps_one_point_per_x_and_skips_a_half_written_line(runs):
    xs, ys = read_curve(runs / "sweep" / "0" / "metrics.jsonl", "eval_return_mean", "env_steps")
    assert xs.tolist() == [100, 200, 300] and ys.tolist() == [10, 50, 90]
    xs, _ = read_curve(runs / "sweep" / "0" / "metrics.jsonl", "eval_return_mean", "wall_s")
    assert xs.tolist() == [0.6, 0.7, 0.8]


def test_table_uses_the_report_statistics_and_marks_runs_that_did_not_finish(runs, tmp_path):
    out, table = run_plot([runs / "sweep", runs / "single"], "algo,algo.clip_eps", "eval_return_mean", "env_steps",
                          tmp_path / "f.svg", table=True)
    assert out.read_bytes().lstrip().startswith(b"<?xml") and SVG in out.read_bytes()
    rows = {(r["algo"], r["algo.clip_eps"]): r for r in table}
    assert set(rows) == {("a2c", "0.2"), ("ppo", "0.1"), ("ppo", "0.3")}
    good = rows[("ppo", "0.1")]
    assert (good["runs"], good["ok"], good["marked"]) == (2, 2, "")
    assert good["final"] == 95.0 and good["iqm"] == iqm([90.0, 100.0])
    assert (good["ci_low"], good["ci_high"]) == bootstrap_ci([90.0, 100.0], stat=iqm)
    assert good["auc"] == pytest.approx(np.mean([area_under_curve([100, 200, 300], [10, 50, 90]),
                                                 area_under_curve([100, 200, 300], [20, 60, 100])]))
    bad = rows[("ppo", "0.3")]
    assert (bad["runs"], bad["ok"], bad["marked"], bad["final"]) == (3, 1, "1 failed, 1 pruned", 9.0)
    unfinished = rows[("a2c", "0.2")]
    assert (unfinished["ok"], unfinished["marked"]) == (0, "1 unfinished") and np.isnan(unfinished["final"])


def test_default_groups_by_the_sweep_overrides_and_other_metrics_and_x(runs, tmp_path):
    for d, o in (("0", ["algo.clip_eps=0.1", "seed=0"]), ("1", ["algo.clip_eps=0.1", "seed=1"])):
        (runs / "sweep" / d / ".hydra").mkdir()
        (runs / "sweep" / d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(o))
    _, table = run_plot([runs / "sweep" / "0", runs / "sweep" / "1"], None, "sps", "wall_s", tmp_path / "f.png", False)
    assert len(table) == 1 and table[0]["algo.clip_eps"] == "0.1" and table[0]["final"] == 1000.0
    assert (tmp_path / "f.png").read_bytes().startswith(PNG)
    _, table = run_plot([runs / "single"], None, "eval_return_mean", "env_steps", tmp_path / "g.pdf", False, stat="iqm")
    assert table[0]["algo"] == "a2c" and table[0]["env.id"] == "CartPole-v1"  # no overrides: algo, env.id
    assert (tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"by": "algo.clip_epz"}, "--by algo.clip_epz: not a config key of .*did you mean 'algo.clip_eps'"),
    ({"metric": "nope"}, "--metric nope: no run logged it"),
    ({"x": "updates"}, "--x updates: expected one of env_steps, wall_s"),
    ({"out": "f.jpg"}, r"--out \S*f.jpg: expected a .png, .svg, .pdf file"),
    ({"stat": "median"}, "--stat median"),
    ({"paths": ["missing"]}, "missing: no such file or directory"),
])
def test_bad_input(runs, kwargs, fragment):
    args = {"paths": [runs / "sweep"], "by": None, "metric": "eval_return_mean", "x": "env_steps",
            "out": runs / "f.png", "table": False, **kwargs}
    args["out"] = runs / args["out"] if isinstance(args["out"], str) else args["out"]
    args["paths"] = [runs / p if isinstance(p, str) else p for p in args["paths"]]
    with pytest.raises(UserError, match=fragment):
        run_plot(**args)


def test_a_sweep_with_no_eval_yet_says_so_and_lists_only_what_was_logged(tmp_path):
    for job in ("0", "1"):  # running: training lines only, no eval yet, no summary
        d = tmp_path / "sweep" / job
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump({"seed": int(job), "algo": {"name": "ppo"}, "env": {"id": "CartPole-v1"}}))
        (d / "metrics.jsonl").write_text(json.dumps({"env_steps": 256, "wall_s": 1.0, "episode_return_mean": 20.0,
                                                     "policy_loss": 0.1, "note": "text"}) + "\n")
    with pytest.raises(UserError) as e:
        run_plot([tmp_path / "sweep"], None, "eval_return_mean", "env_steps", tmp_path / "f.png", False)
    message = str(e.value)
    assert "none of the 2 run(s) has logged an evaluation yet (2 not finished" in message
    assert message.endswith("logged so far: episode_return_mean, policy_loss")  # eval_return_mean is not offered
    with pytest.raises(UserError, match="--metric nope: no run logged it against env_steps; their metrics.jsonl "
                                        "keys: episode_return_mean, policy_loss$"):
        run_plot([tmp_path / "sweep"], None, "nope", "env_steps", tmp_path / "f.png", False)
    assert not (tmp_path / "f.png").exists()


def test_runs_that_did_not_finish_are_drawn_dashed(tmp_path):
    _run(tmp_path / "ok", "ppo", 0.1, 0, [(100, 10.0), (200, 50.0)])
    out, _ = run_plot([tmp_path / "ok"], None, "eval_return_mean", "env_steps", tmp_path / "ok.svg", False)
    assert b"stroke-dasharray" not in out.read_bytes()  # finished runs: solid lines only
    for state in (None, "stopped"):  # unfinished (no summary yet), stopped by SIGTERM
        d = tmp_path / f"run-{state}"
        _run(d, "ppo", 0.1, 0, [(100, 10.0), (200, 50.0)], status=state)
        out, table = run_plot([d], None, "eval_return_mean", "env_steps", tmp_path / f"{state}.svg", False)
        assert b"stroke-dasharray" in out.read_bytes()
        assert (table[0]["ok"], table[0]["marked"]) == (0, f"1 {state or 'unfinished'}")


@pytest.mark.parametrize("out, fragment", [
    ("/proc/rlx-test/x.png", "cannot write a file in /proc"),
    ("afile/x.png", "afile exists and is not a directory"),
    ("adir", "expected a .png"),
    ("adir.png", "adir.png: is a directory"),
])
def test_an_unwritable_out_is_refused_before_anything_is_read(tmp_path, monkeypatch, out, fragment):
    import rlx.analysis.plot as plot_module

    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.png").mkdir()
    monkeypatch.setattr(plot_module, "load_runs", lambda *a: pytest.fail("runs were read before --out was checked"))
    target = tmp_path / out if not out.startswith("/") else Path(out)
    with pytest.raises(UserError, match=f"--out .*{fragment}"):
        run_plot([tmp_path / "missing"], None, "eval_return_mean", "env_steps", target, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "adir.png", "afile"]  # the probe left nothing


def test_an_existing_out_file_is_replaced(runs, tmp_path):
    (tmp_path / "old.png").write_bytes(b"old")
    out, _ = run_plot([runs / "sweep"], "algo", "eval_return_mean", "env_steps", tmp_path / "old.png", False)
    assert out.read_bytes().startswith(PNG)


def test_the_table_shows_what_differs_and_says_what_every_group_shares(runs, tmp_path):
    import io

    from rich.console import Console

    from rlx.analysis.plot import print_table

    _, table = run_plot([runs / "sweep"], "env.id,algo.clip_eps", "eval_return_mean", "env_steps", tmp_path / "f.png", False)
    console = Console(file=io.StringIO(), width=80)
    print_table(table, ["env.id", "algo.clip_eps"], "eval_return_mean", console)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "Same in every group: env.id=CartPole-v1"
    rows = [line for line in lines if "│" in line]
    assert [r.split("│")[0].strip() for r in rows] == ["0.1", "0.3"] and all(len(line) <= 80 for line in lines)

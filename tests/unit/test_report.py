"""Sweep report: statistics on hand-computed numbers, then an end-to-end fabricated sweep."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from rlx.analysis.report import (
    NO_SUMMARY_ERROR,
    ConfigRow,
    ReportError,
    aggregate,
    area_under_curve,
    bootstrap_ci,
    compare_top,
    iqm,
    load_sweep,
    parse_override,
    print_report,
    probability_of_improvement,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- iqm


def test_iqm_trims_quarter_from_each_end():
    # sorted: 1 2 | 3 4 5 6 | 7 100 -> mean of the middle four
    assert iqm([1, 2, 3, 4, 100, 5, 6, 7]) == pytest.approx(4.5)
    assert iqm([0, 10, 10, 1000]) == pytest.approx(10.0)  # outlier ignored
    assert iqm([1, 2, 3, 4, 5]) == pytest.approx(3.0)  # floor(1.25) = 1 trimmed per end


@pytest.mark.parametrize("values, expected", [([5.0], 5.0), ([1.0, 3.0], 2.0), ([1.0, 2.0, 9.0], 4.0)])
def test_iqm_small_n_is_plain_mean(values, expected):
    # floor(0.25 * n) == 0 for n <= 3: same as scipy.stats.trim_mean(x, 0.25)
    assert iqm(values) == pytest.approx(expected)


def test_iqm_axis_matches_rowwise_and_empty_raises():
    x = np.array([[1, 2, 3, 4, 100, 5, 6, 7], [0, 0, 1, 1, 1, 1, 9, 9]], dtype=float)
    np.testing.assert_allclose(iqm(x, axis=1), [iqm(x[0]), iqm(x[1])])
    with pytest.raises(ValueError):
        iqm([])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_single_value_is_degenerate():
    assert bootstrap_ci([3.5]) == (3.5, 3.5)


def test_bootstrap_contains_mean_and_is_deterministic():
    x = [1.0, 2.0, 4.0, 7.0, 11.0]
    lo, hi = bootstrap_ci(x)
    assert lo <= np.mean(x) <= hi
    assert lo < hi
    assert bootstrap_ci(x) == (lo, hi)  # default rng is seeded
    assert bootstrap_ci(x, rng=np.random.default_rng(0)) == (lo, hi)
    # Non-vectorised statistic takes the per-sample path and agrees with the vectorised one.
    assert bootstrap_ci(x, stat=lambda s: float(np.mean(s))) == pytest.approx((lo, hi))


def test_bootstrap_width_shrinks_with_more_seeds():
    gen = np.random.default_rng(123)
    widths = []
    for n in (5, 50, 500):
        lo, hi = bootstrap_ci(gen.normal(100.0, 20.0, size=n))
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0


def test_bootstrap_of_iqm_brackets_iqm():
    x = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 500.0]
    lo, hi = bootstrap_ci(x, stat=iqm)
    assert lo <= iqm(x) <= hi
    assert hi < bootstrap_ci(x, stat=np.mean)[1]  # the outlier moves the IQM's CI less


# --------------------------------------------------------------------------- auc / P(improvement)


def test_auc_of_linear_curve_is_its_midpoint():
    steps = np.linspace(0, 1000, 11)
    assert area_under_curve(steps, 0.01 * steps) == pytest.approx(5.0)
    # Uneven spacing: trapz = 0.5 + 9 * 5.5 = 50 over a range of 10
    assert area_under_curve([0, 1, 10], [0, 1, 10]) == pytest.approx(5.0)
    # Late learner scores below its final value: (0 + 50) / 20
    assert area_under_curve([0, 10, 20], [0, 0, 10]) == pytest.approx(2.5)


def test_auc_edge_cases():
    assert area_under_curve([100], [7.0]) == 7.0
    assert area_under_curve([20, 0, 10], [10, 0, 0]) == pytest.approx(2.5)  # unsorted input
    with pytest.raises(ValueError):
        area_under_curve([], [])


def test_probability_of_improvement_counts_ties_half():
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    # pairs: (1,2)=0 (1,3)=0 (2,2)=0.5 (2,3)=0
    assert probability_of_improvement([1, 2], [2, 3]) == pytest.approx(0.125)


def test_parse_override():
    assert parse_override("algo.clip_eps=0.1") == ("algo.clip_eps", "0.1")
    assert parse_override("+hydra.job.foo=a=b") == ("hydra.job.foo", "a=b")
    assert parse_override("~algo.lr") == ("~algo.lr", "")


# --------------------------------------------------------------------------- fabricated sweeps


def _make_run(
    sweep: Path,
    job: int | str,
    overrides: list[str],
    evals: list[tuple[int, float]],
    summary: dict | None,
) -> Path:
    """Write one Hydra job dir in the layout `rlx train -m` produces."""
    d = sweep / str(job)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    lines = []
    for i, (step, ret) in enumerate(evals):
        lines.append({"env_steps": step, "wall_s": i * 1.0, "sps": 1000.0, "episode_return_mean": ret - 5})
        lines.append({"env_steps": step, "wall_s": i * 1.0 + 0.5, "eval_return_mean": ret, "eval_return_std": 3.0})
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    return d


def _ok_summary(final: float) -> dict:
    return {"status": "ok", "env_steps": 1000, "wall_s": 10.0, "sps": 1000.0,
            "eval_return_mean": final, "eval_return_std": 3.0, "best_eval_return": final}


def _fabricate_sweep(sweep: Path) -> None:
    """2 configs x 3 seeds + 1 failed run of a third config."""
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    finals = {"0.1": [100.0, 110.0, 120.0], "0.2": [480.0, 490.0, 500.0]}
    for clip, vals in finals.items():
        for seed, final in enumerate(vals):
            curve = [(s, final * s / 1000) for s in (0, 250, 500, 750, 1000)]
            _make_run(sweep, job, [f"algo.clip_eps={clip}", f"seed={seed}"], curve, _ok_summary(final))
            job += 1
    _make_run(sweep, job, ["algo.clip_eps=0.3", "seed=0"], [(0, 1.0)],
              {"status": "failed", "error": "ValueError: NaN in policy loss"})


def test_end_to_end_report(tmp_path: Path):
    sweep = tmp_path / "multirun_ppo_clip"
    _fabricate_sweep(sweep)

    paths = write_report(sweep)

    with open(paths.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["algo.clip_eps"] for r in rows] == ["0.1", "0.2", "0.3"]
    by_clip = {r["algo.clip_eps"]: r for r in rows}
    assert [r["best"] for r in rows] == ["False", "True", "False"]
    best = by_clip["0.2"]
    assert best["n_seeds"] == "3" and best["n_failed"] == "0" and best["status"] == "ok"
    assert float(best["iqm"]) == pytest.approx(490.0)
    assert float(best["mean"]) == pytest.approx(490.0)
    assert float(best["ci_low"]) <= 490.0 <= float(best["ci_high"])
    assert float(best["auc"]) == pytest.approx(245.0)  # linear ramp to 490
    assert float(best["sps"]) == pytest.approx(1000.0)
    failed = by_clip["0.3"]
    assert failed["status"] == "failed" and failed["n_seeds"] == "0" and failed["n_failed"] == "1"
    assert "NaN in policy loss" in failed["errors"]
    assert failed["iqm"] == ""  # no numbers for a config with no successful run

    md = paths.markdown.read_text()
    assert md.startswith("# Sweep report: multirun_ppo_clip")
    assert "Best: algo.clip_eps=0.2 (IQM 490.0, 95% CI [" in md
    assert "runner-up: algo.clip_eps=0.1" in md
    assert "P(best > runner-up) = 1.00 — clear winner" in md
    assert "| **0.2** |" in md
    assert "## Failed runs" in md and "ValueError: NaN in policy loss" in md

    png = paths.png.read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_load_sweep_details(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    # Killed run: no summary, truncated last metrics line.
    d = _make_run(sweep, 0, ["algo.lr=1e-3", "seed=0", "hydra.job.chdir=true"], [(0, 1.0), (10, 2.0)], None)
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"env_steps": 20, "eval_ret')
    _make_run(sweep, 2, ["algo.lr=3e-4", "+seed=1"], [(0, 1.0), (10, 4.0)], _ok_summary(4.0))
    _make_run(sweep, 10, ["algo.lr=3e-4", "seed=2"], [(0, 1.0)], {**_ok_summary(float("nan")), "eval_return_mean": None})
    (sweep / "not_a_run").mkdir()

    runs = load_sweep(sweep)
    assert [r.run_dir.name for r in runs] == ["0", "2", "10"]  # numeric job order
    killed, ok, no_final = runs
    assert killed.status == "failed" and killed.error == NO_SUMMARY_ERROR
    assert killed.overrides == {"algo.lr": "1e-3"} and killed.seed == 0
    np.testing.assert_array_equal(killed.curve[0], [0, 10])
    assert ok.status == "ok" and ok.seed == 1 and ok.final_return == 4.0 and ok.sps == 1000.0
    assert no_final.status == "ok" and no_final.final_return == 1.0  # falls back to last eval point

    rows = aggregate(runs)
    assert [r.config["algo.lr"] for r in rows] == ["3e-4", "1e-3"]  # numeric, not string, order
    assert rows[0].is_best and rows[0].n_seeds == 2
    assert rows[1].status == "failed" and rows[1].errors == [f"0: {NO_SUMMARY_ERROR}"]


def test_empty_or_missing_sweep_raises(tmp_path: Path):
    with pytest.raises(ReportError, match="no runs found"):
        load_sweep(tmp_path)
    with pytest.raises(ReportError, match="not found"):
        write_report(tmp_path / "nope")


def test_all_failed_sweep_still_reports(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _make_run(sweep, 0, ["algo.lr=1e-3", "seed=0"], [], {"status": "failed", "error": "boom | with pipe\nline2"})
    paths = write_report(sweep)
    md = paths.markdown.read_text()
    assert "No configuration finished successfully" in md
    assert "boom \\| with pipe" in md  # pipes escaped inside the table
    assert paths.png.read_bytes().startswith(PNG_MAGIC)


def _row(name: str, finals: list[float]) -> ConfigRow:
    lo, hi = bootstrap_ci(finals, stat=iqm)
    return ConfigRow(config={"x": name}, n_seeds=len(finals), n_failed=0, errors=[], mean=float(np.mean(finals)),
                     iqm=float(iqm(finals)), ci_low=lo, ci_high=hi, auc_mean=0.0, sps_mean=0.0,
                     config_key=f"x={name}", finals=finals)


def test_verdict_overlap_and_single_seed():
    v = compare_top([_row("a", [10.0, 12.0, 14.0]), _row("b", [11.0, 13.0, 15.0])])
    assert v.best.config == {"x": "b"} and v.separable is False
    assert v.p_improvement == pytest.approx(6 / 9)  # 11 beats 1, 13 beats 2, 15 beats 3
    assert "not separable at 95%: CIs overlap" in v.text
    v1 = compare_top([_row("a", [10.0]), _row("b", [20.0])])
    assert v1.separable is None and "need at least 2 seeds" in v1.text
    assert compare_top([_row("a", [1.0, 2.0])]).runner_up is None


def test_print_report_renders(tmp_path: Path):
    from rich.console import Console

    sweep = tmp_path / "sweep"
    _fabricate_sweep(sweep)
    console = Console(file=io.StringIO(), width=200)
    print_report(aggregate(load_sweep(sweep)), console)
    out = console.file.getvalue()
    assert "algo.clip_eps" in out and "490.0" in out and "NaN in policy loss" in out

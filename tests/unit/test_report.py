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


# --------------------------------------------------------------------------- odd input (issue 24)


def _stopped_summary(steps: int = 512) -> dict:
    return {"status": "stopped", "stopped_by": "SIGTERM", "env_steps": steps, "eval_return_mean": 50.0, "sps": 900.0}


def _sweep_with_a_stopped_and_a_failed_run(sweep: Path, error: str = "ValueError: NaN in policy loss") -> None:
    sweep.mkdir()
    job = 0
    for clip, finals in (("0.1", [100.0, 110.0]), ("0.2", [480.0, 490.0])):
        for seed, final in enumerate(finals):
            _make_run(sweep, job, [f"algo.clip_eps={clip}", f"seed={seed}"], [(0, 0.0), (1000, final)], _ok_summary(final))
            job += 1
    _make_run(sweep, job, ["algo.clip_eps=0.2", "seed=2"], [(0, 0.0), (500, 50.0)], _stopped_summary())
    _make_run(sweep, job + 1, ["algo.clip_eps=0.3", "seed=0"], [(0, 1.0)], {"status": "failed", "error": error})


def test_a_stopped_run_is_counted_as_stopped_with_how_to_resume_not_as_failed(tmp_path: Path, capsys):
    from rlx.app.sweep import report_sweep

    sweep = tmp_path / "sweep"
    _sweep_with_a_stopped_and_a_failed_run(sweep)
    runs = load_sweep(sweep)
    stopped = next(r for r in runs if r.run_dir.name == "4")
    assert stopped.status == "stopped" and not stopped.ok and stopped.error == "stopped by SIGTERM at env step 512"
    rows = {r.config["algo.clip_eps"]: r for r in aggregate(runs)}
    assert (rows["0.2"].n_seeds, rows["0.2"].n_failed, rows["0.2"].n_stopped, rows["0.2"].status) == (2, 0, 1, "partial")
    assert rows["0.2"].finals == [480.0, 490.0]  # the stopped run's last eval is not a final return
    assert (rows["0.3"].n_failed, rows["0.3"].n_stopped, rows["0.3"].status) == (1, 0, "failed")

    report_sweep(sweep)
    out = capsys.readouterr().out
    assert "1 of 6 runs failed" in out and "1 of 6 runs stopped by SIGTERM/Ctrl-C" in out
    assert f"rlx resume {sweep / '4'}" in out
    with open(sweep / "report.csv", newline="") as fh:
        csv_rows = {r["algo.clip_eps"]: r for r in csv.DictReader(fh)}
    assert (csv_rows["0.2"]["n_failed"], csv_rows["0.2"]["n_stopped"]) == ("0", "1")
    md = (sweep / "report.md").read_text()
    failed_part, stopped_part = md.split("## Failed runs")[1].split("## Stopped runs")
    assert "`5/`" in failed_part and "`4/`" not in failed_part
    assert "`4/`" in stopped_part and f"rlx resume {sweep / '4'}" in stopped_part
    assert "| status | seeds | failed | stopped |" in md


def test_a_sweep_of_only_stopped_runs_is_stopped_not_failed(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _make_run(sweep, 0, ["algo.lr=1e-3", "seed=0"], [(0, 1.0)], _stopped_summary(256))
    (row,) = aggregate(load_sweep(sweep))
    assert (row.status, row.n_failed, row.n_stopped) == ("stopped", 0, 1)
    assert row.stopped == ["0: stopped by SIGTERM at env step 256"]


LONG_ERROR = ("RuntimeError: deliberate crash in step() of the environment CrashingCartPole after twenty steps; "
              "last good checkpoint: /tmp/somewhere/checkpoints/last.pt")


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_report_table_fits_the_console_and_never_wraps_a_cell(tmp_path: Path, width: int):
    from rich.console import Console

    sweep = tmp_path / "sweep"
    _sweep_with_a_stopped_and_a_failed_run(sweep, LONG_ERROR)
    console = Console(file=io.StringIO(), width=width)
    print_report(aggregate(load_sweep(sweep)), console)
    lines = console.file.getvalue().splitlines()
    table = [line for line in lines if "│" in line or "┃" in line]
    assert table and all(len(line) <= width for line in table), "\n".join(lines)
    assert len([line for line in table if "│" in line]) == 3  # one line per configuration: nothing wrapped
    for number in ("485.0", "[480.0, 490.0]"):  # numbers are never cut
        assert any(number in line for line in table), number
    # the error: in the table cut with "…" or, with no room for it there, one line below the table
    (error_line,) = [line for line in lines if "RuntimeError: de" in line]
    assert len(error_line) <= width and (error_line.rstrip().endswith("…") or width >= 200)


def test_fit_table_cuts_text_then_optional_columns_then_config_values():
    from rlx.analysis.tables import Col, column_widths

    cols = [Col("algo.clip_eps", "left", "key"), Col("IQM"), Col("SPS", drop=1), Col("error", "left", "text")]
    rows = [["0.123456789", "485.0", "1234.5", "x" * 60]]
    assert column_widths(cols, rows, 200) == [11, 5, 6, 60]  # fits: natural widths (the header breaks after dots)
    assert column_widths(cols, rows, 50) == [11, 5, 6, 50 - 11 - 5 - 6 - 9]  # the text takes what is left
    assert column_widths(cols, rows, 40) == [11, 5, None, 40 - 11 - 5 - 6]  # SPS left out before text goes below 16
    assert column_widths(cols, rows, 30) == [11, 5, 6, None]  # then values cut, text out: SPS and the values come back
    assert column_widths(cols, rows, 16) == [8, 5, None, None]


def _plain_run(d: Path, overrides: list[str], choices: dict, config: dict, final: float) -> Path:
    """A plain `rlx train` run dir: Hydra's overrides.yaml and hydra.yaml (group choices), config.yaml, summary."""
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"runtime": {"choices": choices}}}))
    (d / "config.yaml").write_text(json.dumps(config))
    (d / "metrics.jsonl").write_text(json.dumps({"env_steps": 100, "eval_return_mean": final}) + "\n")
    (d / "summary.json").write_text(json.dumps(_ok_summary(final)))
    return d


def test_plain_runs_side_by_side_are_grouped_by_what_they_ran_with_and_plot_groups_the_same(tmp_path: Path):
    from rlx.analysis.plot import load_runs
    from rlx.analysis.report import config_groups

    outputs = tmp_path / "outputs"
    cfg = {"seed": 0, "total_steps": 50000, "algo": {"name": "ppo", "lr": 0.001}, "env": {"id": "CartPole-v1"}}
    choices = {"algo": "ppo", "env": "cartpole", "network": "mlp", "sweep": None}
    a = _plain_run(outputs / "a", ["algo=sac", "env=pendulum"], {**choices, "algo": "sac", "env": "pendulum"},
                   {**cfg, "algo": {"name": "sac", "lr": 0.001}, "env": {"id": "Pendulum-v1"}}, -200.0)
    b = _plain_run(outputs / "b", ["total_steps=1000", "seed=3"], choices, {**cfg, "total_steps": 1000}, 20.0)
    c = _plain_run(outputs / "c", ["algo.lr=1e-3"], choices, cfg, 30.0)  # 1e-3 is b's default 0.001: same value
    d = _plain_run(outputs / "d", [], choices, cfg, 40.0)
    groups = config_groups([a, b, c, d])
    assert groups[0] == {"algo": "sac", "algo.lr": "0.001", "env": "pendulum", "total_steps": "50000"}  # no blank cells
    assert groups[1] == {"algo": "ppo", "algo.lr": "0.001", "env": "cartpole", "total_steps": "1000"}
    assert groups[2] == groups[3] == {"algo": "ppo", "algo.lr": "0.001", "env": "cartpole", "total_steps": "50000"}
    report_groups = {r.run_dir.name: r.overrides for r in load_sweep(outputs)}
    plot_groups = {r.record.run_dir.name: r.record.overrides for r in load_runs([outputs], [], "eval_return_mean", "env_steps")}
    assert report_groups == plot_groups == dict(zip("abcd", groups, strict=True))
    assert config_groups([d]) == [{"algo": "ppo", "env.id": "CartPole-v1"}]  # no overrides at all: algo, env.id


def _study(tmp_path: Path, finished: bool) -> Path:
    """What `rlx tune` writes in its study dir: tune.yaml, trials/<n>/ (runs), confirm/ and tune.md when done."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "tune.yaml").write_text("fixed: [algo=ppo]\nspace:\n- {key: algo.lr, kind: float}\ntune: {}\n")
    for n, lr in enumerate(("1e-4", "1e-3")):
        _make_run(study / "trials", n, [f"algo.lr={lr}", "seed=0"], [(0, 1.0), (100, 5.0 + n)], _ok_summary(5.0 + n))
    if finished:
        for seed in (1, 2):
            _make_run(study / "confirm", f"trial1-seed{seed}", ["algo.lr=1e-3", f"seed={seed}"], [(0, 1.0)], _ok_summary(6.0))
        (study / "tune.md").write_text("# Tuning report: study\n")
    return study


@pytest.mark.parametrize("finished", [True, False])
def test_report_of_a_tune_study_points_at_the_study_report(tmp_path: Path, finished: bool):
    from rlx.app.sweep import report_sweep
    from rlx.errors import UserError

    study = _study(tmp_path, finished)
    for path in (study, study / "trials"):
        with pytest.raises(UserError) as e:
            report_sweep(path)
        message = str(e.value)
        assert "rlx tune study" in message and str(study / "tune.md") in message and "\n" not in message
        assert f"rlx plot {study / 'trials'} --by algo.lr" in message
        assert ("rlx tune --resume" in message) != finished
        assert (f"rlx report {study / 'confirm'}" in message) == finished
    assert not (study / "report.md").exists() and not (study / "trials" / "report.md").exists()
    if finished:  # the confirmation runs are a sweep: reported as one
        rows = report_sweep(study / "confirm")
        assert [r.n_seeds for r in rows] == [2]


def test_a_table_with_more_keys_than_fit_numbers_its_rows_and_spells_them_out_below(tmp_path: Path):
    from rich.console import Console

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    keys = [f"algo.some_long_option_{i}" for i in range(6)]
    for job, final in enumerate((100.0, 200.0)):
        _make_run(sweep, job, [*(f"{k}={job}{i}" for i, k in enumerate(keys)), "seed=0"], [(0, 0.0), (10, final)],
                  _ok_summary(final))
    console = Console(file=io.StringIO(), width=80)
    print_report(aggregate(load_sweep(sweep)), console)
    lines = console.file.getvalue().splitlines()
    header = next(line for line in lines if "┃" in line and "status" in line)
    assert header.split("┃")[0].strip() == "#" and all(len(line) <= 80 for line in lines if "│" in line)
    assert any(line.startswith("#2: algo.some_long_option_0=10, algo.some_long_option_1=11") for line in lines)
    assert any("200.0" in line and line.split("│")[0].strip() == "2" for line in lines if "│" in line)

"""`rlx plot`: learning curves of runs and sweeps, grouped by config keys, with the sweep report's statistics.

Input: run dirs, sweep dirs, tune study dirs (anything holding run dirs, searched recursively). Each run's
curve is ``metric`` against ``x`` from its metrics.jsonl (a resumed run's file is one history: resume
drops the lines past the checkpoint). Runs are grouped by the values of ``--by`` keys in their resolved
config.yaml, without ``--by`` exactly as the sweep report groups them (rlx.analysis.report's
``config_groups``); each group is drawn as the mean (or IQM) over its runs on a common grid with a 95%
bootstrap band (rlx.analysis.report's ``mean_curve``); runs that failed, were pruned, were stopped or did
not finish are drawn dashed and marked, and counted in the table. The table (final value, IQM with its
bootstrap CI, AUC) is rlx.analysis.report's ``aggregate``: the same statistics as the sweep report, not a
second implementation. ``--out`` is checked before anything is read.
"""
from __future__ import annotations

import difflib
import json
import os
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from rlx.analysis.report import (
    ConfigRow,
    RunRecord,
    aggregate,
    config_groups,
    config_key,
    config_value,
    finite_or_none,
    fmt_number,
    iqm,
    mean_curve,
)
from rlx.errors import UserError

X_KEYS = ("env_steps", "wall_s")
FORMATS = (".png", ".svg", ".pdf")
SKIP_DIRS = {"checkpoints", "wandb", "tb", ".hydra", "__pycache__"}


@dataclass
class PlotRun:
    record: RunRecord  # curve, final value, ok/failed: what rlx.analysis.report aggregates
    state: str  # ok | failed | pruned | stopped | unfinished


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Every run dir (a dir with config.yaml and metrics.jsonl) at or under ``paths``, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p}: no such file or directory")
        if not p.is_dir():
            raise UserError(f"{p}: expected a run dir or a directory of runs (sweep, study)")
        before = len(found)
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted((d for d in dirs if d not in SKIP_DIRS), key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
            if "config.yaml" in files and "metrics.jsonl" in files:
                found.append(Path(root))
                dirs[:] = []  # a run dir holds no other runs
        if len(found) == before:
            raise UserError(f"{p}: no runs found (a run dir has config.yaml and metrics.jsonl)")
    unique = list(dict.fromkeys(r.resolve() for r in found))
    return unique


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out = [prefix] if prefix else []
    for k, v in node.items():
        out += _flat_keys(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def read_curve(path: Path, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, metric) of every metrics.jsonl line holding both, sorted by x; a repeated x keeps its last value."""
    points: dict[float, float] = {}
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a killed run's half-written last line
                if not isinstance(rec, dict):
                    continue
                xv, yv = finite_or_none(rec.get(x)), finite_or_none(rec.get(metric))
                if xv is not None and yv is not None:
                    points[xv] = yv
    xs = np.array(sorted(points), dtype=float)
    return xs, np.array([points[v] for v in xs], dtype=float)


def by_group(run_dir: Path, by: Sequence[str]) -> dict[str, str]:
    """A run's values of the ``--by`` keys, from its resolved config.yaml."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    group = {}
    for key in by:
        try:
            group[key] = config_value(config, key)
        except KeyError:
            close = difflib.get_close_matches(key, _flat_keys(config), n=1, cutoff=0.6)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "give a key of the runs' config.yaml (algo, env.id, algo.clip_eps, ...)")
            raise UserError(f"--by {key}: not a config key of {run_dir}; {hint}") from None
    return group


def load_run(run_dir: Path, group: dict[str, str], metric: str, x: str) -> PlotRun:
    """One run's curve of ``metric`` against ``x`` and its state, in the group ``group``."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    steps, values = read_curve(run_dir / "metrics.jsonl", metric, x)
    summary: dict[str, Any] = {}
    if (run_dir / "summary.json").is_file():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except ValueError:
            summary = {"status": "failed", "error": "unreadable summary.json"}
    state = str(summary.get("status", "unfinished")) if summary else "unfinished"
    ok = state == "ok" and values.size > 0
    error = None if ok else (summary.get("error") or (f"no {metric} in metrics.jsonl" if state == "ok" else state))
    status = "ok" if ok else "stopped" if state == "stopped" else "failed"  # as rlx.analysis.report counts them
    record = RunRecord(run_dir=run_dir, overrides=group, config_key=config_key(group), seed=config.get("seed"),
                       status=status, error=error,
                       final_return=float(values[-1]) if values.size else None, curve=(steps, values),
                       sps=finite_or_none(summary.get("sps")))
    return PlotRun(record, state if state != "ok" or ok else "no data")


def logged_keys(run_dirs: Sequence[Path], x: str) -> list[str]:
    """The numeric metrics.jsonl keys logged on a line with ``x``, over all runs (for the message when
    ``--metric`` is none of them)."""
    keys: set[str] = set()
    for d in run_dirs:
        path = d / "metrics.jsonl"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and finite_or_none(rec.get(x)) is not None:
                    keys.update(k for k, v in rec.items() if k not in X_KEYS and finite_or_none(v) is not None)
    return sorted(keys)


def load_runs(paths: Sequence[str | Path], by: Sequence[str], metric: str, x: str) -> list[PlotRun]:
    """Every run under ``paths``, grouped by the ``--by`` keys, else as `rlx report` groups the runs of a sweep
    (rlx.analysis.report's ``config_groups``)."""
    if x not in X_KEYS:
        raise UserError(f"--x {x}: expected one of {', '.join(X_KEYS)}")
    dirs = find_runs(paths)
    groups = [by_group(d, by) for d in dirs] if by else config_groups(dirs)
    runs = [load_run(d, g, metric, x) for d, g in zip(dirs, groups, strict=True)]
    if not any(r.record.curve[0].size for r in runs):
        raise UserError(_no_curve_message(dirs, runs, metric, x))
    return runs


def _no_curve_message(dirs: Sequence[Path], runs: Sequence[PlotRun], metric: str, x: str) -> str:
    keys = logged_keys(dirs, x)
    n = len(runs)
    unfinished = sum(r.state in ("unfinished", "stopped") for r in runs)
    if metric == "eval_return_mean" and unfinished:  # a sweep that has not reached its first eval
        return (f"--metric {metric}: none of the {n} run(s) has logged an evaluation yet ({unfinished} not finished; "
                f"the first comes after eval.every env steps)" + (f"; logged so far: {', '.join(keys)}" if keys else ""))
    if not keys:
        return f"--metric {metric}: the {n} run(s) have logged nothing against {x} yet"
    return f"--metric {metric}: no run logged it against {x}; their metrics.jsonl keys: {', '.join(keys)}"


def _short(value: str) -> str:
    """0.22055267521432875 -> 0.2206 in a legend (the table keeps the exact value)."""
    try:
        x = float(value)
    except ValueError:
        return value
    return value if x.is_integer() or len(value) <= 8 else f"{x:.4g}"


def _label(row: ConfigRow, shown: Sequence[str] | None = None) -> str:
    """The legend entry: the group's values of ``shown`` keys (those that differ between groups; all by default)."""
    items = [(k, v) for k, v in row.config.items() if shown is None or k in shown]
    return ", ".join(f"{k}={_short(v)}" for k, v in items) or "(all runs)"


def _differing_keys(rows: Sequence[ConfigRow]) -> list[str]:
    """Keys whose value differs between the groups (one group: all its keys): what tells the lines apart."""
    keys = list(dict.fromkeys(k for r in rows for k in r.config))
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({r.config.get(k) for r in rows}) > 1]


def plot(runs: Sequence[PlotRun], rows: Sequence[ConfigRow], out: Path, metric: str, x: str, stat_name: str) -> Path:
    """One line per group (mean or IQM, 95% bootstrap band); not-ok runs dashed with a marked last point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    stat = iqm if stat_name == "iqm" else np.mean
    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = _differing_keys(rows)  # the keys every group shares go into the title, not each legend entry
    fixed = [f"{k}={_short(v)}" for k, v in rows[0].config.items() if k not in shown] if len(rows) > 1 else []
    lows, highs = [], []
    for i, row in enumerate(rows):
        color = f"C{i % 10}"
        members = [r for r in runs if r.record.config_key == row.config_key]
        ok = [r.record for r in members if r.record.ok]
        marked = [r for r in members if not r.record.ok]
        note = f" (+{len(marked)} {'/'.join(sorted({r.state for r in marked}))})" if marked else ""
        curve = mean_curve(ok, stat=stat) if ok else None
        if curve is not None:
            xs, center, lo, hi = curve
            ax.plot(xs, center, color=color, lw=1.8, marker="o" if xs.size == 1 else None,
                    drawstyle="steps-post" if metric.startswith("hp/") else "default",  # PBT values hold between rounds
                    label=f"{_label(row, shown)} (n={len(ok)}){note}")
            lows.append(float(np.nanmin(center)))
            highs.append(float(np.nanmax(center)))
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)
        labelled = curve is not None
        for r in marked:  # failed, pruned, stopped, unfinished: dashed, the last point marked with the state
            xs, ys = r.record.curve
            if not xs.size:
                continue  # nothing logged yet: counted in the legend and the table only
            ax.plot(xs, ys, color=color, lw=1.0, ls="--", alpha=0.8, label=None if labelled else f"{_label(row, shown)}{note}")
            labelled = True
            ax.plot(xs[-1:], ys[-1:], color=color, marker="x", ms=8, mew=2)
            ax.annotate(r.state, (xs[-1], ys[-1]), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    ax.legend(loc="best", fontsize=8)
    if fixed:
        ax.set_title(textwrap.shorten(", ".join(fixed), 110), fontsize=8)
    if metric.startswith("hp/") and lows and min(lows) > 0 and max(highs) / min(lows) >= 10:
        ax.set_yscale("log")  # a PBT hyperparameter such as lr, spanning decades
    ax.set_xlabel("env steps" if x == "env_steps" else "wall-clock seconds")
    ax.set_ylabel(f"{metric} ({'IQM' if stat_name == 'iqm' else 'mean'} over runs, 95% bootstrap CI)")
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    except OSError as e:  # check_out said yes, and then the disk said no (full, or changed since)
        raise UserError(f"--out {out}: cannot be written ({e.strerror or e})") from None
    return out


def check_out(out: Path) -> None:
    """``--out`` names a file that can be written: a one-line UserError otherwise, before anything is read
    or computed. Writes nothing that stays (a probe file, deleted at once, in the nearest existing parent)."""
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out {out}: expected a {', '.join(FORMATS)} file")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file name, e.g. {out / 'plot.png'}")
    base = out.parent
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"--out {out}: {base} exists and is not a directory")
    try:
        if out.exists():
            with open(out, "r+b"):  # writable, and left as it is
                pass
        else:
            fd, probe = tempfile.mkstemp(prefix=".rlx-plot-", dir=base)
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        where = out if out.exists() else base
        raise UserError(f"--out {out}: cannot write {'it' if where == out else f'a file in {base}'} "
                        f"({e.strerror or e}); choose another path") from None


def table_rows(runs: Sequence[PlotRun], rows: Sequence[ConfigRow]) -> list[dict[str, Any]]:
    """Per group: runs, ok, marked (failed/pruned/unfinished), final mean, IQM, its 95% CI, AUC."""
    out = []
    for row in rows:
        members = [r for r in runs if r.record.config_key == row.config_key]
        marked = [r.state for r in members if not r.record.ok]
        out.append({**row.config, "runs": len(members), "ok": row.n_seeds,
                    "marked": ", ".join(f"{marked.count(s)} {s}" for s in sorted(set(marked))),
                    "final": row.mean, "iqm": row.iqm, "ci_low": row.ci_low, "ci_high": row.ci_high, "auc": row.auc_mean})
    return out


def print_table(table: list[dict[str, Any]], keys: Sequence[str], metric: str, console: Any | None = None) -> None:
    """The --table table, fitted to the console (rlx.analysis.tables: no cell wraps, long ones end in "…")."""
    from rich.console import Console
    from rich.text import Text

    from rlx.analysis.tables import Col, fit_table

    console = console or Console()
    varying = [k for k in keys if len({str(r.get(k, "")) for r in table}) > 1] or list(keys)
    fixed = [f"{k}={table[0].get(k, '')}" for k in keys if k not in varying]
    cols = [*(Col(k, "left", "key") for k in varying), Col("runs"), Col("ok"), Col("marked", "left", "text"),
            Col("final (mean)"), Col("IQM"), Col("95% CI (IQM)"), Col("AUC", drop=1)]
    rows = []
    for r in table:
        ci = "—" if not r["ok"] else f"[{fmt_number(r['ci_low'])}, {fmt_number(r['ci_high'])}]"
        rows.append([*(str(r.get(k, "")) for k in varying), str(r["runs"]), str(r["ok"]), r["marked"],
                     fmt_number(r["final"]), fmt_number(r["iqm"]), ci, fmt_number(r["auc"])])
    if fixed:  # as the sweep report: what every group shares is said once, above the table
        console.print(Text(f"Same in every group: {', '.join(fixed)}"))
    out, _, legend = fit_table(cols, rows, console.width, f"{metric}: final value over runs (ok runs only)")
    console.print(out)
    for line in legend:
        console.print(Text(line))


def run_plot(paths: Sequence[str | Path], by: str | None, metric: str, x: str, out: Path, table: bool,
             stat: str = "mean") -> tuple[Path, list[dict[str, Any]]]:
    """`rlx plot`: load, group, aggregate (rlx.analysis.report), draw, optionally print the table."""
    check_out(out)
    if stat not in ("mean", "iqm"):
        raise UserError(f"--stat {stat}: expected mean or iqm")
    keys = [k.strip() for k in (by or "").split(",") if k.strip()]
    runs = load_runs(paths, keys, metric, x)
    rows = aggregate([r.record for r in runs])
    path = plot(runs, rows, out, metric, x, stat)
    result = table_rows(runs, rows)
    if table:
        group_keys = list(dict.fromkeys(k for r in rows for k in r.config))
        print_table(result, group_keys, metric)
    return path, result

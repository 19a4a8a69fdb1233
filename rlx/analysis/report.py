"""Aggregate a Hydra multirun sweep into a report: which setting won, and how sure we are.

Input: a multirun directory (``SWEEP_DIR/<job>/{.hydra/overrides.yaml, metrics.jsonl,
summary.json}``). Output: ``report.csv``, ``report.md`` and ``report.png`` in that directory.

Statistics follow the rliable recommendations (Agarwal et al., 2021): rank by the
interquartile mean (IQM) of final eval returns across seeds, give percentile-bootstrap
confidence intervals, and report the probability of improvement over the runner-up
instead of claiming a winner from point estimates alone.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import yaml

__all__ = [
    "ReportError",
    "RunRecord",
    "ConfigRow",
    "Verdict",
    "ReportPaths",
    "iqm",
    "bootstrap_ci",
    "area_under_curve",
    "probability_of_improvement",
    "parse_override",
    "config_value",
    "config_groups",
    "run_overrides",
    "stopped_text",
    "resume_commands",
    "load_sweep",
    "aggregate",
    "compare_top",
    "render_markdown",
    "write_csv",
    "plot_curves",
    "write_report",
    "print_report",
]

NO_SUMMARY_ERROR = "no summary.json (run killed or still running)"
NOT_GROUPED = ("seed",)  # what differs between the seeds of one configuration
CONFIDENCE = 0.95


class ReportError(RuntimeError):
    """The sweep directory cannot be reported on (missing, or holds no runs)."""


# --------------------------------------------------------------------------- statistics


def iqm(values: Sequence[float] | np.ndarray, axis: int | None = None) -> Any:
    """Interquartile mean: mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``).

    Trims ``floor(0.25 * n)`` values from each end, so for n <= 3 nothing is trimmed and
    it equals the plain mean. ``axis=None`` flattens; an int reduces along that axis
    (used to vectorise the bootstrap).
    """
    x = np.asarray(values, dtype=float)
    if axis is None:
        x = x.ravel()
        axis = 0
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of an empty sequence")
    cut = int(0.25 * n)
    x = np.sort(x, axis=axis)
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


# Statistics known to accept ``axis=`` so the bootstrap can resample in one shot.
_VECTORISED_STATS: tuple[Callable[..., Any], ...] = (np.mean, np.median, iqm)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    confidence: float = CONFIDENCE,
    rng: np.random.Generator | int | None = None,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``stat`` over ``values``.

    ``rng`` may be a Generator or a seed; the default is seed 0 so reports are reproducible.
    A single value gives the degenerate interval ``(v, v)``.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci of an empty sequence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.size == 1:
        v = float(x[0])
        return v, v
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    samples = x[gen.integers(0, x.size, size=(n_boot, x.size))]
    if stat in _VECTORISED_STATS:
        boot = np.asarray(stat(samples, axis=1), dtype=float)
    else:
        boot = np.array([stat(s) for s in samples], dtype=float)
    alpha = 1.0 - confidence
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def area_under_curve(steps: Sequence[float] | np.ndarray, returns: Sequence[float] | np.ndarray) -> float:
    """Normalised trapezoid AUC: the mean return over the step range (trapz / (last - first)).

    Rewards learning fast, not only ending high. One point (or a zero-width range) gives
    the mean of the returns. Points are sorted by step first.
    """
    s = np.asarray(steps, dtype=float).ravel()
    r = np.asarray(returns, dtype=float).ravel()
    if s.shape != r.shape:
        raise ValueError(f"steps and returns differ in length: {s.size} vs {r.size}")
    if s.size == 0:
        raise ValueError("area_under_curve of an empty curve")
    order = np.argsort(s, kind="stable")
    s, r = s[order], r[order]
    span = s[-1] - s[0]
    if span <= 0:
        return float(r.mean())
    # Written out rather than np.trapz/np.trapezoid: the name changed across numpy 1.x/2.x.
    area = float(np.sum(np.diff(s) * (r[1:] + r[:-1]) / 2.0))
    return area / float(span)


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> float:
    """P(X > Y) estimated over all pairs of runs (Mann-Whitney U / (n*m)); ties count 0.5."""
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("probability_of_improvement needs at least one value on each side")
    diff = a[:, None] - b[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


# --------------------------------------------------------------------------- loading


@dataclass
class RunRecord:
    """One Hydra job of the sweep."""

    run_dir: Path
    overrides: dict[str, str]  # the configuration's overrides (no seed, no hydra.*)
    config_key: str  # canonical, sortable string of ``overrides``
    seed: int | None
    status: str  # "ok", "failed" or "stopped" (SIGTERM/Ctrl-C: checkpointed, `rlx resume` continues it)
    error: str | None  # why it failed; for a stopped run, by what and where
    final_return: float | None  # summary.json eval_return_mean
    curve: tuple[np.ndarray, np.ndarray]  # (env_steps, eval_return_mean) from EVAL lines
    sps: float | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_override(text: str) -> tuple[str, str]:
    """Split a Hydra override string into ``(key, value)``, dropping ``+``/``++`` prefixes.

    Swept values come back Hydra-escaped (``env.id=mod\\:Env``): the escapes are undone."""
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("+")
    return key, re.sub(r"\\([\\()\[\]{}:=, \t])", r"\1", value.strip()) if sep else ""


def _is_hydra_internal(key: str) -> bool:
    return key == "hydra" or key.startswith("hydra.") or key.startswith("hydra/")


def _natural(value: str) -> tuple[int, Any]:
    """Sort numbers numerically (1e-3 < 3e-4 would be wrong as strings), others as text."""
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _config_sort_key(overrides: dict[str, str]) -> tuple:
    return tuple((k, _natural(v)) for k, v in sorted(overrides.items()))


def config_key(overrides: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None (json NaN, null, strings and missing all map to None)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_metrics(path: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """EVAL points (steps, returns) and all sps values from metrics.jsonl.

    Unparseable lines are skipped: a killed run typically leaves a truncated last line.
    """
    steps: list[float] = []
    rets: list[float] = []
    sps: list[float] = []
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(rec, dict):
                    continue
                s = finite_or_none(rec.get("sps"))
                if s is not None:
                    sps.append(s)
                step, ret = finite_or_none(rec.get("env_steps")), finite_or_none(rec.get("eval_return_mean"))
                if step is not None and ret is not None:
                    steps.append(step)
                    rets.append(ret)
    s_arr, r_arr = np.asarray(steps, dtype=float), np.asarray(rets, dtype=float)
    order = np.argsort(s_arr, kind="stable")
    return s_arr[order], r_arr[order], sps


def read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReportError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    return [str(o) for o in data] if isinstance(data, list) else []


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / p).exists() for p in (".hydra/overrides.yaml", "metrics.jsonl", "summary.json")
    )


def _run_dir_sort_key(path: Path) -> tuple:
    # Hydra numbers jobs 0, 1, ..., 10: sort numerically so 10 does not come before 2.
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def run_overrides(run_dir: Path) -> dict[str, str]:
    """A run's command-line overrides that make its configuration (seed and hydra.* aside)."""
    out: dict[str, str] = {}
    for text in read_overrides(run_dir):
        key, value = parse_override(text)
        if not (_is_hydra_internal(key) or key in NOT_GROUPED):
            out[key] = value
    return out


def _seed_override(run_dir: Path) -> int | None:
    for text in read_overrides(run_dir):
        key, value = parse_override(text)
        if key == "seed":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _config_node(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def config_value(config: dict, key: str) -> str:
    """A config value for grouping: ``algo`` -> algo.name, ``env`` -> env.id, ``algo.clip_eps`` -> 0.2."""
    node = _config_node(config, key)
    if isinstance(node, dict):
        for name in ("name", "id"):
            if name in node:
                return str(node[name])
        return json.dumps(node, sort_keys=True)
    if isinstance(node, str):
        return node
    return yaml.safe_dump(node, default_flow_style=True).strip().removesuffix("...").strip()


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _group_choices(run_dir: Path) -> dict[str, Any]:
    """Hydra's config group choices of a run (``algo: ppo``, ``env: cartpole``), from .hydra/hydra.yaml."""
    data = _read_yaml(run_dir / ".hydra" / "hydra.yaml")
    try:
        choices = data["hydra"]["runtime"]["choices"]
    except (TypeError, KeyError):
        return {}
    return choices if isinstance(choices, dict) else {}


def _group_value(key: str, overrides: dict[str, str], config: Any, choices: dict[str, Any]) -> str | None:
    if choices.get(key) is not None:  # a config group: the option chosen (env=pendulum), given or default
        return str(choices[key])
    try:
        node: Any = _config_node(config, key)
    except KeyError:
        node = KeyError
    if node is not KeyError and not isinstance(node, dict):  # what the run trained with: 1e-3 and 0.001 agree
        return config_value(config, key)
    if key in overrides:
        return overrides[key]
    return config_value(config, key) if node is not KeyError else None


def config_groups(run_dirs: Sequence[Path]) -> list[dict[str, str]]:
    """What tells runs apart, one dict per run: the same grouping for `rlx report` and `rlx plot`.

    The keys are every key any of the runs overrode on its command line (seed and hydra.* aside), or
    ``algo, env.id`` when none did. Each run's value of a key is what it ran with: its config group
    choice (``env``: ``cartpole``, whether given or the default), else its resolved config.yaml value,
    else its override text (run dirs without config.yaml); a key none of these has is left out. So plain
    `rlx train` runs side by side are grouped by what differs between them, with no blank cells."""
    overrides = [run_overrides(d) for d in run_dirs]
    configs = [_read_yaml(d / "config.yaml") for d in run_dirs]
    keys = sorted({k for o in overrides for k in o})
    if not keys:
        if not any(isinstance(c, dict) for c in configs):
            return [{} for _ in run_dirs]
        keys = ["algo", "env.id"]
    groups = []
    for d, o, c in zip(run_dirs, overrides, configs, strict=True):
        choices = _group_choices(d)
        values = {k: _group_value(k, o, c if isinstance(c, dict) else None, choices) for k in keys}
        groups.append({k: v for k, v in values.items() if v is not None})
    return groups


def stopped_text(summary: dict[str, Any]) -> str:
    """'stopped by SIGTERM at env step 2,048': what a stopped run's summary.json says about it."""
    steps = summary.get("env_steps")
    at = f" at env step {steps:,}" if isinstance(steps, int) and not isinstance(steps, bool) else ""
    return f"stopped by {summary.get('stopped_by') or 'a signal'}{at}"


def _load_run(run_dir: Path, overrides: dict[str, str]) -> RunRecord:
    seed = _seed_override(run_dir)
    steps, rets, sps_values = _read_metrics(run_dir / "metrics.jsonl")

    error: str | None
    status, error, final, sps = "failed", NO_SUMMARY_ERROR, None, None
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            summary = None
            error = f"unreadable summary.json: {exc}"
        if summary is not None:
            final = finite_or_none(summary.get("eval_return_mean"))
            sps = finite_or_none(summary.get("sps"))
            if summary.get("status") == "ok":
                status, error = "ok", None
                if final is None and rets.size:
                    # Older/partial summaries: the last eval point is the same quantity.
                    final = float(rets[-1])
                if final is None:
                    status, error = "failed", "finished but recorded no eval return"
            elif summary.get("status") == "stopped":  # preempted, checkpointed: not a failure
                status, error = "stopped", stopped_text(summary)
            else:
                error = str(summary.get("error") or f"status={summary.get('status')!r}")
    if sps is None and sps_values:
        sps = float(np.mean(sps_values))

    return RunRecord(
        run_dir=run_dir,
        overrides=overrides,
        config_key=config_key(overrides),
        seed=seed,
        status=status,
        error=error,
        final_return=final,
        curve=(steps, rets),
        sps=sps,
    )


def load_sweep(sweep_dir: str | Path) -> list[RunRecord]:
    """Read every job of a multirun directory (a single-run directory also works).

    Raises ReportError when the directory is missing or holds no runs.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ReportError(f"sweep directory not found: {root}")
    run_dirs = sorted((p for p in root.iterdir() if _is_run_dir(p)), key=_run_dir_sort_key)
    if not run_dirs and _is_run_dir(root):
        run_dirs = [root]  # pointed at one job of the sweep, or a single `rlx train` run
    if not run_dirs:
        raise ReportError(f"no runs found in {root} (expected job dirs like 0/, 1/ with summary.json)")
    return [_load_run(d, g) for d, g in zip(run_dirs, config_groups(run_dirs), strict=True)]


# --------------------------------------------------------------------------- aggregation


@dataclass
class ConfigRow:
    """One configuration, aggregated over its seeds (statistics over ok runs only)."""

    config: dict[str, str]
    n_seeds: int  # ok runs that contribute to the statistics
    n_failed: int  # failed or never finished (no summary.json); stopped runs are not failed
    errors: list[str]  # "<job dir>: <error>" per failed run
    mean: float
    iqm: float
    ci_low: float  # 95% percentile-bootstrap CI of the IQM
    ci_high: float
    auc_mean: float
    sps_mean: float
    is_best: bool = False
    config_key: str = ""
    finals: list[float] = field(default_factory=list)  # per-seed final eval returns
    seeds: list[int | None] = field(default_factory=list)
    n_stopped: int = 0  # stopped by SIGTERM/Ctrl-C with a checkpoint: `rlx resume` continues them
    stopped: list[str] = field(default_factory=list)  # "<job dir>: stopped by SIGTERM at env step N" per stopped run

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.config.items())) or "(defaults)"

    @property
    def status(self) -> str:
        if self.n_seeds == 0:
            return "stopped" if self.n_stopped and not self.n_failed else "failed"
        return "partial" if self.n_failed or self.n_stopped else "ok"


@dataclass
class Verdict:
    """How sure we are that the best configuration beats the runner-up."""

    best: ConfigRow | None
    runner_up: ConfigRow | None
    p_improvement: float | None  # P(best run > runner-up run) over seed pairs
    separable: bool | None  # True: 95% CIs do not overlap; None: cannot tell
    text: str


def aggregate(runs: Sequence[RunRecord]) -> list[ConfigRow]:
    """Group runs by configuration, compute per-config statistics, and flag the best.

    Best = highest IQM of final eval return among configs with at least one ok run,
    tie-broken by mean, then by AUC (then by config order).
    """
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.config_key, []).append(run)

    rows: list[ConfigRow] = []
    for key in sorted(groups, key=lambda k: _config_sort_key(groups[k][0].overrides)):
        members = groups[key]
        # load_sweep guarantees ok runs have a final return; the check guards hand-built records.
        ok = [r for r in members if r.ok and r.final_return is not None]
        stopped = [r for r in members if r.status == "stopped"]
        failed = [r for r in members if not (r.ok and r.final_return is not None) and r.status != "stopped"]
        finals = np.array([r.final_return for r in ok], dtype=float)
        nan = float("nan")
        if finals.size:
            mean, center = float(finals.mean()), float(iqm(finals))
            lo, hi = bootstrap_ci(finals, stat=iqm)
        else:
            mean = center = lo = hi = nan
        aucs = [area_under_curve(*r.curve) for r in ok if r.curve[0].size]
        sps = [r.sps for r in ok if r.sps is not None]
        rows.append(
            ConfigRow(
                config=dict(members[0].overrides),
                n_seeds=len(ok),
                n_failed=len(failed),
                errors=[f"{r.run_dir.name}: {r.error or 'failed'}" for r in failed],
                mean=mean,
                iqm=center,
                ci_low=lo,
                ci_high=hi,
                auc_mean=float(np.mean(aucs)) if aucs else nan,
                sps_mean=float(np.mean(sps)) if sps else nan,
                config_key=key,
                finals=finals.tolist(),
                seeds=[r.seed for r in ok],
                n_stopped=len(stopped),
                stopped=[f"{r.run_dir.name}: {r.error or 'stopped'}" for r in stopped],
            )
        )

    ranked = _ranked(rows)
    if ranked:
        ranked[0].is_best = True
    return rows


def _ranked(rows: Sequence[ConfigRow]) -> list[ConfigRow]:
    """Configs with ok runs, best first (IQM, then mean, then AUC; stable on config order).

    AUC breaks ties at a return ceiling (CartPole's 500): the config that got there faster ranks first."""
    candidates = [r for r in rows if r.n_seeds > 0]
    def auc(r: ConfigRow) -> float:
        return r.auc_mean if math.isfinite(r.auc_mean) else -math.inf

    return sorted(candidates, key=lambda r: (-r.iqm, -r.mean, -auc(r)))


def fmt_number(x: float | None) -> str:
    """Compact number for humans: 487.1, 12.35, 0.0123, 12,345."""
    if x is None or not math.isfinite(x):
        return "—"
    ax = abs(x)
    if ax >= 10_000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _describe(row: ConfigRow, keys: Sequence[str] = ()) -> str:
    seeds = f"{row.n_seeds} seed{'s' if row.n_seeds != 1 else ''}"
    label = _short_label(row, keys) if keys else row.label
    return f"{label} (IQM {fmt_number(row.iqm)}, 95% CI [{fmt_number(row.ci_low)}, {fmt_number(row.ci_high)}], {seeds})"


def compare_top(rows: Sequence[ConfigRow]) -> Verdict:
    """Best vs runner-up: CI overlap and probability of improvement, as one sentence."""
    ranked = _ranked(rows)
    if not ranked:
        return Verdict(None, None, None, None, "No configuration finished successfully; see failed runs below.")
    best = ranked[0]
    keys = _varying_keys(rows)  # name configs by what differs between them
    if len(ranked) == 1:
        return Verdict(
            best, None, None, None,
            f"Best: {_describe(best, keys)}; no runner-up to compare against (only one configuration finished).",
        )
    runner = ranked[1]
    p = probability_of_improvement(best.finals, runner.finals)
    if min(best.n_seeds, runner.n_seeds) < 2:
        # A 1-seed "CI" is a point, so non-overlap would mean nothing.
        separable, how = None, "cannot tell: need at least 2 seeds per configuration for a CI"
    elif max(best.ci_low, runner.ci_low) <= min(best.ci_high, runner.ci_high):
        separable, how = False, "not separable at 95%: CIs overlap"
    else:
        separable, how = True, "clear winner: 95% CIs do not overlap"
    if (best.iqm, best.mean) == (runner.iqm, runner.mean):
        how += "; tied on final return, ranked by AUC (faster learning)"
    text = f"Best: {_describe(best, keys)}; runner-up: {_describe(runner, keys)}; P(best > runner-up) = {p:.2f} — {how}."
    return Verdict(best, runner, p, separable, text)


# --------------------------------------------------------------------------- outputs


class ReportPaths(NamedTuple):
    csv: Path
    markdown: Path
    png: Path


def _swept_keys(rows: Sequence[ConfigRow]) -> list[str]:
    return sorted({k for r in rows for k in r.config})


def _varying_keys(rows: Sequence[ConfigRow]) -> list[str]:
    """Keys whose value differs between configs: what the legend needs to tell lines apart."""
    keys = _swept_keys(rows)
    varying = [k for k in keys if len({r.config.get(k) for r in rows}) > 1]
    return varying or keys


def _fixed_text(rows: Sequence[ConfigRow]) -> str:
    """Overrides every configuration shares (left out of the table and labels: they tell nothing apart)."""
    varying = set(_varying_keys(rows))
    fixed = [k for k in _swept_keys(rows) if k not in varying]
    return ", ".join(f"{k}={rows[0].config.get(k)}" for k in fixed) if rows else ""


def _short_label(row: ConfigRow, keys: Sequence[str]) -> str:
    parts = [f"{k}={row.config[k]}" for k in keys if k in row.config]
    return ", ".join(parts) or row.label


def _csv_num(x: float) -> str:
    return "" if not math.isfinite(x) else repr(round(float(x), 6))


def write_csv(rows: Sequence[ConfigRow], path: str | Path) -> Path:
    """One row per configuration; swept keys first, blanks for missing numbers."""
    path = Path(path)
    keys = _swept_keys(rows)
    header = [*keys, "status", "n_seeds", "n_failed", "n_stopped", "mean", "iqm", "ci_low", "ci_high",
              "auc", "sps", "best", "errors"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([
                *(r.config.get(k, "") for k in keys),
                r.status, r.n_seeds, r.n_failed, r.n_stopped,
                _csv_num(r.mean), _csv_num(r.iqm), _csv_num(r.ci_low), _csv_num(r.ci_high),
                _csv_num(r.auc_mean), _csv_num(r.sps_mean),
                "True" if r.is_best else "False",
                " | ".join(r.errors),
            ])
    return path


def _md_cell(text: str, limit: int = 80) -> str:
    """First line of ``text``, truncated and with pipes escaped so the table stays a table."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return line.replace("|", "\\|")


def resume_commands(runs: Sequence[RunRecord]) -> list[str]:
    """One `rlx resume RUN_DIR` per stopped run: each continues from its checkpoints/last.pt."""
    return [f"rlx resume {r.run_dir}" for r in runs if r.status == "stopped"]


def _first_note(row: ConfigRow) -> str:
    """The error cell: the first failed run's error, else what stopped the first stopped run."""
    notes = row.errors or row.stopped
    return notes[0].split(": ", 1)[-1].strip().splitlines()[0] if notes and notes[0].strip() else ""


def render_markdown(rows: Sequence[ConfigRow], runs: Sequence[RunRecord], title: str) -> str:
    """The report.md text: verdict sentence, table (best row bold), failed runs with errors, stopped runs
    with the commands that continue them."""
    verdict = compare_top(rows)
    keys = _varying_keys(rows)
    any_stopped = any(r.n_stopped for r in rows)
    lines = [f"# Sweep report: {title}", "", verdict.text, ""]
    if _fixed_text(rows):
        lines += [f"Same in every run: {_md_cell(_fixed_text(rows), 1000)}", ""]
    header = [*(keys or ["config"]), "status", "seeds", "failed", *(["stopped"] if any_stopped else []),
              "mean", "IQM", "95% CI (IQM)", "AUC", "SPS", "error"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        ci = "—" if r.n_seeds == 0 else f"[{fmt_number(r.ci_low)}, {fmt_number(r.ci_high)}]"
        cells = [
            *([_md_cell(r.config.get(k, "")) for k in keys] if keys else [r.label]),
            r.status + (" (best)" if r.is_best else ""),
            str(r.n_seeds), str(r.n_failed), *([str(r.n_stopped)] if any_stopped else []),
            fmt_number(r.mean), fmt_number(r.iqm), ci,
            fmt_number(r.auc_mean), fmt_number(r.sps_mean), _md_cell(_first_note(r), 60),
        ]
        if r.is_best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Statistics use final eval returns of ok runs; IQM = interquartile mean over seeds, "
                 "CI = 95% percentile bootstrap; AUC = mean eval return over training (normalised).")

    def listed(rec: RunRecord) -> str:
        desc = ", ".join(f"{k}={v}" for k, v in sorted(rec.overrides.items())) or "(defaults)"
        seed = f", seed={rec.seed}" if rec.seed is not None else ""
        return f"- `{rec.run_dir.name}/` ({desc}{seed}): {' '.join((rec.error or rec.status).split())}"  # one line per run

    failed = [r for r in runs if not r.ok and r.status != "stopped"]
    if failed:
        lines += ["", "## Failed runs", ""] + [listed(rec) for rec in failed]
    stopped = [r for r in runs if r.status == "stopped"]
    if stopped:
        lines += ["", "## Stopped runs", "",
                  "Stopped by SIGTERM or Ctrl-C with a checkpoint, not failed: not in the statistics until they "
                  "finish. Continue each, then `rlx report` again:", ""]
        lines += [listed(rec) for rec in stopped] + ["", "```bash", *resume_commands(stopped), "```"]
    return "\n".join(lines) + "\n"


def mean_curve(
    runs: Sequence[RunRecord], max_points: int = 200, stat: Callable[..., Any] = np.mean
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean (or ``stat``: iqm) eval curve over seeds on a common grid, with a 95% bootstrap band of it.

    Each run is interpolated only inside its own step range (no extrapolation), so a
    grid point averages the seeds that actually reached it. Where one seed covers a
    point the band is that seed's value (min == max).
    """
    curves = [r.curve for r in runs if r.curve[0].size]
    if not curves:
        return None
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    if grid.size > max_points:
        grid = np.linspace(grid[0], grid[-1], max_points)
    table = np.full((len(curves), grid.size), np.nan)
    for i, (s, v) in enumerate(curves):
        inside = (grid >= s[0]) & (grid <= s[-1])
        table[i, inside] = np.interp(grid[inside], s, v)
    mean = np.full(grid.size, np.nan)
    lo = np.full(grid.size, np.nan)
    hi = np.full(grid.size, np.nan)
    rng = np.random.default_rng(0)
    for j in range(grid.size):
        col = table[:, j][~np.isnan(table[:, j])]
        if col.size == 0:
            continue
        mean[j] = float(stat(col))
        lo[j], hi[j] = bootstrap_ci(col, stat=stat, n_boot=1000, rng=rng) if col.size > 1 else (col.min(), col.max())
    keep = ~np.isnan(mean)
    return grid[keep], mean[keep], lo[keep], hi[keep]


def plot_curves(rows: Sequence[ConfigRow], runs: Sequence[RunRecord], path: str | Path, title: str) -> Path:
    """Eval return vs env steps, one line per configuration, best drawn thicker."""
    # Figure + Agg canvas directly (no pyplot): no global backend switch, no GUI, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    path = Path(path)
    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    keys = _varying_keys(rows)
    by_key: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.ok:
            by_key.setdefault(run.config_key, []).append(run)

    drawn = 0
    for i, row in enumerate(rows):
        curve = mean_curve(by_key.get(row.config_key, []))
        if curve is None:
            continue
        x, m, lo, hi = curve
        color = f"C{i % 10}"
        label = f"{_short_label(row, keys)} (n={row.n_seeds})" + ("  ★ best" if row.is_best else "")
        lw = 3.0 if row.is_best else 1.4
        ax.plot(x, m, color=color, lw=lw, label=label, marker="o" if x.size == 1 else None,
                zorder=3 if row.is_best else 2)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
        drawn += 1

    if drawn == 0:
        ax.text(0.5, 0.5, "no eval data from successful runs", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (mean over seeds, 95% CI band)")
    ax.set_title(f"{title}: eval return vs env steps")
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k / 1M reads better than 1e5 offsets
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> ReportPaths:
    """Load, aggregate and write report.csv / report.md / report.png (into the sweep dir by default)."""
    root = Path(sweep_dir)
    runs = load_sweep(root)
    rows = aggregate(runs)
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    title = root.resolve().name
    csv_path = write_csv(rows, out / "report.csv")
    md_path = out / "report.md"
    from rlx.analysis.lineage import lineage_markdown, lineages

    md_path.write_text(render_markdown(rows, runs, title) + lineage_markdown(lineages(root)), encoding="utf-8")
    png_path = plot_curves(rows, runs, out / "report.png", title)
    return ReportPaths(csv=csv_path, markdown=md_path, png=png_path)


def print_report(rows: Sequence[ConfigRow], console: Any | None = None) -> None:
    """Print the verdict and a table of ``rows`` (best row bold green, failed red, stopped yellow) that fits
    the console: no cell wraps, long ones end in "…", and errors that do not fit go below the table, one
    line each (rlx.analysis.tables)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.text import Text

    from rlx.analysis.tables import Col, fit_table

    console = console or Console()
    keys = _varying_keys(rows)
    any_failed, any_stopped = any(r.n_failed for r in rows), any(r.n_stopped for r in rows)
    cols = [*(Col(k, "left", "key") for k in keys or ["config"]), Col("status", "left"), Col("seeds"),
            *([Col("failed")] if any_failed else []), *([Col("stopped")] if any_stopped else []),
            Col("mean", drop=2), Col("IQM"), Col("95% CI"), Col("AUC", drop=3), Col("SPS", drop=1),
            Col("error", "left", "text")]
    table_rows = []
    for r in rows:
        ci = "—" if r.n_seeds == 0 else f"[{fmt_number(r.ci_low)}, {fmt_number(r.ci_high)}]"
        table_rows.append([
            *([r.config.get(k, "") for k in keys] if keys else [r.label]),
            r.status + (" ★" if r.is_best else ""), str(r.n_seeds),
            *([str(r.n_failed)] if any_failed else []), *([str(r.n_stopped)] if any_stopped else []),
            fmt_number(r.mean), fmt_number(r.iqm), ci, fmt_number(r.auc_mean), fmt_number(r.sps_mean), _first_note(r),
        ])
    styles = ["bold green" if r.is_best else "red" if r.status == "failed" else "yellow" if r.n_seeds == 0 else None
              for r in rows]
    console.print(escape(compare_top(rows).text))
    if _fixed_text(rows):
        console.print(escape(f"Same in every run: {_fixed_text(rows)}"))
    table, shown, legend = fit_table(cols, table_rows, console.width, "Sweep report", styles)
    console.print(table)
    for line in legend:  # too many keys for the table: its rows are numbered, spelled out here
        console.print(Text(line))
    if cols[-1] not in shown:  # no room for the error column: one line per configuration below the table
        for j, r in enumerate(rows):
            if _first_note(r):
                label = f"#{j + 1}" if legend else _short_label(r, keys)
                console.print(Text(f"{label}: {_first_note(r)}"), no_wrap=True, overflow="ellipsis")

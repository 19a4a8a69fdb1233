"""`rlx sweep`: a Hydra multirun (`rlx train --multirun ...`) plus the sweep report.

Hydra does the sweeping (BasicSweeper grids, `sweep=` presets, the Optuna sweeper) and the launching
(in-process, joblib processes, SLURM via submitit, Ray). This module only orchestrates: validate
every configuration first, pin the sweep dir so it knows where the runs land, run Hydra, and write
the report (rlx.analysis.report) when the multirun ends, however it ends.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from rlx.errors import UserError

MULTIRUN_FLAGS = {"-m", "--multirun"}
# Flags that print something instead of running: pass straight to Hydra, no report.
NO_RUN_FLAGS = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc"}
SWEEP_DIR_KEY = "hydra.sweep.dir"


def run_sweep(args: list[str], validate_fn: Callable[[list[str]], None], hydra_fn: Callable[[list[str]], None]) -> None:
    """Validate, run the multirun through ``hydra_fn``, then write and print the report.

    Exit status: Hydra's own when it fails (the report of what finished is still written); 1 when
    every run failed; 0 otherwise (failed runs are listed in the report, they do not fail the sweep).
    """
    from rlx.config.compose import CUSTOM_CONFIG_FLAGS, split_args

    overrides, flags = split_args(args)
    validate_fn(args)  # exits with status 2 on bad input, before any run starts
    if NO_RUN_FLAGS.intersection(flags):  # e.g. `rlx sweep --cfg hydra hydra/launcher=parallel`
        hydra_fn(list(args))
        return
    args = list(args) if MULTIRUN_FLAGS.intersection(flags) else ["--multirun", *args]
    if CUSTOM_CONFIG_FLAGS.intersection(flags):  # another config tree: trust its own hydra.sweep.dir
        given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == SWEEP_DIR_KEY]
        sweep_dir = Path(given[-1]) if given else None
    else:
        sweep_dir = claim_sweep_dir(overrides)
        args = [a for a in args if a.split("=", 1)[0] != SWEEP_DIR_KEY] + [f"{SWEEP_DIR_KEY}={_quote(str(sweep_dir))}"]

    code: int | str | None = 0
    try:
        hydra_fn(args)
    except SystemExit as e:  # Hydra exits 1 when the sweeper or launcher itself fails
        code = e.code
    except KeyboardInterrupt:
        code = 130
    if sweep_dir is None:
        print("rlx: custom config: write the report with `rlx report SWEEP_DIR`", file=sys.stderr)
    else:
        ok = _report_after_sweep(sweep_dir)
        if not code and not ok:
            code = 1
    if code:
        raise SystemExit(code)


def resolve_sweep_dir(overrides: list[str]) -> Path:
    """The sweep dir Hydra would use (``hydra.sweep.dir`` with its ``${now:...}`` resolved), so that this
    process, Hydra and every launcher agree on it."""
    return _sweep_dir_setting(overrides)[0]


def _sweep_dir_setting(overrides: list[str]) -> tuple[Path, bool, bool]:
    """(resolved sweep dir, whether its pattern is timestamped, overwrite=...)."""
    from hydra.core.hydra_config import HydraConfig

    from rlx.config.compose import compose_config, expand_for_validation

    cfg = compose_config(expand_for_validation(overrides)[0], return_hydra_config=True)
    pattern = str(cfg.hydra.sweep._get_node("dir")._value())
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} interpolations in the dir's pattern
    return Path(str(cfg.hydra.sweep.dir)), "${now:" in pattern, bool(cfg.overwrite)


def claim_sweep_dir(overrides: list[str]) -> Path:
    """Create this sweep's dir before Hydra runs, so that no other sweep can share it.

    A timestamped dir (the default ``multirun/${now:...}``) that another sweep started in the same second
    already took gets a ``-1``, ``-2``... suffix. A dir named explicitly (``hydra.sweep.dir=...``) that
    already holds runs is refused, unless ``overwrite=true``, which deletes those runs and reports first."""
    from rlx.rundir.lock import check_dir_path, claim_fresh, ensure_writable_dir, holds_run, unique_dir

    path, timestamped, overwrite = _sweep_dir_setting(overrides)
    check_dir_path(path, f"{SWEEP_DIR_KEY}={path}")  # a file, or a name too long: before any dir is created
    if timestamped:
        return unique_dir(path)
    runs = [p for p in path.iterdir() if p.is_dir() and holds_run(p)] if path.is_dir() else []
    if runs and not overwrite:
        raise UserError(f"hydra.sweep.dir={path} already holds {len(runs)} run(s) of another sweep; choose another dir, "
                        f"or overwrite=true to delete them first")
    for run in runs:
        claim_fresh(run, overwrite=True)
    for name in ("report.md", "report.csv", "report.png", "multirun.yaml"):
        (path / name).unlink(missing_ok=True)
    return ensure_writable_dir(path, "sweep dir")


def _quote(value: str) -> str:
    """A Hydra override value that stays one plain string (commas would make it a sweep)."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _report_after_sweep(sweep_dir: Path) -> bool:
    """Write and print the report; True when at least one run finished."""
    from rlx.analysis.report import ReportError

    try:
        rows = report_sweep(sweep_dir)
    except (UserError, ReportError) as e:
        print(f"rlx: no report: {e}", file=sys.stderr)
        return False
    return any(r.n_seeds > 0 for r in rows)


def report_sweep(sweep_dir: Path) -> list:
    """(Re)write report.md / report.csv / report.png into ``sweep_dir``, print the table, return the rows."""
    from rlx.analysis.report import ReportError, aggregate, load_sweep, print_report, resume_commands, write_report
    from rlx.rundir.lock import holds_run

    sweep_dir = Path(sweep_dir)
    if holds_run(sweep_dir):
        raise UserError(f"{sweep_dir} is one run, not a sweep dir: `rlx report` compares the runs of a sweep "
                        "(for one run: `rlx eval` it, or read its summary.json / metrics.jsonl)")
    check_not_a_study(sweep_dir)
    try:
        paths = write_report(sweep_dir)
        runs = load_sweep(sweep_dir)
        rows = aggregate(runs)
    except ReportError as e:
        raise UserError(str(e)) from None
    print_report(rows)
    failed, stopped = sum(r.n_failed for r in rows), sum(r.n_stopped for r in rows)
    total = failed + stopped + sum(r.n_seeds for r in rows)
    if failed:
        print(f"{failed} of {total} runs failed (see the error column / report.md)")
    if stopped:
        commands = resume_commands(runs)
        shown = commands if len(commands) <= 3 else [*commands[:2], f"... ({len(commands) - 2} more in report.md)"]
        print(f"{stopped} of {total} runs stopped by SIGTERM/Ctrl-C (checkpointed, not failed; not in the statistics "
              f"yet): continue {'it' if stopped == 1 else 'each'}, then `rlx report {sweep_dir}` again:")
        for line in shown:
            print(f"  {line}")
    from rlx.analysis.lineage import lineages

    for p in lineages(sweep_dir):  # a PBT sweep: rows are labelled by initial values; what won is a line of members
        tree = " <- ".join([p.winner, *(src for _, _, _, src in p.ancestry)])
        print(f"pbt: {p.rounds} rounds; winner {p.winner} (final eval {p.final_return:.1f}), weights through {tree}; "
              f"schedule in report.md; replay: {p.replay}")
    print(f"report: {paths.markdown}, {paths.csv.name}, {paths.png.name}")
    return rows


def check_not_a_study(path: Path) -> None:
    """An `rlx tune` study dir (or its trials/ dir) has its own report, tune.md: say where, instead of a
    sweep table of one-seed trials."""
    import yaml

    from rlx.app.tune import STUDY_FILE

    study = path if (path / STUDY_FILE).is_file() else path.parent if (path.parent / STUDY_FILE).is_file() else None
    if study is None or path == study / "confirm":  # confirm/ is a sweep (top trials x fresh seeds): reported
        return
    tune_md = study / "tune.md"
    where = (f"its report is {tune_md} (trials, verdict, winner -> best.yaml)" if tune_md.is_file()
             else f"its report, {tune_md}, is written when the study ends (`rlx tune --resume {study}` continues it)")
    confirm = f"; its confirmation runs: rlx report {study / 'confirm'}" if (study / "confirm").is_dir() else ""
    try:  # a searched key to group the trials' curves by
        by = str(yaml.safe_load((study / STUDY_FILE).read_text())["space"][0]["key"])
    except (OSError, yaml.YAMLError, TypeError, KeyError, IndexError):
        by = "KEY"
    raise UserError(f"{path} is {'an rlx tune study' if path == study else 'the trials of an rlx tune study'}, "
                    f"not a sweep dir: {where}{confirm}; its trials' curves: rlx plot {study / 'trials'} --by {by}")

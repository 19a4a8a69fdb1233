"""The `rlx` command: parse, compose, call. Nothing algorithmic lives here."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from rlx.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="rlx: train, sweep and evaluate actor-critic RL agents from YAML configs (Hydra).")

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _version(value: bool) -> None:
    if value:
        from rlx import __version__

        typer.echo(f"rlx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print rlx's version and exit")) -> None:
    """rlx: train, sweep and evaluate actor-critic RL agents from YAML configs (Hydra)."""


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2, no traceback."""
    typer.echo(f"rlx: error: {message}", err=True)
    raise typer.Exit(2)


def _run_hydra(args: list[str]) -> None:
    import hydra

    @hydra.main(version_base="1.3", config_path="pkg://rlx.conf", config_name="config")
    def _main(cfg):  # pragma: no cover - runs inside Hydra
        from rlx.app.entry import hydra_job

        return hydra_job(cfg)

    sys.argv = ["rlx", *args]
    _main()


@app.command(context_settings=PASSTHROUGH)
def train(ctx: typer.Context) -> None:
    """Train an agent. Arguments are Hydra overrides and flags, e.g.

    rlx train algo=ppo env=pendulum algo.clip_eps=0.1 seed=3\n
    rlx train -m algo.clip_eps=0.1,0.2 seed=0,1,2   (multirun)\n
    rlx train --cfg job                              (print the composed config)
    """
    args = list(ctx.args)
    _validate_or_fail(args, plain_run=True)
    _run_hydra(_without_unfitting_preset(args))


def _without_unfitting_preset(args: list[str]) -> list[str]:
    """One run with ``env.id`` off its group's tuned preset: the preset is dropped before Hydra composes,
    so what ``--cfg job`` prints is what trains (a multirun decides per job, in rlx.app.entry.hydra_job)."""
    from rlx.config.compose import CUSTOM_CONFIG_FLAGS, compose_config, split_args, tuned_preset_conflict

    overrides, flags = split_args(args)
    if ({"-m", "--multirun", "--help", "-h", "--hydra-help"} | CUSTOM_CONFIG_FLAGS).intersection(flags) \
            or any(o.lstrip("+~").startswith("tuned") for o in overrides):
        return args
    try:
        cfg = compose_config(overrides, return_hydra_config=True)
    except UserError:
        return args  # reported by the run itself
    note = tuned_preset_conflict(cfg.hydra.runtime.choices, str(cfg.env.id))
    if not note:
        return args
    print(f"rlx: note: {note}", file=sys.stderr)
    return ["~tuned", *args]


def _validate_or_fail(args: list[str], plain_run: bool = False) -> None:
    """Validate every configuration the arguments describe before any run starts (and, for one run,
    that its run dir is free)."""
    from rlx.app.validate import validate
    from rlx.config.compose import CUSTOM_CONFIG_FLAGS, split_args

    overrides, flags = split_args(args)
    if CUSTOM_CONFIG_FLAGS.intersection(flags) or {"--help", "-h", "--hydra-help"}.intersection(flags):
        return  # user config dirs/names: validated inside the run instead
    notes: list[str] = []  # warnings: printed once every check passed (an error stays the only line)
    try:
        validate(overrides, notes)
        if plain_run and not flags:  # one run (no --multirun, no --cfg ...): its run dir must be free
            from rlx.app.entry import check_run_dir

            check_run_dir(overrides)
        elif plain_run and {"-m", "--multirun"}.intersection(flags):  # `rlx sweep` claims its own sweep dir
            from rlx.app.entry import check_sweep_dir

            check_sweep_dir(overrides)
    except UserError as e:
        fail(str(e))
    from rlx.app.validate import print_notes

    print_notes(notes)


@app.command(context_settings=PASSTHROUGH)
def sweep(ctx: typer.Context) -> None:
    """Run a Hydra multirun (`rlx train --multirun ...`) and write the sweep report when it ends, e.g.

    rlx sweep algo=ppo algo.clip_eps=0.1,0.2,0.3 algo.gae_lambda=0.9,0.95 seed=0,1,2\n
    rlx sweep sweep=ppo_clip_eps hydra/launcher=joblib hydra.launcher.n_jobs=2
    """
    from rlx.app.sweep import run_sweep

    try:
        run_sweep(list(ctx.args), validate_fn=_validate_or_fail, hydra_fn=_run_hydra)
    except UserError as e:
        fail(str(e))


@app.command(context_settings=PASSTHROUGH)
def pbt(ctx: typer.Context) -> None:
    """Population-based training: the grid is the initial population, trained as ONE process whose bottom
    members copy the top ones every pbt.interval env steps and perturb the copied values (issue 25), e.g.

    rlx pbt algo=ppo algo.lr=1e-5,1e-4,1e-3,1e-2 seed=0,1 pbt.interval=20000

    Same as `rlx sweep ... hydra/launcher=population pbt.enabled=true`; lineage in SWEEP_DIR/pbt.jsonl.
    """
    from rlx.app.sweep import run_sweep

    try:
        run_sweep(["hydra/launcher=population", "pbt.enabled=true", *ctx.args], validate_fn=_validate_or_fail,
                  hydra_fn=_run_hydra)
    except UserError as e:
        fail(str(e))


@app.command()
def report(sweep_dir: Path = typer.Argument(..., help="a multirun/sweep directory")) -> None:
    """(Re)write report.md, report.csv and report.png for a sweep directory and print the table."""
    from rlx.app.sweep import report_sweep

    try:
        report_sweep(sweep_dir)
    except UserError as e:
        fail(str(e))


@app.command()
def plot(
    paths: list[Path] = typer.Argument(..., help="run dirs, sweep dirs or tune study dirs (searched for runs)"),
    by: Optional[str] = typer.Option(None, "--by", help="group by config keys, e.g. algo or algo,env.id or algo.clip_eps "
                                     "(default: the sweep's overrides, else algo,env.id)"),
    metric: str = typer.Option("eval_return_mean", "--metric", help="any metrics.jsonl key"),
    x: str = typer.Option("env_steps", "--x", help="env_steps | wall_s"),
    out: Path = typer.Option(Path("plot.png"), "--out", help="FILE.png | .svg | .pdf"),
    table: bool = typer.Option(False, "--table", help="print final value, IQM, 95% CI and AUC per group"),
    stat: str = typer.Option("mean", "--stat", help="mean | iqm: the curve drawn per group"),
) -> None:
    """Learning curves grouped by config keys, with a 95% bootstrap band over the runs of each group."""
    from rlx.analysis.plot import run_plot

    try:
        path, _ = run_plot(paths, by, metric, x, out, table, stat)
    except UserError as e:
        fail(str(e))
    typer.echo(f"plot: {path}")


@app.command(context_settings=PASSTHROUGH)
def tune(ctx: typer.Context,
         resume_dir: Optional[Path] = typer.Option(None, "--resume", help="continue the study in this dir")) -> None:
    """Hyperparameter search with Optuna; trials are rlx runs, pruned on their periodic evals, e.g.

    rlx tune algo=ppo 'algo.lr=tag(log,interval(1e-4,3e-3))' 'algo.clip_eps=interval(0.1,0.3)' tune.trials=40\n
    rlx tune --resume multirun/2026-12-01_10-00-00_tune tune.trials=60
    """
    from rlx.app.tune import run_tune

    try:
        code = run_tune(list(ctx.args), resume_dir)
    except UserError as e:
        fail(str(e))
    raise typer.Exit(code)


@app.command("eval")
def eval_(
    path: Path = typer.Argument(..., help="checkpoint file, or a run dir (uses its best checkpoint)"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", min=1, help="episodes (default: the run's eval.episodes)"),
    deterministic: bool = typer.Option(True, "--deterministic/--stochastic", help="greedy/mean action or sampled"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    video: Optional[Path] = typer.Option(None, "--video", help="record the episodes as mp4 into this dir"),
    device: str = typer.Option("auto", "--device", help="auto (the default: CUDA when available, else the CPU) | cpu | cuda | cuda:N"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="eval env seed (default: the run's eval seed)"),
) -> None:
    """Evaluate a saved checkpoint; needs nothing but the checkpoint."""
    from rlx.train.run import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(path, episodes, deterministic, video, device, seed)
    except UserError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        mode = "deterministic" if deterministic else "stochastic"
        typer.echo(f"{result['algo']} on {result['env_id']} ({result['env_steps']:,} steps): "
                   f"return {result['return_mean']:.2f} ± {result['return_std']:.2f} over {result['episodes']} {mode} episodes")
        if video:
            typer.echo(f"videos: {video}")


@app.command(context_settings=PASSTHROUGH)
def resume(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="the run dir to continue")) -> None:
    """Continue a run from its last checkpoint, e.g. `rlx resume RUN_DIR total_steps=200000`.

    Only keys that don't change what the run learns may be overridden (total_steps, logging, eval,
    checkpoint cadence, device). A population member's dir resumes that member alone (a member is its
    plain run); a sweep dir (any launcher) resumes every unfinished run, each population's members together.
    """
    from rlx.errors import RunFault
    from rlx.train.driver import resume_at
    from rlx.train.run import exit_status

    try:
        summaries = resume_at(run_dir, list(ctx.args))
    except UserError as e:
        fail(str(e))
    except RunFault as e:
        typer.echo(f"rlx: error: {e}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(max(exit_status(s) for s in summaries))  # 130/143 when stopped by Ctrl-C/SIGTERM, as `rlx train`


config_app = typer.Typer(help="Inspect run configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("diff")
def config_diff(run_a: Path, run_b: Path) -> None:
    """Show which resolved config values differ between two runs."""
    from rich.console import Console
    from rich.table import Table

    from rlx.app.config_diff import config_diff as diff

    try:
        rows = diff(run_a, run_b)
    except UserError as e:
        fail(str(e))
    if not rows:
        typer.echo("configs are identical")
        return
    table = Table("key", str(run_a), str(run_b))
    for key, a, b in rows:
        table.add_row(key, repr(a), repr(b))
    Console().print(table)


@app.command("list")
def list_() -> None:
    """Show the available algorithms, envs and networks (and yours, from ./conf or $RLX_CONFIG_DIR)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rlx.algos.registry import ALGOS, DESCRIPTIONS
    from rlx.config.compose import (
        compose_config,
        group_file,
        shipped_group_options,
        user_config_dir,
        user_config_label,
        user_group_options,
    )

    groups = ("algo", "env", "network")
    try:
        user_dir = user_config_dir()
        user = {group: user_group_options(group) for group in groups}
    except UserError as e:
        fail(str(e))
    shipped = {group: shipped_group_options(group) for group in groups}
    label = user_config_label()

    def source(group: str, name: str) -> list[str]:  # the "from" cell, in a column shown only with a user dir
        if user_dir is None:
            return []
        if name not in user[group]:
            return ["rlx"]
        return [f"{label} (over rlx's)" if name in shipped[group] else label]

    def description(group: str, name: str) -> str:  # a config file's first comment line (yours when you have one)
        text = group_file(group, name).read_text().splitlines()
        return next((line.lstrip("# ").strip() for line in text if line.startswith("#")), "")

    console = Console()
    table = Table(title="algorithms (algo=NAME)")
    for col in ("name", "actions", "description", *(["from"] if user_dir else [])):
        table.add_column(col)
    for name, cls in ALGOS.items():
        desc = description("algo", name) if name in user["algo"] else DESCRIPTIONS.get(name, "")
        table.add_row(name, ", ".join(cls.action_spaces), escape(desc), *source("algo", name))
    for name in user["algo"]:  # the user's own algo configs, and the algorithm each one configures
        if name in ALGOS:
            continue
        try:
            algo = str(compose_config([f"algo={name}"]).algo.name)
        except UserError as e:
            table.add_row(name, "?", escape(f"does not compose: {e}"), *source("algo", name))
            continue
        actions = ", ".join(ALGOS[algo].action_spaces) if algo in ALGOS else "?"
        desc = description("algo", name)
        table.add_row(name, actions, escape(f"{desc} (algo {algo})" if desc else f"algo {algo}"), *source("algo", name))
    console.print(table)
    for group in ("env", "network"):
        t = Table(title=f"{group} configs ({group}=NAME)")
        for col in ("name", "description", *(["from"] if user_dir else [])):
            t.add_column(col)
        for opt in sorted(set(shipped[group]) | set(user[group])):
            # descriptions say pip install 'rlx[mujoco]': not rich markup
            t.add_row(opt, escape(description(group, opt)), *source(group, opt))
        console.print(t)


demo_app = typer.Typer(help="Runnable experiments from the notes.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("advantage")
def demo_advantage(
    seed: int = typer.Option(0, "--seed", min=0),
    kicks: int = typer.Option(4000, "--kicks", min=10, help="uniform-policy kicks the critics are fitted on"),
    updates: int = typer.Option(150, "--updates", min=1, help="A2C updates (16 kicks each)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run dir (default outputs/demo-advantage/<time>)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (V, Q_left, Q_right, A_left, A_right, ...)"),
) -> None:
    """The penalty shootout: V, Q and A of the uniform kicker by rlx's critics, then A2C learning to shoot left."""
    from rlx.demos.commands import advantage

    try:
        typer.echo(advantage(out, seed, kicks, updates, as_json))
    except UserError as e:
        fail(str(e))


@demo_app.command("multimodal")
def demo_multimodal(
    seed: int = typer.Option(0, "--seed", min=0),
    steps: int = typer.Option(1500, "--steps", min=300, help="env steps per algorithm"),
    alpha: float = typer.Option(0.2, "--alpha", help="SAC / discrete SAC temperature and the Boltzmann target's"),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="evaluation episodes per algorithm"),
    out: Optional[Path] = typer.Option(None, "--out", help="run dir (default outputs/demo-multimodal/<time>)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (each algorithm's passage_share, ...)"),
) -> None:
    """The two passages: DDPG, SAC and discrete SAC on a bimodal Q(s, .), their policies vs exp(Q/alpha)/Z."""
    from rlx.demos.commands import multimodal

    try:
        typer.echo(multimodal(out, seed, steps, alpha, episodes, as_json))
    except UserError as e:
        fail(str(e))


def _click_exceptions(name: str) -> tuple[type[Any], ...]:
    """Click's exception class ``name``, from the click that typer uses (recent typers vendor their own).
    Typed Any: which module defines it is only known at run time (``e.format_message()`` is click's)."""
    import importlib

    found: list[type[Any]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # usage errors come back here, to be reported as one line
    except _click_exceptions("UsageError") as e:  # bad option value, unknown option or command, missing argument
        ctx = getattr(e, "ctx", None)
        typer.echo(f"rlx: error: {e.format_message()}" + (f" (see `{ctx.command_path} --help`)" if ctx else ""), err=True)
        sys.exit(2)
    except _click_exceptions("Abort"):
        sys.exit(130)
    except UserError as e:  # anything that slipped past a command's own handling
        typer.echo(f"rlx: error: {e}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

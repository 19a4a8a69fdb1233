"""The one driver (issue 22): a job is K >= 1 members trained as one process; ``rlx train`` is a job of one.

Every way of training goes through here: ``rlx train`` (:func:`train`), the population launcher and the
Ray launchers (:func:`train_job`), ``rlx tune``'s trials, and ``rlx resume`` (:func:`resume`) of a run dir,
a population member's dir or a sweep dir of any launcher. Member k of a job is its plain run: its own run
dir (config.yaml, metrics.jsonl, checkpoints/, summary.json: a plain run's files, plus ``population.json``,
a pointer to its fellow members, when K > 1), its env seeds, and its checkpoints with its own slice of
the loop's state (rlx/train/loop_state.py), so it can be resumed with its population or alone.

Data flow: configs -> :func:`rlx.train.run.parse_settings` -> the algorithm (K members stacked where the
algorithm has a member dimension) + one member-major vector env + one
:class:`~rlx.train.population.PopulationSession` over K :class:`~rlx.train.session.Session` s -> the
algorithm's loop -> one summary per member.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from rlx.config.typed import as_dict, whole_ints_in
from rlx.envs.make import check_user_env, make_vec_env
from rlx.errors import RunFault, UserError
from rlx.members import member_state, stack_states
from rlx.rundir.files import write_json_atomic
from rlx.rundir.lock import RunDirLock, claim_fresh
from rlx.rundir.populations import population_dirs, update_population_status
from rlx.train.evaluation import Evaluator
from rlx.train.faults import fault_text, is_fault, record_fault
from rlx.train.loop_state import batched_snapshot
from rlx.train.pbt import PopulationBasedTraining, ScheduleReplay, check_pbt, check_pbt_settings, read_schedule
from rlx.train.population import MemberEvaluations, MemberView, PopulationSession, check_population
from rlx.train.run import (
    LOOPS,
    Settings,
    build_algorithm,
    check_population_spaces,
    eval_seed,
    parse_settings,
    prepare_process,
    resumed_config,
    run_session,
    stop_on_signals,
    truncate_metrics,
    write_summary,
)
from rlx.train.session import EvalHook, NonFiniteError

# what the end of a stopped job tells the user to run next (None: `rlx resume DIR`); rlx tune sets its own
CONTINUE_HINT: contextvars.ContextVar[str | None] = contextvars.ContextVar("rlx_continue_hint", default=None)
MEMBER_POINTER = "population.json"  # in a member's run dir: its fellow members (relative paths)
FINISHED = ("ok", "pruned")
# loops whose workers are processes or Ray actors: their session is the one member's own (A3C: K=1)
SINGLE_SESSION_LOOPS = ("async", "ray")


def train(cfg: DictConfig | Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train per ``cfg`` into a new run in ``run_dir`` (a job of one); returns (and writes) the summary.
    A run that failed raises RunFault (its summary.json says failed; the message names the last good
    checkpoint)."""
    return train_job([cfg], [run_dir])[0]


def train_job(cfgs: Sequence[DictConfig | Mapping[str, Any]], run_dirs: Sequence[str | Path],
              eval_hooks: Sequence[EvalHook | None] | None = None) -> list[dict[str, Any]]:
    """Train ``cfgs`` as one job, member k into ``run_dirs[k]``. K > 1: one population (equal
    :func:`~rlx.train.population.population_group_key`); returns every member's summary (a failed member:
    status "failed", the others go on). Every dir is locked for the whole job; a dir that already holds a
    run is refused unless ``overwrite=true``. Bad input: UserError before anything is written.
    ``eval_hooks[k]``: member k's own periodic-eval hook (rlx tune's trial k), besides :data:`EVAL_HOOKS`;
    a hook that returns a reason ("pruned") stops that member alone, the others go on."""
    if not cfgs or len(cfgs) != len(run_dirs):
        raise ValueError(f"train_job: {len(cfgs)} configs for {len(run_dirs)} run dirs")
    configs = []
    for c in cfgs:
        node = OmegaConf.create(as_dict(c, resolve=True))
        node.pop("hydra", None)
        whole_ints_in(node, parse_settings)  # total_steps=1e4: 10000 in config.yaml and every process
        configs.append(as_dict(node))
    settings = [parse_settings(c) for c in configs]
    if len(configs) > 1:
        check_population(configs)
        check_population_spaces(settings[0], len(configs))
    check_pbt_settings(settings[0], configs)
    if settings[0].run.init_from:
        _init_state(settings[0])  # a missing or foreign checkpoint: one line before any run dir is written
    dirs = [Path(d) for d in run_dirs]
    with contextlib.ExitStack() as locks:
        for d, s in zip(dirs, settings, strict=True):
            locks.enter_context(RunDirLock(d))
            claim_fresh(d, s.run.overwrite)
        return _run_job(configs, settings, dirs, None, eval_hooks)


def _run_job(configs: list[dict], settings: list[Settings], dirs: list[Path],
             resumes: list[dict] | None, eval_hooks: Sequence[EvalHook | None] | None = None) -> list[dict[str, Any]]:
    """The job itself, in dirs this process has locked (``resumes``: the members' loaded last.pt)."""
    s0, k = settings[0], len(settings)
    for config, d in zip(configs, dirs, strict=True):
        (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        if k > 1:
            write_json_atomic(d / MEMBER_POINTER, {"members": [os.path.relpath(m, d) for m in dirs]})
    device, spec = prepare_process(s0)
    env_warnings = check_user_env(s0.env.id, s0.env.kwargs)
    algo = build_algorithm(settings, spec, device)
    members = getattr(algo, "members", None)
    if resumes and k > 1:  # the members' states stacked; each session then restores its counters and RNG
        algo.load_state_dict(stack_states([r["algo"] for r in resumes]))
    elif s0.run.init_from and not resumes:
        warm_start(algo, s0, k)
    batched = s0.env.batched
    if batched == "auto" and resumes and any(batched_snapshot((r.get("loop") or {}).get("envs")) for r in resumes):
        batched = True  # continue the checkpointed episodes in the kind of env they ran in
    exit_code = 1
    with contextlib.ExitStack() as stack:  # whatever was built is closed, however the job ends
        envs = make_vec_env(s0.env.id, k * s0.env.num_envs, s0.run.seed, s0.env.kwargs, s0.env.max_episode_steps,
                            batched=batched, wrappers=s0.env.wrappers, train_wrappers=s0.env.train_wrappers)
        stack.callback(envs.close)
        evaluations = None
        if k > 1 and s0.eval.deterministic:  # one batched evaluation of every member; block k seeded as its own
            evaluator = Evaluator(s0.env.id, s0.eval.episodes, [eval_seed(s.run.seed) for s in settings], device,
                                  s0.env.kwargs, s0.env.max_episode_steps, wrappers=s0.env.wrappers)
            stack.callback(evaluator.close)
            evaluations = MemberEvaluations(algo, evaluator)
        sessions = [run_session(s, c, d, algo if k == 1 else MemberView(algo, i), spec, device,
                                resumes[i] if resumes else None, stack, lambda: exit_code, progress=i == 0,
                                evaluator=None if evaluations is None else evaluations.member(i))
                    for i, (s, c, d) in enumerate(zip(settings, configs, dirs, strict=True))]
        for i, (session, s) in enumerate(zip(sessions, settings, strict=True)):
            session.save_buffer = s.checkpoint.save_buffer
            hook = eval_hooks[i] if eval_hooks is not None else None
            if hook is not None:
                session.eval_hooks.append(hook)
            for w in env_warnings:
                session.logger.message(f"rlx: warning: env checker ({spec.id}): {w}")
        if resumes:
            for session, state in zip(sessions, resumes, strict=True):
                session.restore(state)
        if k > 1:
            sessions[0].logger.message(f"rlx: population of {k} in one process: {', '.join(str(d) for d in dirs)}")
        job = PopulationSession(algo, members, sessions, dirs, s0.env.num_envs, [s.run.seed for s in settings], evaluations)
        if s0.pbt is not None and s0.pbt.replay and not s0.pbt.enabled and members is not None:
            job.pbt = ScheduleReplay(read_schedule(s0.pbt.replay, s0.algo_name), algo, members, sessions[0])
        if s0.pbt is not None and s0.pbt.enabled:
            if k == 1:  # a PBT member resumed alone: its plain run, with the hyperparameters it had reached
                sessions[0].logger.message("rlx: pbt: one member alone has no population to exploit; it trains on "
                                           "with its current hyperparameters")
            elif members is not None:
                bounds = check_pbt(s0.pbt, s0.algo_name, configs, s0.eval.every)
                pbt = PopulationBasedTraining(s0.pbt, bounds, algo, members, sessions, dirs, min(s.run.seed for s in settings))
                pbt.revive = job.revive
                job.pbt = pbt
        loop = importlib.import_module(LOOPS[algo.loop])
        try:
            with stop_on_signals(job, sessions[0].logger):  # type: ignore[arg-type]
                result = loop.run(algo, envs, sessions[0] if algo.loop in SINGLE_SESSION_LOOPS else job, device)
        except Exception as e:
            if not is_fault(e):
                raise
            error = fault_text(e, dirs[0])
            tb = "" if isinstance(e, (RunFault, OSError)) else traceback.format_exc()
            messages = [job.failed.get(i) or record_fault(d, error, sessions[i], tb) for i, d in enumerate(dirs)]
            fault = (NonFiniteError if isinstance(e, NonFiniteError) else RunFault)(
                messages[0] if k == 1 else f"the population failed: {messages[0]}")
            fault._rlx_logged = True  # type: ignore[attr-defined]  # record_fault wrote it to rlx.log
            raise fault from None
        summaries = [result] if isinstance(result, dict) else list(result)
        for session, d, summary in zip(sessions, dirs, summaries, strict=True):
            summary["device"] = str(device)
            write_summary(d, summary)
            session.logger.summary(summary)
        if k == 1 and summaries[0]["status"] == "failed":
            fault = NonFiniteError(summaries[0]["error"])
            fault._rlx_logged = True  # type: ignore[attr-defined]
            raise fault
        exit_code = 0
        _say_done(sessions, dirs, summaries, job.stop_requested)
        return summaries
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _init_state(s: Settings) -> dict[str, Any]:
    from rlx.rundir.checkpoint import load_checkpoint

    path = Path(str(s.run.init_from))
    state = load_checkpoint(path / "checkpoints" / "last.pt" if path.is_dir() else path, with_buffer=False)
    if state.get("algo_name") != s.algo_name:
        raise UserError(f"init_from={path}: a checkpoint of algo={state.get('algo_name')}, not algo={s.algo_name}")
    return state


def warm_start(algo: Any, s: Settings, k: int) -> None:
    """``init_from``: every member starts from the checkpoint's learned state (weights, target networks,
    optimizer moments, observation statistics) with its own config's hyperparameters and its own random
    streams."""
    path, state = Path(str(s.run.init_from)), _init_state(s)
    own = algo.state_dict()
    learned = {name: value for name, value in state["algo"].items() if name not in ("hypers", "random")}
    try:
        algo.load_state_dict(stack_states([{**member_state(own, i, k), **learned} for i in range(k)]))
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"init_from={path}: its networks do not fit this config's ({str(e).splitlines()[0][:200]})") from None


def _say_done(sessions: list[Any], dirs: list[Path], summaries: list[dict[str, Any]], signal: str | None) -> None:
    """The end of a job on the console (and in rlx.log): how it ended, where it is, what to do next."""
    logger = sessions[0].logger
    if signal in ("SIGINT", "SIGTERM"):
        target = dirs[0] if len(dirs) == 1 else dirs[0].parent
        logger.message(f"rlx: stopped by {signal} at env step {sessions[0].env_steps:,}; checkpoint saved. "
                       f"Continue with: {CONTINUE_HINT.get() or f'rlx resume {target}'}")
        return
    if len(dirs) > 1:
        ok = sum(s.get("status") in FINISHED for s in summaries)
        logger.message(f"rlx: population done: {ok} of {len(dirs)} members finished; next: rlx report {dirs[0].parent}")
        return
    s, d = summaries[0], dirs[0]
    if s.get("stopped_by"):  # a stop condition (stop.*) or rlx tune's pruner: the run is over
        logger.message(f"rlx: ended by {s['stopped_by']} at env step {s['env_steps']:,}")
    logger.message(f"rlx: done: {s['env_steps']:,} env steps in {s['wall_s']:.0f} s, final eval return "
                   f"{s['eval_return_mean']:.1f} ± {s['eval_return_std']:.1f}; run dir {d}")
    tb = " | tensorboard --logdir " + str(d / "tb") if (d / "tb").is_dir() else ""
    logger.message(f"rlx: next: rlx eval {d} | rlx plot {d}{tb}")


# --- resume -----------------------------------------------------------------------------------------

def population_members(run_dir: str | Path) -> list[Path] | None:
    """The member dirs of the population ``run_dir`` was trained in (None: a plain run)."""
    marker = Path(run_dir) / MEMBER_POINTER
    try:
        members = json.loads(marker.read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [Path(os.path.normpath(Path(run_dir) / m)) for m in members]


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Continue one run (a plain run, or a population member alone) from its ``checkpoints/last.pt``."""
    return resume_job([run_dir], overrides)[0]


def resume_at(path: str | Path, overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``rlx resume PATH``: a run dir (a plain run, or one population member alone: a member is its plain
    run), or a sweep dir of any launcher (each population with an unfinished member resumed together,
    every other unfinished run on its own). Returns the summaries of what was resumed."""
    path = Path(path)
    if (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
        if population_members(path) is not None:
            print(f"rlx: resuming {path}, one member of a population, alone (it continues as its plain run would; "
                  f"`rlx resume {path.parent}` resumes the whole sweep)", file=sys.stderr)
        return resume_job([path], overrides)
    if not path.is_dir():
        raise UserError(f"{path}: not a run dir or a sweep dir")
    return _resume_sweep(path, overrides)


def _resume_sweep(sweep_dir: Path, overrides: Sequence[str]) -> list[dict[str, Any]]:
    populations = population_dirs(sweep_dir)  # the population launcher's record of its populations
    in_population = {d for pop in populations for d in pop}
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / "config.yaml").is_file() and p not in in_population)
    groups = list(populations)
    for r in runs:  # a population trained without the launcher: grouped by its members' pointers
        if any(r in g for g in groups):
            continue
        fellows = population_members(r)
        groups.append([m for m in fellows if (m / "config.yaml").is_file()] if fellows and r in fellows else [r])
    if not groups:
        raise UserError(f"{sweep_dir}: neither a run dir (no config.yaml) nor a sweep dir (no run dirs in it)")
    summaries: list[dict[str, Any]] = []
    unfinished = 0
    extending = any(o.split("=", 1)[0] == "total_steps" for o in overrides)  # finished runs may go on
    for number, group in enumerate(groups):
        todo = [d for d in group if extending or _status(d) not in FINISHED]
        if not todo:
            continue
        unfinished += 1
        print(f"rlx: resuming {', '.join(d.name for d in todo)}", file=sys.stderr)
        try:
            result = resume_job(todo, overrides, skip_broken=True)
        except (RunFault, UserError) as e:
            print(f"rlx: {', '.join(d.name for d in todo)}: {e}", file=sys.stderr)
            continue
        summaries += result
        if number < len(populations):
            update_population_status(sweep_dir, number, [_status(d) for d in group])
    if not unfinished:
        raise UserError(f"{sweep_dir}: every run in this sweep dir has finished; nothing to resume")
    if not summaries:
        raise RunFault(f"{sweep_dir}: no unfinished run could be resumed (see above)")
    return summaries


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def resume_job(run_dirs: Sequence[str | Path], overrides: Sequence[str] = (), skip_broken: bool = False,
               eval_hooks: Sequence[EvalHook | None] | None = None) -> list[dict[str, Any]]:
    """Continue these runs as one job from their ``checkpoints/last.pt``, each with its own config plus the
    same safe overrides (:data:`rlx.train.run.RESUMABLE_KEYS`), every dir locked first. ``skip_broken``: a
    member whose checkpoint is missing or unreadable is reported and left out, the others go on (else:
    UserError); members that already trained their total_steps are left out too. ``eval_hooks[k]``: as in
    :func:`train_job`, for ``run_dirs[k]``."""
    from rlx.rundir.checkpoint import load_checkpoint, step_checkpoint_hint

    dirs = [Path(d) for d in run_dirs]
    with contextlib.ExitStack() as locks:
        kept: list[tuple[Path, dict, dict]] = []
        finished: list[tuple[Path, int]] = []
        for d in dirs:
            last = d / "checkpoints" / "last.pt"
            try:
                if not last.is_file():
                    hint = step_checkpoint_hint(d / "checkpoints") or \
                        " (killed before its first checkpoint? start it again with overwrite=true)"
                    raise UserError(f"{d}: no checkpoints/last.pt to resume from{hint}")
                locks.enter_context(RunDirLock(d))
                state = load_checkpoint(last)
                config = resumed_config(state["config"], overrides)
            except UserError as e:
                if not skip_broken or len(dirs) == 1:
                    raise
                print(f"rlx: {e}; left out, the others go on", file=sys.stderr)
                continue
            if parse_settings(config).run.total_steps <= state["env_steps"]:
                finished.append((d, state["env_steps"]))
                continue
            kept.append((d, state, config))
        if not kept:
            d, steps = finished[0] if finished else (dirs[0], 0)
            raise UserError(f"{d}: already trained {steps:,} env steps (its total_steps); pass a larger "
                            f"total_steps=... to extend the run")
        configs = [c for _, _, c in kept]
        settings = [parse_settings(c) for c in configs]
        if len(configs) > 1:
            check_population(configs)
        for d, state, _ in kept:
            truncate_metrics(d / "metrics.jsonl", state["env_steps"])
        hooks = None if eval_hooks is None else [dict(zip(dirs, eval_hooks, strict=True))[d] for d, _, _ in kept]
        return _run_job(configs, settings, [d for d, _, _ in kept], [s for _, s, _ in kept], hooks)

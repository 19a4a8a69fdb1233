"""W&B in its own process (issue 27): ``python -m rlx.rundir.wandb_process``, fed JSON lines on stdin.

Why a process and not a thread: importing wandb and ``wandb.init`` are about a second of Python (0.45 s and
~0.6 s offline on a 2-core VM), and in a thread of the training process that second holds the GIL against
the training loop, so the default run (``logger.wandb.mode=offline``) took ~1.0 s longer than ``disabled``
whatever its length. Here that work runs on its own interpreter; the training process only writes lines.

The protocol (one JSON object per line; ``w`` names the run: a population's K members share this process):

- in:  ``{"w", "op": "start", "init": {...}}`` (``wandb.init``'s arguments, below), ``{"w", "op": "log" |
  "summary", "p": {...}}``, ``{"w", "op": "finish", "code": int}``. End of input (the training process is
  gone, even killed): every open run is finished with exit code 1.
- out: ``{"w", "kind": "message", "text"}`` (a warning for the run's console and rlx.log), ``{"w", "kind": "id",
  "id"}`` (the run's W&B id changed: online fell back to offline under a new id), ``{"w", "kind": "finished"}``.

Runs start and finish one at a time (the ops are handled in order), as ``wandb.init`` wants. Only the standard
library, wandb and rlx.errors (no imports) are imported here: this process never loads torch.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import string
import sys
from pathlib import Path
from typing import Any

from rlx.errors import first_line  # stdlib only: this process still never loads torch


def new_wandb_id() -> str:
    """A fresh W&B run id, as ``wandb`` makes them (8 base-36 digits), without importing wandb."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def _logged_in() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class _Runs:
    """This process's W&B runs by ``w``; ``send`` writes one line to the training process."""

    def __init__(self, send: Any):
        self.send = send
        self.runs: dict[str, Any] = {}
        self.broken: dict[str, Any] = {}  # runs whose log raised: finished with exit code 1

    def warn(self, w: str, text: str) -> None:
        self.send({"w": w, "kind": "message", "text": text})

    def start(self, w: str, a: dict[str, Any]) -> None:
        """``wandb.init`` with ``a`` = project, entity, group, tags, name, config, dir, mode, id, init_timeout.
        W&B must never stop or stall training: a bounded wait for the server (init_timeout), then offline files
        in the run dir (`wandb sync` them later); if even that fails, no W&B for this run."""
        try:
            import wandb
        except Exception as e:  # wandb not importable: training goes on without it
            self.warn(w, f"rlx: warning: W&B could not start ({type(e).__name__}: {first_line(e, 160)}); training without it")
            return
        mode = a["mode"]
        if mode == "online" and not (os.environ.get("WANDB_API_KEY") or _logged_in()):
            self.warn(w, "rlx: warning: W&B online mode without WANDB_API_KEY or `wandb login`; logging offline instead")
            mode = "offline"

        def init(mode: str, run_id: str = a["id"]) -> Any:
            return wandb.init(project=a["project"], entity=a["entity"], group=a["group"], tags=a["tags"] or None,
                              name=a["name"], config=a["config"], dir=a["dir"], mode=mode,  # type: ignore[arg-type]
                              id=run_id, resume="allow",
                              reinit="create_new",  # a population's members: K live runs in one process
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                      init_timeout=a["init_timeout"]))

        try:
            run = init(mode)
        except Exception as e:
            if mode != "online":
                self.warn(w, f"rlx: warning: W&B could not start ({type(e).__name__}: {first_line(e, 160)}); training without it")
                return
            self.warn(w, f"rlx: warning: W&B online unreachable within {a['init_timeout']:g}s "
                         f"({type(e).__name__}: {first_line(e, 160)}); logging offline into {Path(a['dir']) / 'wandb'} instead")
            try:  # under a new id: W&B keeps the failed online run's id "in use" in this process
                run = init("offline", new_wandb_id())
            except Exception as e2:
                self.warn(w, f"rlx: warning: W&B offline could not start either ({type(e2).__name__}); training without it")
                return
            self.send({"w": w, "kind": "id", "id": run.id})  # the checkpoints from now on name the run with the files
        run.define_metric("env_steps")
        run.define_metric("*", step_metric="env_steps")
        self.runs[w] = run

    def record(self, w: str, op: str, payload: dict[str, Any]) -> None:
        run = self.runs.get(w)
        if run is None:
            return  # W&B did not start for this run: records are dropped (metrics.jsonl has them)
        try:
            if op == "log":
                run.log(payload)
            else:
                for k, v in payload.items():
                    run.summary[k] = v
        except Exception as e:  # a broken W&B run never stops training; metrics.jsonl has every line
            self.warn(w, f"rlx: warning: W&B stopped logging ({type(e).__name__}: {first_line(e, 160)}); training goes on without it")
            self.broken[w] = self.runs.pop(w)

    def finish(self, w: str, code: int) -> None:
        run, code = (self.runs.pop(w), code) if w in self.runs else (self.broken.pop(w, None), 1)
        if run is not None:
            with contextlib.suppress(Exception):
                run.finish(exit_code=code)
        self.send({"w": w, "kind": "finished"})


def main() -> None:
    # Ctrl-C reaches the whole foreground process group, a scheduler's SIGTERM every process of the job: the
    # training process decides when its runs end (a graceful stop still logs its last lines); if it dies
    # instead, the end of input finishes them here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = sys.stdout

    def send(msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):  # the training process is gone: nobody to tell
            out.write(json.dumps(msg) + "\n")
            out.flush()

    sys.stdout = sys.stderr  # anything wandb prints must not reach the protocol stream
    with contextlib.suppress(Exception):  # now, before the first run's start arrives
        import wandb  # noqa: F401
    runs = _Runs(send)
    for line in sys.stdin:
        msg = json.loads(line)
        w, op = msg["w"], msg["op"]
        if op == "start":
            runs.start(w, msg["init"])
        elif op == "finish":
            runs.finish(w, int(msg["code"]))
        else:
            runs.record(w, op, msg["p"])
    for w in [*runs.runs, *runs.broken]:  # input ended without their finish: the training process died
        runs.finish(w, 1)


if __name__ == "__main__":
    main()

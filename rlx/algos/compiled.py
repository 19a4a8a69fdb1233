"""``compile: auto | true | false`` (top level, issue 27): the whole update step of SAC, TD3 and DDPG as
``torch.compile`` d graphs.

What is compiled is each algorithm's ``_step`` method: the pure tensor part of one update (targets, critic
loss, backward, the critic's Adam step, the actor's and the temperature's, the Polyak target update), with
the random draws made before it from the members' own streams (:class:`rlx.members.MemberRandom` is
Python state: its ε arrive as inputs) and the Python counters and metrics' device sync after it. The
networks run as plain torch ops while dynamo traces (:func:`rlx.networks.fused.fused_enabled` is False
then): inductor fuses those, and the hand-written fused/stacked autograd nodes stay what eager runs.

- Shapes are fixed (``dynamic=False``: minibatch ``[K, B, ...]`` never changes within a run), so a run
  compiles once per variant (TD3: a critic-only step and a critic+actor step); a step with masked members
  (a member stopped after a non-finite loss) runs eagerly, the same code.
- Compiled kernels are cached on disk (``TORCHINDUCTOR_CACHE_DIR``, default ``~/.cache/rlx/inductor``):
  the next run of the same shapes loads them instead of compiling.
- ``auto``: compiled on CUDA only. Measured on a 2-core CPU VM (``scripts/bench_compile.py``,
  benchmarks/compile.md): a plain run's (K = 1) compiled update is 1.25-1.56x faster (break-even 3-14k
  updates with a cold cache, 0.3-0.9k warm), a K = 4 population's 0.83-0.89x (inductor's CPU code for the
  members' batched matmuls is slower than the eager stacked kernels). A rule on K would make a member
  compute differently from its plain run, one on the run's length would slow long CPU populations: so on
  CPU, ``compile=true`` is the user's choice for long plain runs.
- ``false``: the eager ``_step``, exactly today's computation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, runtime_checkable

import torch

CompileSetting = bool | Literal["auto"] | None  # None: not resolved yet (RunConfig resolves it to auto)


def compile_enabled(setting: CompileSetting, device: torch.device) -> bool:
    """Whether a run with ``compile=setting`` on ``device`` compiles its update (the ``auto`` rule above)."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept between runs: ``TORCHINDUCTOR_CACHE_DIR`` if set, else
    ``~/.cache/rlx/inductor`` (set for this process, before the first compile)."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path.home() / ".cache" / "rlx" / "inductor")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


class UpdateStep:
    """An algorithm's update step ``fn(*tensors, *flags, mask=None)``, eager or compiled.

    Compiled lazily on the first call (so an algorithm built only to evaluate a checkpoint never compiles);
    ``mask`` (some members stopped) takes the eager path: its member selection is data-dependent."""

    backend = "inductor"  # torch.compile's backend

    def __init__(self, fn: Callable[..., Any], enabled: bool = False):
        self.eager = fn
        self.enabled = enabled
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any, mask: torch.Tensor | None = None) -> Any:
        if not self.enabled or mask is not None:
            return self.eager(*args, mask)
        if self._compiled is None:
            inductor_cache_dir()
            self._compiled = torch.compile(self.eager, backend=self.backend, dynamic=False)
        # backward and the optimizer steps traced into the same graph (else a graph break at each backward)
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return self._compiled(*args, None)


@runtime_checkable
class CompiledUpdate(Protocol):
    """An algorithm whose update's tensor part is an :class:`UpdateStep` (SAC; DDPG, and TD3 through it):
    the one attribute :func:`set_compile` switches. An algorithm without it always updates eagerly."""

    step: UpdateStep


def set_compile(algo: object, setting: CompileSetting, device: torch.device) -> bool:
    """Switch ``algo``'s update step to compiled where the setting says so; returns whether it is. An
    algorithm that is not a :class:`CompiledUpdate` is left as it is."""
    if not (isinstance(algo, CompiledUpdate) and isinstance(algo.step, UpdateStep)):
        return False
    algo.step.enabled = compile_enabled(setting, device)
    return algo.step.enabled

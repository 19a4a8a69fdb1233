"""Policy evaluation on separate envs: the figure every comparison uses (deterministic by default)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Collection, Protocol, Sequence, cast

import gymnasium as gym
import numpy as np
import torch

from rlx.algos.protocols import RecurrentActor
from rlx.envs.batched import VecEnv
from rlx.envs.make import EnvFactory, make_vec_env, resolve_env_id
from rlx.errors import UserError
from rlx.rundir.lock import ensure_writable_dir

ActFn = Callable[[torch.Tensor, bool], torch.Tensor]


def to_env_actions(actions: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """Tensor actions -> what the vector env accepts; Gaussian samples are clipped to the Box, MultiDiscrete and
    MultiBinary actions in the space's integer dtype (MultiBinary's policy samples 0./1. floats)."""
    a = actions.detach().cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(a, action_space.low, action_space.high)
    if isinstance(action_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return a.astype(action_space.dtype)
    return a


def recurrent_actor(act: ActFn | RecurrentActor) -> RecurrentActor | None:
    """The policy with memory behind ``act``, if it has one (``network.recurrent``), else None. The evaluator's
    callers hand it ``algo.act`` (Session, rlx eval, a population's evaluations); a recurrent policy needs
    the state of each eval env and where their episodes start, so the evaluator acts through the
    algorithm that method belongs to (:class:`rlx.algos.protocols.RecurrentActor`) instead."""
    owner = act if isinstance(act, RecurrentActor) else getattr(act, "__self__", None)  # a bound method's algorithm
    return owner if isinstance(owner, RecurrentActor) and owner.recurrent else None


class Evaluates(Protocol):
    """What a Session evaluates with: ``episodes`` returns of the policy ``act``."""

    def __call__(self, act: ActFn, deterministic: bool = True) -> np.ndarray: ...


class Evaluator:
    """Runs ``episodes`` full episodes spread over up to ``max_envs`` parallel envs.

    Each env gets a fixed quota of episodes, so short episodes are not over-represented. The eval envs
    are reseeded identically every time, so two evaluations of the same policy give the same number.

    ``seed`` a list: one evaluator for a population's members, each a *block* of the same vector env
    (block b's envs reseeded as an evaluator of ``seed[b]`` alone would reseed its own), so that
    :meth:`evaluate_blocks` evaluates every member with one ``act`` call per step for all of them: K members'
    evaluations cost about one evaluation's Python and forward overhead instead of K. Each block's returns
    are those of its own evaluator (deterministic ``act``; stochastic actions then come from one stream).
    """

    def __init__(self, env_id: str, episodes: int, seed: int | Sequence[int], device: torch.device, kwargs: dict | None = None,
                 max_episode_steps: int | None = None, max_envs: int = 10, video_dir: str | Path | None = None,
                 wrappers: list | tuple = ()):
        self.seeds = [seed] if isinstance(seed, int) else list(seed)
        self.episodes, self.seed, self.device = episodes, self.seeds[0], device
        self.envs: VecEnv
        if video_dir is not None:
            if len(self.seeds) != 1:
                raise ValueError("a video is recorded for one policy: one seed")
            require_video_extra(video_dir)
            env_id = resolve_env_id(env_id)
            video_dir = ensure_writable_dir(Path(video_dir), "video dir")
            earlier = sorted(p.name for p in video_dir.glob(f"{VIDEO_PREFIX}-episode-*.mp4"))
            if earlier:  # said once, in one line (gymnasium's warning says it for any existing dir, a fresh one too)
                print(f"rlx: warning: --video {video_dir} already holds {len(earlier)} video(s) ({', '.join(earlier[:3])}"
                      f"{', ...' if len(earlier) > 3 else ''}): the episodes recorded now replace those of the same number",
                      file=sys.stderr)
            factory = _VideoFactory(env_id, dict(kwargs or {}), max_episode_steps, str(video_dir), episodes, wrappers)
            self.envs = gym.vector.SyncVectorEnv([factory], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            self.per_block = 1
        else:
            # env.wrappers, not env.train_wrappers: evaluation reports the real return (whole games, unclipped)
            self.per_block = min(episodes, max_envs)
            self.envs = make_vec_env(env_id, self.per_block * len(self.seeds), self.seed, kwargs, max_episode_steps,
                                     wrappers=wrappers)

    def __call__(self, act: ActFn | RecurrentActor, deterministic: bool = True) -> np.ndarray:
        """The returns of ``act``, for an evaluator of one seed."""
        if len(self.seeds) != 1:
            raise ValueError(f"an evaluator of {len(self.seeds)} blocks: use evaluate_blocks")
        return self.evaluate_blocks(act, [0], deterministic)[0]

    def evaluate_blocks(self, act: ActFn | RecurrentActor, blocks: Collection[int],
                        deterministic: bool = True) -> dict[int, np.ndarray]:
        """Each of ``blocks``' returns; ``act`` acts on all blocks' observations at once (``[blocks*n, *obs]``,
        block-major); the envs of blocks not asked for step along and are not counted. A recurrent policy
        (:func:`recurrent_actor`) acts from a state per eval env, reset where each env's episode starts."""
        n = self.per_block
        quota = np.zeros(n * len(self.seeds), dtype=np.int64)
        for b in blocks:
            quota[b * n:(b + 1) * n] = [self.episodes // n + (i < self.episodes % n) for i in range(n)]
        returns: dict[int, list[float]] = {b: [] for b in blocks}
        ep_ret = np.zeros(len(quota))
        obs, _ = self.envs.reset(seed=[s + i for s in self.seeds for i in range(n)])
        recurrent = recurrent_actor(act)
        state = recurrent.initial_state(len(quota)) if recurrent is not None else None
        starts = torch.ones(len(quota), dtype=torch.bool, device=self.device)  # every env starts an episode
        # Stochastic evaluation must not consume the training RNG stream (resume/determinism).
        # torch.manual_seed reseeds every CUDA device too: fork those (once CUDA is in use) as well, or each
        # evaluation would reset the training's CUDA streams (replay sampling, minibatch shuffles, noise).
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            while (quota > 0).any():
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
                if recurrent is not None:
                    actions, state = recurrent.act_recurrent(obs_t, cast(torch.Tensor, state), starts, deterministic)
                else:
                    actions = cast(ActFn, act)(obs_t, deterministic)
                obs, rewards, terminated, truncated, _ = self.envs.step(to_env_actions(actions, self.envs.single_action_space))
                if recurrent is not None:  # the next observation of these envs starts an episode (same-step autoreset)
                    starts = torch.as_tensor(terminated | truncated, device=self.device)
                ep_ret += rewards
                for i in np.flatnonzero(terminated | truncated):
                    if quota[i] > 0:
                        returns[int(i) // n].append(float(ep_ret[i]))
                        quota[i] -= 1
                    ep_ret[i] = 0.0
        return {b: np.asarray(r) for b, r in returns.items()}

    def close(self) -> None:
        self.envs.close()


VIDEO_PREFIX = "rl-video"  # gymnasium's RecordVideo names its files rl-video-episode-<i>.mp4


def require_video_extra(video_dir: str | Path) -> None:
    """`rlx eval --video` records with moviepy (the ``video`` extra): without it, a one-line UserError naming
    the extra, before anything is written (gymnasium's own error names gymnasium[other], after a traceback)."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise UserError(f"--video {video_dir}: recording needs moviepy, which is not installed: "
                        f"pip install 'rlx[video]'") from None


class _VideoFactory(EnvFactory):
    def __init__(self, env_id: str, kwargs: dict, max_episode_steps: int | None, video_dir: str, episodes: int,
                 wrappers: list | tuple = ()):
        # the video records env.render(): the raw game frames (e.g. Atari's 210x160 RGB), not the network input
        super().__init__(env_id, kwargs, max_episode_steps, render_mode="rgb_array", wrappers=wrappers)
        self.video_dir, self.episodes = video_dir, episodes

    def __call__(self) -> gym.Env:
        # Off-screen frames need no display: without this, SDL (pygame's classic-control renderer) prints
        # "XDG_RUNTIME_DIR is invalid" on a machine without one. A driver the user chose is kept.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        # Only the episodes asked for: the vector env's autoreset starts one more episode after the last,
        # which would otherwise be recorded too (a stray, truncated extra file).
        episodes = self.episodes
        with warnings.catch_warnings():  # for any existing dir, the fresh one Evaluator made too: said there instead
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            return gym.wrappers.RecordVideo(super().__call__(), self.video_dir, episode_trigger=lambda i: i < episodes,
                                           name_prefix=VIDEO_PREFIX, disable_logger=True)

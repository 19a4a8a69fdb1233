"""Environment construction on gymnasium's vector API, and episode bookkeeping."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlx.errors import UserError


@dataclass(frozen=True)
class EnvSpec:
    """What algorithms need to know about an env to build their networks."""

    id: str
    observation_space: gym.spaces.Box
    action_space: gym.Space

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.observation_space.shape)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)


def resolve_env_id(env_id: str) -> str:
    """Accept a registered id, ``module:EnvId`` (import registers it) or ``module:Class`` (registered here)."""
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(f"env.id={env_id}: cannot import module '{module_name}' ({e})") from None
        obj = getattr(module, name, None)
        if isinstance(obj, type) and issubclass(obj, gym.Env):
            rid = f"rlx-custom/{module_name}.{name}-v0"
            if rid not in gym.registry:
                gym.register(rid, entry_point=obj)
            return rid
        env_id = name
    if env_id not in gym.registry:
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `rlx list` or gymnasium's registry."
        raise UserError(f"env.id={env_id}: gymnasium doesn't know this environment id.{hint}")
    return env_id


def _make_one(env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, render_mode: str | None = None) -> gym.Env:
    if render_mode is not None:  # envs that don't render don't accept the argument at all
        kwargs = {**kwargs, "render_mode": render_mode}
    try:
        return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        extra = "mujoco" if "mujoco" in str(e).lower() else "box2d" if "box2d" in str(e).lower() else None
        how = f" Install it with: pip install 'rlx[{extra}]'" if extra else ""
        raise UserError(f"env.id={env_id}: a dependency is missing ({str(e).splitlines()[0]}).{how}") from None
    except Exception as e:  # a user env's constructor rejected its kwargs, etc.
        raise UserError(f"env.id={env_id}: could not be created: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def env_spec(env_id: str, kwargs: dict[str, Any] | None = None) -> EnvSpec:
    env_id = resolve_env_id(env_id)
    env = _make_one(env_id, dict(kwargs or {}), None)
    spec = EnvSpec(env_id, env.observation_space, env.action_space)
    env.close()
    if not isinstance(spec.observation_space, gym.spaces.Box):
        raise UserError(f"env.id={env_id}: observation space {spec.observation_space} is not supported (flat Box only)")
    return spec


class _EnvFactory:
    """Picklable env constructor (a lambda would stop vector envs from being checkpointed)."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, render_mode: str | None = None):
        self.env_id, self.kwargs, self.max_episode_steps, self.render_mode = env_id, kwargs, max_episode_steps, render_mode

    def __call__(self) -> gym.Env:
        return _make_one(self.env_id, self.kwargs, self.max_episode_steps, self.render_mode)


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.vector.VectorEnv:
    """Synchronous vector env with same-step autoreset: the observation returned with done is
    already the next episode's first one, and the episode's last one is in ``info["final_obs"]``."""
    env_id = resolve_env_id(env_id)
    factory = _EnvFactory(env_id, dict(kwargs or {}), max_episode_steps, render_mode)
    envs = gym.vector.SyncVectorEnv(
        [factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs


def final_observations(obs: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The observation each env actually reached this step: ``final_obs`` where an episode ended."""
    if not done.any() or "final_obs" not in info:
        return obs
    out = obs.copy()
    for i in np.flatnonzero(info["_final_obs"]):
        out[i] = info["final_obs"][i]
    return out


class EpisodeTracker:
    """Per-env running return/length; collects finished episodes for logging."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.episodes = 0

    def step(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.returns += rewards
        self.lengths += 1
        if done.any():
            idx = np.flatnonzero(done)
            self.finished_returns.extend(self.returns[idx].tolist())
            self.finished_lengths.extend(self.lengths[idx].tolist())
            self.episodes += len(idx)
            self.returns[idx] = 0.0
            self.lengths[idx] = 0

    def add_finished(self, returns: list[float], lengths: list[int]) -> None:
        """Episodes that finished elsewhere (A3C's worker processes)."""
        self.finished_returns.extend(returns)
        self.finished_lengths.extend(lengths)
        self.episodes += len(returns)

    def drain(self) -> tuple[list[float], list[int]]:
        r, l = self.finished_returns, self.finished_lengths
        self.finished_returns, self.finished_lengths = [], []
        return r, l

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "lengths": self.lengths.copy(), "episodes": self.episodes}

    def load_state_dict(self, state: dict) -> None:
        self.returns, self.lengths, self.episodes = state["returns"].copy(), state["lengths"].copy(), state["episodes"]


def check_user_env(env_id: str, kwargs: dict[str, Any] | None = None) -> list[str]:
    """Run gymnasium's env checker on a user-supplied env (not on gymnasium's own, which are known good).

    Returns the checker's warnings as one-line strings; a failed check is a UserError.
    """
    import warnings

    from gymnasium.utils.env_checker import check_env

    env_id = resolve_env_id(env_id)
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str) and entry.startswith("gymnasium."):
        return []
    env = _make_one(env_id, dict(kwargs or {}), None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
    except Exception as e:
        raise UserError(f"env.id={env_id}: fails gymnasium's env checker: {str(e).splitlines()[0]}") from None
    finally:
        env.close()
    strip = lambda m: " ".join(str(m).replace("\x1b[33m", "").replace("\x1b[0m", "").split())
    return sorted({strip(w.message) for w in caught})

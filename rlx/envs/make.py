"""Environment construction on gymnasium's vector API, env wrappers from the config, and episode bookkeeping.

``env.wrappers``: gymnasium wrappers by import path with their kwargs, ``{_target_: pkg.module.Wrapper,
arg: value}``, applied in order to every sub-env (training and evaluation); ``env.train_wrappers``: the
same, applied after them to the training envs only (Atari's episodic life and reward clipping: the
evaluation reports the real game score). Both are part of the run's config, so ``rlx eval`` and
``rlx resume`` rebuild the same envs.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Sequence, cast

import gymnasium as gym
import numpy as np

from rlx.envs.batched import VecEnv, select_batched
from rlx.errors import UserError
from rlx.networks.dict_obs import PackedDict


@dataclass(frozen=True)
class EnvSpec:
    """What algorithms need to know about an env to build their networks."""

    id: str
    observation_space: gym.spaces.Box  # a Dict observation space: packed (rlx.networks.dict_obs.PackedDict)
    action_space: gym.Space

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.observation_space.shape)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def action_kind(self) -> str | None:
        """The kind of action space, as algorithms list what they take (their ``action_spaces``):
        discrete, continuous, multi_discrete, multi_binary; None for any other (Dict, Tuple, ...)."""
        return action_kind(self.action_space)


ACTION_KINDS = {gym.spaces.Discrete: "discrete", gym.spaces.Box: "continuous", gym.spaces.MultiDiscrete: "multi_discrete",
                gym.spaces.MultiBinary: "multi_binary"}


def action_kind(space: gym.Space) -> str | None:
    """:attr:`EnvSpec.action_kind` of an action space."""
    return next((kind for cls, kind in ACTION_KINDS.items() if isinstance(space, cls)), None)


def _register_ale(m: Any) -> None:
    # ALE's start-up banner is silenced (its errors still print), so a run's stderr stays rlx's own lines
    m.ALEInterface.setLoggerMode(m.LoggerMode.Error)
    gym.register_envs(m)


# Env id namespaces that an optional package registers: namespace -> (extra, module, registration)
OPTIONAL_ENVS = {
    "ALE/": ("atari", "ale_py", _register_ale),
    "MinAtar/": ("minatar", "minatar.gym", lambda m: m.register_envs()),
}


def _register_optional(env_id: str) -> None:
    """Register ALE/... (ale-py) and MinAtar/... (minatar) ids on demand; a missing package is a UserError."""
    for prefix, (extra, module_name, register) in OPTIONAL_ENVS.items():
        if env_id.startswith(prefix) and env_id not in gym.registry:
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                raise UserError(f"env.id={env_id}: needs the '{extra}' extra ({e}); install it with: "
                                f"pip install 'rlx[{extra}]'") from None
            register(module)


def _import_env_module(env_id: str, module_name: str) -> Any:
    """The module of ``env.id=module:Name``; why it cannot be imported as a one-line UserError."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise UserError(f"env.id={env_id}: no module named '{e.name}' on Python's path (module:Name imports "
                            f"'{module_name}'; install it, or add its directory to PYTHONPATH, e.g. PYTHONPATH=. rlx train "
                            f"...)") from None
        raise UserError(f"env.id={env_id}: importing module '{module_name}' failed: it needs '{e.name}', which is not "
                        f"installed ({e})") from None
    except Exception as e:  # a SyntaxError or any exception raised while the module runs
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"env.id={env_id}: importing module '{module_name}' failed: {type(e).__name__}: {first}") from None


def _module_envs(module: Any) -> tuple[list[str], list[str]]:
    """(the gymnasium.Env subclasses ``module`` defines, the env ids registered with an entry point in it)."""
    name = module.__name__
    classes = sorted(k for k, v in vars(module).items()
                     if isinstance(v, type) and issubclass(v, gym.Env) and v.__module__ == name and not k.startswith("_"))

    def in_module(entry: Any) -> bool:
        if isinstance(entry, str):
            return entry.split(":", 1)[0] == name
        return getattr(entry, "__module__", None) == name

    ids = sorted(k for k, spec in gym.registry.items() if in_module(spec.entry_point))
    return classes, ids


def _not_in_module(env_id: str, module: Any, name: str) -> UserError:
    module_name = module.__name__
    where = getattr(module, "__file__", None) or module_name
    obj = getattr(module, name, None)
    if obj is None and not hasattr(module, name):
        what = f"module '{module_name}' ({where}) has no '{name}'"
    elif isinstance(obj, type):
        what = f"{module_name}.{name} is a class that does not subclass gymnasium.Env"
    else:
        what = f"{module_name}.{name} is not a gymnasium.Env subclass (it is of type {type(obj).__name__})"
    classes, ids = _module_envs(module)
    has = [f"Env classes: {', '.join(classes)}" if classes else "", f"registered ids: {', '.join(ids)}" if ids else ""]
    found = "; ".join(h for h in has if h) or "it defines no gymnasium.Env subclass and registers no env id"
    close = difflib.get_close_matches(name, classes + ids, n=1)
    hint = f" Did you mean {module_name}:{close[0]}?" if close else ""
    return UserError(f"env.id={env_id}: {what}; expected module:Class (a gymnasium.Env subclass) or module:EnvId (an "
                     f"id that importing the module registers). In '{module_name}': {found}.{hint}")


def resolve_env_id(env_id: str) -> str:
    """Accept a registered id, ``module:EnvId`` (import registers it) or ``module:Class`` (registered here)."""
    _register_optional(env_id)
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        if not module_name or not name:
            raise UserError(f"env.id={env_id}: expected a gymnasium id, module:Class or module:EnvId "
                            f"(e.g. my_pkg.envs:MyEnv)")
        module = _import_env_module(env_id, module_name)
        obj = getattr(module, name, None)
        if isinstance(obj, type) and issubclass(obj, gym.Env):
            rid = f"rlx-custom/{module_name}.{name}-v0"
            if rid not in gym.registry:
                gym.register(rid, entry_point=obj)  # type: ignore[arg-type]  # gymnasium's EnvCreator type omits classes
            return rid
        _register_optional(name)
        if name not in gym.registry:  # neither a class nor an id the module registered: say so, naming the module
            raise _not_in_module(env_id, module, name)
        env_id = name
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `rlx list` or gymnasium's registry."
        raise UserError(f"env.id={env_id}: gymnasium doesn't know this environment id.{hint}")
    return env_id


def _missing_dependency(env_id: str, e: Exception) -> UserError:
    text = str(e).lower()
    extra = next((x for x, keys in (("mujoco", ("mujoco",)), ("box2d", ("box2d",)),
                                    ("atari", ("opencv", "cv2", "ale_py", "ale-py", "atari"))) if any(k in text for k in keys)), None)
    how = f" Install it with: pip install 'rlx[{extra}]'" if extra else ""
    return UserError(f"env.id={env_id}: a dependency is missing ({str(e).splitlines()[0]}).{how}")


def load_wrapper(entry: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """``{_target_: pkg.module.Class, **kwargs}`` -> (the wrapper class, its kwargs); a bad entry is a UserError."""
    if not isinstance(entry, dict) or not isinstance(entry.get("_target_"), str):
        raise UserError(f"{where}={entry!r}: expected a mapping with '_target_: package.module.Wrapper' and its kwargs")
    target = entry["_target_"]
    module_name, _, name = target.replace(":", ".").rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError as e:
        raise UserError(f"{where}._target_={target}: cannot import module '{module_name}' ({e})") from None
    if not callable(obj):
        raise UserError(f"{where}._target_={target}: not found; expected a gymnasium wrapper by import path, "
                        f"e.g. gymnasium.wrappers.FrameStackObservation")
    return obj, {k: v for k, v in entry.items() if k != "_target_"}


def apply_wrappers(env: gym.Env, wrappers: Sequence[Any], env_id: str, where: str = "env.wrappers") -> gym.Env:
    """Wrap ``env`` with each entry of ``wrappers`` in order (see the module docstring)."""
    for i, entry in enumerate(wrappers or ()):
        cls, kwargs = load_wrapper(entry, f"{where}[{i}]")
        try:
            env = cls(env, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise _missing_dependency(env_id, e) from None
        except Exception as e:
            raise UserError(f"{where}[{i}] ({entry['_target_']}) on env.id={env_id}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return env


def _make_one(env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, render_mode: str | None = None,
              wrappers: Sequence[Any] = (), train_wrappers: Sequence[Any] = ()) -> gym.Env:
    if render_mode is not None:  # envs that don't render don't accept the argument at all
        kwargs = {**kwargs, "render_mode": render_mode}
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise _missing_dependency(env_id, e) from None
    except Exception as e:  # a user env's constructor rejected its kwargs, etc.
        raise UserError(f"env.id={env_id}: could not be created: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    env = apply_wrappers(env, wrappers, env_id)
    env = apply_wrappers(env, train_wrappers, env_id, "env.train_wrappers")
    if isinstance(env.observation_space, gym.spaces.Dict):  # one packed vector (rlx.networks.dict_obs)
        env = PackDictObs(env, env_id)
    return env


class PackDictObs(gym.ObservationWrapper):
    """A ``Dict`` observation (values: Box) -> ONE flat float32 vector, each key's values flattened and
    concatenated in the space's key order; its space is :class:`~rlx.networks.dict_obs.PackedDict` (a flat Box
    carrying the keys' layout). Applied by rlx to every env whose (wrapped) observation space is a Dict, after
    ``env.wrappers`` and ``env.train_wrappers``; the storage and the encoder unpack it per key."""

    def __init__(self, env: gym.Env, env_id: str = "the env"):
        super().__init__(env)
        space = cast(gym.spaces.Dict, env.observation_space)
        bad = [f"{k!r} is {v}" for k, v in space.spaces.items() if not isinstance(v, gym.spaces.Box)]
        if bad:
            raise UserError(f"env.id={env_id}: Dict observation key {bad[0]}; rlx takes Dict observations whose values "
                            f"are Box spaces (flat vectors, (C, H, W) images); flatten the others with env.wrappers")
        self.observation_space = PackedDict(space)
        self.layout = self.observation_space.layout

    def observation(self, observation: dict) -> np.ndarray:
        return self.layout.pack(observation)


def env_spec(env_id: str, kwargs: dict[str, Any] | None = None, wrappers: Sequence[Any] = (),
             train_wrappers: Sequence[Any] = (), encoder: str = "mlp") -> EnvSpec:
    """The (wrapped) env's spaces; an observation space ``network.encoder`` cannot take is a UserError."""
    from rlx.networks.encoders import check_observation_space

    env_id = resolve_env_id(env_id)
    env = _make_one(env_id, dict(kwargs or {}), None, wrappers=wrappers, train_wrappers=train_wrappers)
    spec = EnvSpec(env_id, cast(gym.spaces.Box, env.observation_space), env.action_space)  # checked just below
    env.close()
    check_observation_space(spec.observation_space, encoder, env_id)
    return spec


class EnvFactory:
    """Picklable env constructor (a lambda would stop vector envs from being checkpointed)."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, render_mode: str | None = None,
                 wrappers: Sequence[Any] = (), train_wrappers: Sequence[Any] = ()):
        self.env_id, self.kwargs, self.max_episode_steps, self.render_mode = env_id, kwargs, max_episode_steps, render_mode
        self.wrappers, self.train_wrappers = list(wrappers or ()), list(train_wrappers or ())

    def __call__(self) -> gym.Env:
        return _make_one(self.env_id, self.kwargs, self.max_episode_steps, self.render_mode, self.wrappers,
                         self.train_wrappers)


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    batched: bool | str = "auto",
    wrappers: Sequence[Any] = (),
    train_wrappers: Sequence[Any] = (),
) -> VecEnv:
    """Synchronous vector env with same-step autoreset: the observation returned with done is
    already the next episode's first one, and the episode's last one is in ``info["final_obs"]``.

    ``batched`` (``env.batched``): classic-control tasks can step all sub-envs in one NumPy call
    (rlx/envs/batched.py, same semantics and trajectories); "auto" does so where that is faster.
    ``wrappers`` then ``train_wrappers`` wrap each sub-env (evaluation envs get ``wrappers`` only; any
    wrapper means per-env stepping).
    """
    env_id = resolve_env_id(env_id)
    batched_cls = None if wrappers or train_wrappers else select_batched(env_id, num_envs, kwargs, render_mode, batched)
    envs: VecEnv
    if batched_cls is not None:
        envs = batched_cls(env_id, num_envs, dict(kwargs or {}), max_episode_steps)
    else:
        factory = EnvFactory(env_id, dict(kwargs or {}), max_episode_steps, render_mode, wrappers, train_wrappers)
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
            self.end_episodes(done)

    def end_episodes(self, done: np.ndarray) -> None:
        """Record the running episodes of the envs where ``done`` and start them anew."""
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
        returns, lengths = self.finished_returns, self.finished_lengths
        self.finished_returns, self.finished_lengths = [], []
        return returns, lengths

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
    if isinstance(entry, str) and (entry.startswith("gymnasium.") or env_id.startswith(tuple(OPTIONAL_ENVS))):
        return []  # gymnasium's own envs, ALE's and MinAtar's are known good
    env = _make_one(env_id, dict(kwargs or {}), None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
    except Exception as e:
        raise UserError(f"env.id={env_id}: fails gymnasium's env checker: {str(e).splitlines()[0]}") from None
    finally:
        env.close()
    def strip(m: Any) -> str:
        return " ".join(str(m).replace("\x1b[33m", "").replace("\x1b[0m", "").split())

    return sorted({strip(w.message) for w in caught})


class ChannelsFirst(gym.ObservationWrapper):
    """``(H, W, C)`` image observations -> ``(C, H, W)``, the layout the CNN encoders take (MinAtar's
    states are channels-last)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3):
            raise ValueError(f"ChannelsFirst needs a rank-3 Box observation space, got {space}")
        self.observation_space = gym.spaces.Box(np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)),
                                                dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)))


class EpisodicLife(gym.Wrapper):
    """Atari, training only: losing a life ends the learner's episode (``terminated``), but not the game:
    the next ``reset`` continues it with a no-op step, and only a game over resets the emulator (the
    DQN-paper convention; SB3's ``EpisodicLifeEnv``). Evaluation envs go without it and report whole games."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def _ale_lives(self) -> int:
        return int(cast(Any, self.env.unwrapped).ale.lives())  # an ALE env

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self._ale_lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a life was lost: go on from here with a no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.game_over = False
        self.lives = self._ale_lives()
        return obs, info


class RewardNormalizer:
    """``env.normalize_reward``: rewards divided by the running std of the discounted return (SB3's
    ``VecNormalize(norm_reward=True)``): per env, R <- gamma R + r (0 after an episode end), the running
    variance of R over all envs and steps, r / sqrt(var + eps) clipped to [-clip, clip]. The learner sees the
    normalized rewards; episode returns in the logs and evaluations stay raw. Its statistics and the
    running returns are part of the loop state in every checkpoint, so a resumed run continues them."""

    def __init__(self, num_envs: int, gamma: float = 0.99, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = np.zeros(num_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4  # SB3's RunningMeanStd start

    def __call__(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self._update(self.returns)
        out = np.clip(rewards / np.sqrt(self.var + self.eps), -self.clip, self.clip).astype(np.float32)
        self.returns[np.asarray(done, dtype=bool)] = 0.0
        return out

    def _update(self, x: np.ndarray) -> None:
        b_mean, b_var, b_count = float(x.mean()), float(x.var()), x.size
        delta, total = b_mean - self.mean, self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean, self.var, self.count = self.mean + delta * b_count / total, m2 / total, total

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].copy()
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]

    @classmethod
    def for_run(cls, session: Any, algo: Any, num_envs: int) -> RewardNormalizer | None:
        """The run's normalizer (``env.normalize_reward``, gamma = the algorithm's), restored from a resumed
        checkpoint's loop state; None when off."""
        config = getattr(session, "config", None) or {}
        if not (config.get("env") or {}).get("normalize_reward"):
            return None
        norm = cls(num_envs, getattr(getattr(algo, "hp", None), "gamma", 0.99))
        saved = getattr(session, "loop_state", None)
        if saved and saved.get("reward_norm") is not None:
            norm.load_state_dict(saved["reward_norm"])
        return norm

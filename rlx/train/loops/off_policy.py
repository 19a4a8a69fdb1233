"""The off-policy loop shared by every off-policy algorithm: step -> replay -> update.

It knows the algorithm only through ``hp`` (learning_starts, train_freq, gradient_steps, batch_size,
buffer_size), ``explore``, ``update`` and optionally ``episodes_ended`` (e.g. OU noise reset).
Until ``learning_starts`` env steps the actions are uniform random (``envs.action_space.sample()``).
"""
from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from rlx.buffers.replay import ReplayBuffer, frame_stack_size, make_replay_buffer
from rlx.envs.batched import VecEnv
from rlx.envs.make import RewardNormalizer
from rlx.train.evaluation import to_env_actions
from rlx.train.loop_state import LoopState
from rlx.train.session import OffPolicyLoopSession


def run(algo: Any, envs: VecEnv, session: OffPolicyLoopSession, device: torch.device) -> dict[str, Any]:
    hp, n_envs, space = algo.hp, envs.num_envs, envs.single_action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    frame_stack = frame_stack_size(session.config.get("env") or {}, envs.single_observation_space)
    action_shape = () if discrete else cast(gym.spaces.Box, space).shape  # continuous actions are a Box
    # a population (issue 12): member k's envs' transitions in member k's own buffer, [K, B, ...] batches
    members = getattr(getattr(algo, "members", None), "k", 1)
    buffer = make_replay_buffer(hp.buffer_size, envs.single_observation_space, action_shape,
                                discrete, device, frame_stack, members)
    layout = getattr(algo, "members", None)  # rlx.members.Members of an algorithm with a member dimension
    if layout is not None and isinstance(buffer, ReplayBuffer):
        buffer.random = layout.random  # member k's minibatches from member k's own stream
    obs = session.initial_obs(envs)
    if session.loop_state is not None and session.loop_state.get("buffer") is not None:
        buffer.load_state_dict(session.loop_state["buffer"])
    episodes_ended = getattr(algo, "episodes_ended", None)
    reward_norm = RewardNormalizer.for_run(session, algo, n_envs)  # env.normalize_reward (None: off)
    # A run resumed without its saved buffer refills this many transitions before training again.
    min_fill = max(1, min(hp.learning_starts, hp.batch_size, hp.buffer_size))

    def loop_state() -> LoopState:
        return LoopState(obs, envs, reward_norm, buffer)

    while not session.done:
        if session.env_steps < hp.learning_starts:
            actions = warmup_actions(envs, layout)
        else:
            actions = to_env_actions(algo.explore(torch.as_tensor(obs, dtype=torch.float32, device=device)), space)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        session.check_transition(next_obs, rewards)
        session.tracker.step(rewards, done)
        if reward_norm is not None:  # the learner's rewards; the tracker above logged the raw ones
            rewards = reward_norm(rewards, done)
        buffer.add(obs, actions, next_obs, rewards, terminated, truncated, info)
        if episodes_ended is not None and done.any():
            episodes_ended(done)
        obs = next_obs
        session.add_steps(n_envs)
        # Train every train_freq vector steps after learning_starts env steps, as SB3 does (it samples
        # with replacement, so the first batches may repeat transitions).
        if (session.env_steps > hp.learning_starts and len(buffer) >= min_fill
                and (session.env_steps // (n_envs // members)) % hp.train_freq == 0):
            for _ in range(hp.gradient_steps):
                session.record(algo.update(buffer.sample(hp.batch_size), session.progress))
        session.tick(loop_state)
    return session.finish(loop_state)


def warmup_actions(envs: VecEnv, layout: Any) -> Any:
    """Uniform random actions before learning_starts: on a Box or a Discrete space, member k's from its own
    stream (its plain run's, whoever shares the population); else the vector env's action space."""
    space = envs.single_action_space
    if layout is not None and isinstance(space, gym.spaces.Discrete):
        u = layout.random.uniform(envs.num_envs // layout.k).reshape(envs.num_envs).cpu().numpy()
        return (space.start + np.minimum((u * space.n).astype(np.int64), space.n - 1)).astype(space.dtype)
    if layout is None or not isinstance(space, gym.spaces.Box):
        return envs.action_space.sample()
    shape = cast(gym.spaces.Box, space).shape
    u = layout.random.uniform(envs.num_envs // layout.k * int(np.prod(shape))).reshape(envs.num_envs, *shape).cpu().numpy()
    return (space.low + u * (space.high - space.low)).astype(space.dtype)

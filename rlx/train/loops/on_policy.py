"""The on-policy loop shared by every on-policy algorithm: rollout -> bootstrap -> update.

It knows the algorithm only through :class:`rlx.algos.protocols.OnPolicyAlgorithm` (``n_steps``,
``explore``, ``policy_input``, ``value``, ``update``; a recurrent one also hears of episode ends:
:class:`~rlx.algos.protocols.StatefulOnPolicyAlgorithm`). A population's envs are one member-major vector env
and its session a :class:`rlx.train.population.PopulationSession`: the loop is the same (it returns the
session's ``finish``: one summary, or one per member).
The rollout stores what the policy saw (its normalized input), so an update never re-normalizes old
observations with newer statistics.
"""
from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from rlx.algos.protocols import OnPolicyAlgorithm, StatefulOnPolicyAlgorithm
from rlx.buffers.rollout import RolloutBuffer
from rlx.envs.batched import VecEnv
from rlx.envs.make import RewardNormalizer
from rlx.networks.dict_obs import dict_layout
from rlx.networks.encoders import stores_as_uint8
from rlx.train.evaluation import to_env_actions
from rlx.train.loop_state import LoopState
from rlx.train.session import LoopSession


def run(algo: OnPolicyAlgorithm, envs: VecEnv, session: LoopSession, device: torch.device) -> Any:
    n_envs, space = envs.num_envs, envs.single_action_space
    # choice indices (Discrete: [], MultiDiscrete: [D]) as long; Box and MultiBinary (0./1., as the policy
    # samples them) as float
    integer_actions = isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
    # Box observations only (rlx.envs.make.env_spec checks); a Dict is packed into one (rlx.networks.dict_obs),
    # the buffer stores it per key
    obs_shape = cast(gym.spaces.Box, envs.single_observation_space).shape
    buffer = RolloutBuffer(
        algo.n_steps, n_envs, obs_shape,
        tuple(space.shape or ()), torch.long if integer_actions else torch.float32, device,
        obs_dtype=torch.uint8 if stores_as_uint8(envs.single_observation_space) else torch.float32,
        obs_layout=dict_layout(envs.single_observation_space),
    )
    # where an episode was truncated: its last observation (as the env gave it: packed for a Dict)
    final_obs = torch.zeros((algo.n_steps, n_envs, *obs_shape), device=device,
                            dtype=torch.uint8 if stores_as_uint8(envs.single_observation_space) else torch.float32)
    # network.recurrent: the algorithm's per-env state is reset where episodes end, and V(final obs) needs the
    # state of that step, so it is asked then (the others: one batched call after the rollout)
    stateful = algo if isinstance(algo, StatefulOnPolicyAlgorithm) and algo.recurrent else None
    final_values_now = torch.zeros(algo.n_steps, n_envs, device=device)
    obs = session.initial_obs(envs)
    reward_norm = RewardNormalizer.for_run(session, algo, n_envs)  # env.normalize_reward (None: off)

    def loop_state() -> LoopState:
        return LoopState(obs, envs, reward_norm)

    while not session.done:
        truncated_any = False
        for t in range(algo.n_steps):
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions, log_probs, values = algo.explore(obs_t)
            seen = algo.policy_input(obs_t)  # the normalized obs it acted on (None: the raw obs)
            next_obs, rewards, terminated, truncated, info = envs.step(to_env_actions(actions, space))
            done = terminated | truncated
            session.add_steps(n_envs)
            session.check_transition(next_obs, rewards)
            session.tracker.step(rewards, done)
            if reward_norm is not None:  # the learner's rewards; the tracker above logged the raw ones
                rewards = reward_norm(rewards, done)
            if truncated.any():
                truncated_any = True
                for i in np.flatnonzero(truncated):
                    final_obs[t, i] = torch.as_tensor(info["final_obs"][i], device=device)
                if stateful is not None:
                    final_values_now[t] = stateful.value(final_obs[t])
            if stateful is not None:
                stateful.episodes_ended(done)
            buffer.add(obs if seen is None else seen.cpu().numpy(), actions, log_probs, values, rewards, terminated, done)
            obs = next_obs
        last_values = algo.value(torch.as_tensor(obs, dtype=torch.float32, device=device))
        final_values = None
        if truncated_any:  # V(final obs) for time-limit truncations, in one batched call
            final_values = final_values_now if stateful is not None else algo.value(final_obs).reshape(algo.n_steps, n_envs)
        rollout = buffer.finish(last_values, final_values)
        session.record(algo.update(rollout, session.progress))
        session.tick(loop_state)
    return session.finish(loop_state)


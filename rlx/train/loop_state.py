"""A loop's state at a safe point, as each member's checkpoint keeps it (issue 22: a member is a run).

A loop hands its session a :class:`LoopState` (its observations, its vector env, its replay buffer and
reward normalizer, as live objects); the session writes member k's part into member k's checkpoint in
exactly a plain run's layout: member k's observations, its sub-envs mid-episode, its own replay buffer,
so ``rlx resume MEMBER_DIR`` resumes it as the plain run it is, and a killed and resumed population
continues exactly. :func:`join_loop_states` is the inverse when members resume together.

The env batch is member-major: with N envs per member, envs ``k*N .. (k+1)*N - 1`` are member k's.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from rlx.envs.batched import VecEnv


@dataclass
class LoopState:
    obs: np.ndarray
    envs: VecEnv
    reward_norm: Any = None  # rlx.envs.make.RewardNormalizer (a population of one only: its statistics mix envs)
    buffer: Any = None  # the off-policy loop's replay buffer (rlx.buffers.replay)


def member_loop_state(state: LoopState, k: int, members: int, save_buffer: bool) -> dict[str, Any]:
    """Member k's part of ``state`` as a plain run's checkpoint holds it (``members`` = 1: all of it)."""
    n = state.obs.shape[0] // members
    rows = slice(k * n, (k + 1) * n)
    buffer = None
    if save_buffer and state.buffer is not None:
        whole = state.buffer.state_dict()
        buffer = whole if members == 1 else member_buffer_state(whole, k)
    return {"obs": state.obs if members == 1 else state.obs[rows],
            "envs": vector_env_state(state.envs, None if members == 1 else rows),
            "buffer": buffer,
            "reward_norm": state.reward_norm.state_dict() if state.reward_norm is not None and members == 1 else None}


def join_loop_states(states: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The members' checkpointed loop states -> the job's (what its loop restores); None if any member has
    none. A part some member lacks (unpicklable envs, no saved buffer) is None for all: the loop then
    starts new episodes or refills its buffer, as a plain run resumed without it does."""
    if not states or any(s is None for s in states):
        return None
    parts: list[dict[str, Any]] = [s for s in states if s is not None]
    if len(parts) == 1:
        return parts[0]
    envs = [p.get("envs") for p in parts]
    buffers = [p.get("buffer") for p in parts]
    return {"obs": np.concatenate([p["obs"] for p in parts]),
            "envs": None if any(e is None for e in envs) else join_env_states([e for e in envs if e is not None]),
            "buffer": None if any(b is None for b in buffers) else join_buffer_states([b for b in buffers if b is not None]),
            "reward_norm": None}


# -- vector envs -----------------------------------------------------------------------------------

def vector_env_state(envs: VecEnv, rows: slice | None = None) -> bytes | None:
    """Pickle the sub-envs (simulator state, time-limit counters, their RNGs; ``rows``: only those) so a
    resume continues mid-episode exactly; None for envs that cannot be pickled (then resume starts new
    episodes)."""
    try:
        snapshot = envs.envs
        if rows is not None:
            snapshot = _rows(snapshot, rows, envs.num_envs)
        return pickle.dumps((snapshot, envs.action_space.np_random.bit_generator.state))
    except Exception:
        return None


def restore_vector_env(envs: VecEnv, blob: bytes | None) -> bool:
    if blob is None:
        return False
    sub_envs, space_rng = pickle.loads(blob)
    envs.envs = sub_envs
    envs.action_space.np_random.bit_generator.state = space_rng
    return True


def batched_snapshot(blob: bytes | None) -> bool:
    """Whether a :func:`vector_env_state` blob is of rlx's batched envs (a member trained in a population
    of K*N envs, where ``env.batched=auto`` picked them, and resumed alone with N: the same kind is
    needed to continue its episodes)."""
    return blob is not None and isinstance(pickle.loads(blob)[0], dict)


def join_env_states(blobs: Sequence[bytes]) -> bytes:
    """Members' :func:`vector_env_state` blobs -> one for their joined vector env (the action space's RNG:
    member 0's)."""
    loaded = [pickle.loads(b) for b in blobs]
    snapshots = [snap for snap, _ in loaded]
    if isinstance(snapshots[0], list):  # a SyncVectorEnv's sub-envs
        joined: Any = [env for snap in snapshots for env in snap]
    else:  # a batched env's arrays and per-env lists (rlx.envs.batched.base)
        joined = {}
        for key, first in snapshots[0].items():
            if isinstance(first, np.ndarray):
                joined[key] = np.concatenate([s[key] for s in snapshots])
            elif isinstance(first, list):
                joined[key] = [x for s in snapshots for x in s[key]]
            else:
                joined[key] = first
    return pickle.dumps((joined, loaded[0][1]))


def _rows(snapshot: Any, rows: slice, num_envs: int) -> Any:
    if isinstance(snapshot, list):
        return snapshot[rows]
    return {key: v[rows] if isinstance(v, (np.ndarray, list)) and len(v) == num_envs else v
            for key, v in snapshot.items()}


# -- replay buffers --------------------------------------------------------------------------------

def member_buffer_state(state: dict[str, Any], k: int) -> dict[str, Any]:
    """Member k's ring of a population's replay buffer state (rlx.buffers.replay.MemberReplayBuffer) in a
    plain run's buffer layout (rlx.buffers.replay.ReplayBuffer)."""
    return {"data": state["data"][k].clone(), "pos": state["pos"], "size": state["size"], "capacity": state["capacity"]}


def join_buffer_states(states: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Members' plain buffer states -> a population's (None when their rings are not aligned: members
    resumed from different env steps)."""
    first = states[0]
    if any((s["pos"], s["size"], s["capacity"]) != (first["pos"], first["size"], first["capacity"]) for s in states):
        return None
    return {"data": torch.stack([s["data"] for s in states]), "pos": first["pos"], "size": first["size"],
            "capacity": first["capacity"], "members": len(states)}

"""Fixed-capacity replay buffer with uniform sampling (notes: DDPG "Experience Replay").

Stores (s, a, r, s', terminated): ``terminated`` only, because a time-limit truncation is not a terminal
state and its target must still bootstrap from V(s'). With gymnasium's same-step autoreset the
observation returned with ``done`` is already the next episode's first one, so ``add`` takes s' of a
finished episode from ``info["final_obs"]``.

Vector observations: all fields live in ONE preallocated float32 tensor, one row per transition; a minibatch is a single
gather (one indexing op for all fields, no per-step Python objects), split into column views.
Image observations (uint8/bool): :class:`ImageReplayBuffer`, uint8 and each observation stored once;
:func:`make_replay_buffer` picks the one that fits the observation space.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlx.envs.make import final_observations
from rlx.networks.dict_obs import DictLayout, dict_layout


class Transitions(NamedTuple):
    """A sampled minibatch: ``obs``/``next_obs`` ``[B, *obs_shape]``, ``actions`` ``[B, *action_shape]``
    (long for discrete), ``rewards`` and ``terminated`` (0./1.) ``[B]``."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions; the oldest are overwritten first."""

    members = 1  # rings (MemberReplayBuffer: one per member)

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, device: torch.device):
        self.capacity, self.device, self.discrete = capacity, device, discrete
        self.obs_shape, self.action_shape = tuple(obs_shape), tuple(action_shape)
        o, a = int(np.prod(obs_shape)), int(np.prod(action_shape))
        # columns: s | a | r | terminated | s'
        self.cols: dict[str, slice | int] = {"obs": slice(0, o), "actions": slice(o, o + a), "rewards": o + a, "terminated": o + a + 1,
                     "next_obs": slice(o + a + 2, 2 * o + a + 2)}
        # empty, not zeros: pages are only touched as rows are written (a 1e6 buffer costs nothing upfront)
        self.data = torch.empty((capacity, 2 * o + a + 2), dtype=torch.float32, device=device)
        self.pos = 0
        self.size = 0
        # members' random streams (rlx.members.MemberRandom): member k's minibatches from its own; None: torch's
        self.random: Any = None

    def __len__(self) -> int:
        return self.size

    def _indices(self, batch_size: int) -> Tensor:
        """``[K, batch_size]`` uniform indices into each member's ``size`` rows (with replacement)."""
        if self.random is None:
            return torch.randint(self.size, (self.members, batch_size), device=self.device)
        return (self.random.uniform(batch_size) * self.size).long().clamp_(max=self.size - 1)

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        """Store one vector-env step (arguments as ``envs.step`` returns them, after ``obs``/``actions``)."""
        n = obs.shape[0]
        reached = final_observations(next_obs, terminated | truncated, info)
        rows = np.concatenate([obs.reshape(n, -1), np.reshape(actions, (n, -1)), np.reshape(rewards, (n, 1)),
                               np.reshape(terminated, (n, 1)), reached.reshape(n, -1)], axis=1, dtype=np.float32)
        rows_t = torch.from_numpy(rows).to(self.device)
        end = self.pos + n
        if end <= self.capacity:
            self.data[self.pos:end] = rows_t
        else:  # wrap around
            first = self.capacity - self.pos
            self.data[self.pos:] = rows_t[:first]
            self.data[: n - first] = rows_t[first:]
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement (from ``random``, else torch's global RNG)."""
        return self.gather(self._indices(batch_size)[0])

    def gather(self, idx: Tensor) -> Transitions:
        """The transitions in rows ``idx`` ``[B]``: one indexing op for all fields, split into column views."""
        rows = self.data[idx]
        c, b = self.cols, idx.shape[0]
        actions = rows[:, c["actions"]].reshape(b, *self.action_shape)
        return Transitions(
            obs=rows[:, c["obs"]].reshape(b, *self.obs_shape),
            actions=actions.long() if self.discrete else actions,
            rewards=rows[:, c["rewards"]],
            next_obs=rows[:, c["next_obs"]].reshape(b, *self.obs_shape),
            terminated=rows[:, c["terminated"]],
        )

    # -- persistence (checkpoint.save_buffer) -----------------------------------------------------
    def state_dict(self) -> dict:
        # Only the filled rows, copied: saving a view would serialize the whole preallocated storage.
        return {"data": self.data[: self.size].to("cpu", copy=True), "pos": self.pos, "size": self.size,
                "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        data = state["data"]
        if data.shape[1:] != self.data.shape[1:]:
            raise ValueError(f"replay buffer rows of width {data.shape[1]} do not fit this buffer's {self.data.shape[1]}")
        if state["capacity"] == self.capacity:
            self.data[: state["size"]] = data.to(self.device)
            self.pos, self.size = state["pos"], state["size"]
            return
        # A different capacity (config changed between runs): keep the newest transitions, in order.
        order = torch.cat([data[state["pos"]:], data[: state["pos"]]]) if state["size"] == state["capacity"] else data
        order = order[-self.capacity:]
        self.data[: len(order)] = order.to(self.device)
        self.size, self.pos = len(order), len(order) % self.capacity


class MemberReplayBuffer(ReplayBuffer):
    """A population's replay (issue 12): K ring buffers of ``capacity`` transitions each in one
    ``[K, capacity, row]`` tensor. The loop's env batch is member-major (envs ``k*N .. (k+1)*N - 1`` are
    member k's), so a step's rows ``k*N ..`` go to member k's ring; :meth:`sample` draws member k's
    minibatch from member k's transitions only: ``[K, B, ...]`` (one gather for all members)."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, device: torch.device, members: int):
        super().__init__(1, obs_shape, action_shape, discrete, device)
        self.capacity, self.members = capacity, members
        self.data = torch.empty((members, capacity, self.data.shape[1]), dtype=torch.float32, device=device)
        self.offsets = (torch.arange(members, device=device) * capacity).unsqueeze(1)  # [K, 1] rows in the flat view

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        n, k = obs.shape[0], self.members
        if n % k:
            raise ValueError(f"a step of {n} envs for {k} members")
        per = n // k
        if per > self.capacity:
            raise ValueError(f"replay buffer capacity {self.capacity} is smaller than one step of {per} envs per member")
        reached = final_observations(next_obs, terminated | truncated, info)
        rows = np.concatenate([obs.reshape(n, -1), np.reshape(actions, (n, -1)), np.reshape(rewards, (n, 1)),
                               np.reshape(terminated, (n, 1)), reached.reshape(n, -1)], axis=1, dtype=np.float32)
        rows_t = torch.from_numpy(rows).to(self.device).view(k, per, -1)
        end = self.pos + per
        if end <= self.capacity:
            self.data[:, self.pos:end] = rows_t
        else:  # wrap around
            first = self.capacity - self.pos
            self.data[:, self.pos:] = rows_t[:, :first]
            self.data[:, : per - first] = rows_t[:, first:]
        self.pos = end % self.capacity
        self.size = min(self.size + per, self.capacity)

    def __len__(self) -> int:
        return self.size  # per member (every member adds every step)

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions per member, drawn uniformly with replacement from its own: ``[K, B, ...]``."""
        k, b, c = self.members, batch_size, self.cols
        idx = self._indices(b) + self.offsets
        rows = self.data.view(k * self.capacity, -1).index_select(0, idx.reshape(-1)).view(k, b, -1)
        actions = rows[..., c["actions"]].reshape(k, b, *self.action_shape)
        return Transitions(
            obs=rows[..., c["obs"]].reshape(k, b, *self.obs_shape),
            actions=actions.long() if self.discrete else actions,
            rewards=rows[..., c["rewards"]],
            next_obs=rows[..., c["next_obs"]].reshape(k, b, *self.obs_shape),
            terminated=rows[..., c["terminated"]],
        )

    def state_dict(self) -> dict:
        return {"data": self.data[:, : self.size].to("cpu", copy=True), "pos": self.pos, "size": self.size,
                "capacity": self.capacity, "members": self.members}

    def load_state_dict(self, state: dict) -> None:
        data = state["data"]
        if state.get("members") != self.members or data.shape[2:] != self.data.shape[2:] or state["capacity"] != self.capacity:
            raise ValueError("the saved population replay buffer does not fit this population's")
        self.data[:, : state["size"]] = data.to(self.device)
        self.pos, self.size = state["pos"], state["size"]


class DictReplayBuffer(ReplayBuffer):
    """Replay for Dict observations with image keys (issue 26; :mod:`rlx.networks.dict_obs`), one run (K=1).

    The loop hands the buffer packed vectors (:class:`~rlx.envs.make.PackDictObs`): the float keys' entries go
    to :class:`ReplayBuffer`'s float32 row (s | a | r | terminated | s'), each image key's s and s' to a uint8
    ``[capacity, 2, size]`` tensor (2 bytes per pixel per transition, not the packed row's 8). A minibatch comes
    back packed as the networks take it when acting (:class:`~rlx.networks.encoders.DictEncoder` unpacks it), so
    the algorithms see the same ``[B, layout.size]`` float tensors as from a Dict without image keys, which is
    stored as a plain packed vector (float keys only: the packed row is their per-key float32 storage)."""

    def __init__(self, capacity: int, layout: DictLayout, action_shape: tuple[int, ...], discrete: bool,
                 device: torch.device):
        self.layout = layout
        self.image_keys = [k for k in layout.keys if k.uint8]
        vector = [np.arange(k.offset, k.offset + k.size) for k in layout.keys if not k.uint8]
        self.vector_entries = np.concatenate(vector) if vector else np.zeros(0, dtype=np.int64)
        super().__init__(capacity, (len(self.vector_entries),), action_shape, discrete, device)
        self.vector_index = torch.from_numpy(self.vector_entries).to(device)
        # empty, not zeros: pages are only touched as rows are written
        self.images = {k.name: torch.empty((capacity, 2, k.size), dtype=torch.uint8, device=device) for k in self.image_keys}

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        n = obs.shape[0]
        if n > self.capacity:
            raise ValueError(f"replay buffer capacity {self.capacity} is smaller than one step of {n} envs")
        reached = final_observations(next_obs, terminated | truncated, info)
        rows = torch.from_numpy((self.pos + np.arange(n)) % self.capacity).to(self.device)
        for k in self.image_keys:
            part = slice(k.offset, k.offset + k.size)  # integers in float32: exact back to uint8
            both = np.stack([obs[:, part], reached[:, part]], axis=1).astype(np.uint8)
            self.images[k.name][rows] = torch.from_numpy(both).to(self.device)
        v = self.vector_entries  # s' already taken from final_obs above: the float row gets it as next_obs
        super().add(obs[:, v], actions, reached[:, v], rewards, terminated, np.zeros_like(truncated), {})

    def gather(self, idx: Tensor) -> Transitions:
        batch = super().gather(idx)
        return batch._replace(obs=self._packed(batch.obs, idx, 0), next_obs=self._packed(batch.next_obs, idx, 1))

    def _packed(self, vectors: Tensor, idx: Tensor, which: int) -> Tensor:
        """``[B, layout.size]`` float32: the float keys' entries and each image key's uint8 values (s: 0, s': 1)."""
        out = torch.empty((idx.shape[0], self.layout.size), dtype=torch.float32, device=self.device)
        out[:, self.vector_index] = vectors
        for k in self.image_keys:
            out[:, k.offset: k.offset + k.size] = self.images[k.name].index_select(0, idx)[:, which]
        return out

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["images"] = {name: t[: self.size].to("cpu", copy=True) for name, t in self.images.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        images = state.get("images")
        if images is None or set(images) != set(self.images) or any(
                images[n].shape[1:] != self.images[n].shape[1:] for n in images):
            raise ValueError("the saved replay buffer does not hold this env's Dict observations")
        if state["capacity"] != self.capacity:
            raise ValueError(f"the saved Dict replay buffer has capacity {state['capacity']}, this run {self.capacity}; "
                             f"resume with the same algo.buffer_size")
        super().load_state_dict(state)
        for name, t in images.items():
            self.images[name][: state["size"]] = t.to(self.device)


class ImageReplayBuffer:
    """Replay for image observations (a uint8 or bool Box): each observation stored ONCE, as uint8.

    The flat buffer's float32 row holds s and s' (8 bytes per pixel per transition); here a transition is
    its observation (1 byte per pixel), its action, reward and terminated flag (4 bytes each) and a done
    flag (1 byte). s' is not stored: it is the next row of the same env (rows are written one vector-env
    step at a time, so env i's next step is ``n_envs`` rows later), except where the episode ended (its
    final observation is kept on the side, in ``final``, until the row is overwritten) and for the newest
    step, whose s' is kept in ``tail``. A 4x84x84 Atari stack with one discrete action would take 28,237
    bytes per transition (:attr:`bytes_per_transition`) here, each frame four times; frame stacks go to
    :class:`FrameStackReplayBuffer` instead (7,070 bytes).
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, device: torch.device):
        self.capacity, self.device, self.discrete = capacity, device, discrete
        self.obs_shape, self.action_shape = tuple(obs_shape), tuple(action_shape)
        a = int(np.prod(action_shape))
        self.cols: dict[str, slice | int] = {"actions": slice(0, a), "rewards": a, "terminated": a + 1}
        # empty, not zeros: pages are only touched as rows are written
        self.obs = torch.empty((capacity, *self.obs_shape), dtype=torch.uint8, device=device)
        self.rest = torch.empty((capacity, a + 2), dtype=torch.float32, device=device)
        self.done = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.final: dict[int, Tensor] = {}  # row -> s' of a row whose episode ended there
        self.tail: Tensor | None = None  # s' of the newest n_envs rows
        self.n_envs = 0
        self.newest = 0  # first row of the newest step
        self.pos = 0
        self.size = 0

    @property
    def bytes_per_transition(self) -> int:
        return int(np.prod(self.obs_shape)) + self.rest.shape[1] * 4 + 1

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        """Store one vector-env step (arguments as ``envs.step`` returns them, after ``obs``/``actions``)."""
        n = obs.shape[0]
        if self.n_envs and n != self.n_envs:
            raise ValueError(f"ImageReplayBuffer: steps of {n} envs after steps of {self.n_envs}")
        if n > self.capacity:
            raise ValueError(f"replay buffer capacity {self.capacity} is smaller than one step of {n} envs")
        self.n_envs = n
        done = np.asarray(terminated | truncated)
        reached = final_observations(next_obs, done, info)
        rows = (self.pos + np.arange(n)) % self.capacity
        for r in rows.tolist():
            self.final.pop(r, None)
        rest = np.concatenate([np.reshape(actions, (n, -1)), np.reshape(rewards, (n, 1)), np.reshape(terminated, (n, 1))],
                              axis=1, dtype=np.float32)
        idx = torch.from_numpy(rows).to(self.device)
        self.obs[idx] = torch.from_numpy(np.asarray(obs, dtype=np.uint8)).to(self.device)
        self.rest[idx] = torch.from_numpy(rest).to(self.device)
        self.done[idx] = torch.from_numpy(done).to(self.device)
        reached_t = torch.from_numpy(np.asarray(reached, dtype=np.uint8)).to(self.device)
        for i in np.flatnonzero(done):
            self.final[int(rows[i])] = reached_t[i].clone()
        self.tail = reached_t
        self.newest = self.pos
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def obs_at(self, idx: Tensor, partial: bool = False) -> Tensor:
        """The stored observations of the rows ``idx`` (uint8). ``index_select``: on CPU ~10x faster than
        ``obs[idx]`` for uint8 rows (measured: 0.6 vs 6 ms for 256 Atari frames)."""
        return self.obs.index_select(0, idx)

    def sample_rows(self, batch_size: int) -> Tensor:
        return torch.randint(self.size, (batch_size,), device=self.device)

    def next_obs(self, idx: Tensor) -> Tensor:
        """s' of the rows ``idx``: the same env's next row, its episode's final observation, or the tail."""
        # the next rows of every sampled row, then the few exceptions row by row (masked writes of uint8
        # rows are slow on CPU); rows past the newest are not written yet: ``partial`` reads them as they are
        out = self.obs_at((idx + self.n_envs) % self.capacity, partial=True)
        offset = (idx - self.newest) % self.capacity
        newest = offset < self.n_envs
        for j in torch.nonzero(newest).flatten().tolist():
            assert self.tail is not None  # set by every add
            out[j] = self.tail[int(offset[j])]
        for j in torch.nonzero(self.done[idx] & ~newest).flatten().tolist():
            out[j] = self.final[int(idx[j])]
        return out

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement (torch's global RNG); observations uint8."""
        idx = self.sample_rows(batch_size)
        rest, c, b = self.rest[idx], self.cols, batch_size
        actions = rest[:, c["actions"]].reshape(b, *self.action_shape)
        return Transitions(obs=self.obs_at(idx), actions=actions.long() if self.discrete else actions,
                           rewards=rest[:, c["rewards"]], next_obs=self.next_obs(idx), terminated=rest[:, c["terminated"]])

    # -- persistence (checkpoint.save_buffer) -----------------------------------------------------
    def state_dict(self) -> dict:
        rows = sorted(self.final)
        return {"obs": self.obs[: self.size].to("cpu", copy=True), "rest": self.rest[: self.size].to("cpu", copy=True),
                "done": self.done[: self.size].to("cpu", copy=True), "final_rows": rows,
                "final": torch.stack([self.final[r] for r in rows]).cpu() if rows else None,
                "tail": None if self.tail is None else self.tail.to("cpu", copy=True), "n_envs": self.n_envs,
                "newest": self.newest, "pos": self.pos, "size": self.size, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        if "obs" not in state or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError("the saved replay buffer does not hold this env's image observations")
        if state["capacity"] != self.capacity:
            raise ValueError(f"the saved image replay buffer has capacity {state['capacity']}, this run {self.capacity}; "
                             f"resume with the same algo.buffer_size")
        n = state["size"]
        self.obs[:n], self.rest[:n], self.done[:n] = (state[k].to(self.device) for k in ("obs", "rest", "done"))
        self.final = {r: state["final"][i].to(self.device) for i, r in enumerate(state["final_rows"])}
        self.tail = None if state["tail"] is None else state["tail"].to(self.device)
        self.n_envs, self.newest, self.pos, self.size = state["n_envs"], state["newest"], state["pos"], n


class FrameStackReplayBuffer(ImageReplayBuffer):
    """:class:`ImageReplayBuffer` for frame stacks ``(k, *frame)`` (Atari's ``FrameStackObservation``): each
    frame stored once. A row keeps only its observation's newest frame; the older ones are the newest
    frames of the same env's previous rows, back to the episode's first row, whose whole observation is
    kept on the side (``starts``) with the padding the env gave it. Whether an observation continues the
    previous one (its frames 0..k-2 equal the previous observation's 1..k-1) is checked on every add, so
    an env that does not stack frames this way (or EpisodicLife's continued stack after a lost life) is
    stored exactly too, as a new start. Atari: 7,070 bytes per transition (84x84 + action, reward,
    terminated + done and position bytes): 1M transitions take 7.1 GB. Sampling skips the oldest k-1
    steps of a full buffer, whose older frames are already overwritten."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, device: torch.device):
        self.k = int(obs_shape[0])
        super().__init__(capacity, (1, *obs_shape[1:]), action_shape, discrete, device)
        self.obs_shape = tuple(obs_shape)
        self.frames = self.obs.squeeze(1)  # [capacity, H, W]: each row's newest frame
        self.t = torch.zeros(capacity, dtype=torch.uint8, device=device)  # steps since the start row, capped at k-1
        self.starts: dict[int, Tensor] = {}  # row -> its whole observation, for rows that start a stack
        self.prev: np.ndarray | None = None  # the last add's observations and done flags, t
        self.prev_done: np.ndarray | None = None
        self.prev_t: np.ndarray | None = None

    @property
    def bytes_per_transition(self) -> int:
        return int(np.prod(self.obs_shape[1:])) + self.rest.shape[1] * 4 + 2

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        n = obs.shape[0]
        obs = np.asarray(obs, dtype=np.uint8)
        t = np.zeros(n, dtype=np.int64)
        prev, prev_done, prev_t = self.prev, self.prev_done, self.prev_t
        if prev is not None and prev.shape[0] == n:
            assert prev_done is not None and prev_t is not None  # set together with prev
            for i in range(n):
                if not prev_done[i] and np.array_equal(obs[i, :-1], prev[i, 1:]):
                    t[i] = min(prev_t[i] + 1, self.k - 1)
        rows = (self.pos + np.arange(n)) % self.capacity
        for r in rows.tolist():
            self.starts.pop(r, None)
        super().add(obs[:, -1:], actions, next_obs, rewards, terminated, truncated, info)
        idx = torch.from_numpy(rows).to(self.device)
        self.t[idx] = torch.from_numpy(t.astype(np.uint8)).to(self.device)
        for s in np.flatnonzero(t == 0):
            self.starts[int(rows[s])] = torch.from_numpy(obs[s].copy()).to(self.device)
        self.prev, self.prev_done, self.prev_t = obs.copy(), np.asarray(terminated | truncated).copy(), t

    def obs_at(self, idx: Tensor, partial: bool = False) -> Tensor:
        t = self.t[idx].long()
        lags = torch.arange(self.k - 1, -1, -1, device=self.device) * self.n_envs
        rows = (idx[:, None] - lags[None, :]) % self.capacity  # [B, k]: frame j of row r is row r - (k-1-j) n's
        out = self.frames.index_select(0, rows.reshape(-1)).reshape(idx.shape[0], *self.obs_shape)
        # frames from before the start row: the start row's own (padded) observation, shifted
        for b in torch.nonzero(t < self.k - 1).flatten().tolist():
            tb, r = int(t[b]), int(idx[b])
            start = self.starts.get((r - tb * self.n_envs) % self.capacity)
            if start is None and partial:  # a row not written yet (the caller replaces it)
                continue
            assert start is not None  # every stack's start row is kept
            out[b, : self.k - tb] = start[tb:]
        return out

    def sample_rows(self, batch_size: int) -> Tensor:
        if self.size < self.capacity:
            return torch.randint(self.size, (batch_size,), device=self.device)
        skip = (self.k - 1) * self.n_envs  # the oldest rows: their older frames are overwritten
        return (self.pos + skip + torch.randint(self.size - skip, (batch_size,), device=self.device)) % self.capacity

    def state_dict(self) -> dict:
        state = super().state_dict()
        rows = sorted(self.starts)
        state.update(frame_stack=self.k, t=self.t[: self.size].to("cpu", copy=True), start_rows=rows,
                     starts=torch.stack([self.starts[r] for r in rows]).cpu() if rows else None,
                     prev=None if self.prev is None else self.prev.copy(),
                     prev_done=None if self.prev_done is None else self.prev_done.copy(),
                     prev_t=None if self.prev_t is None else self.prev_t.copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("frame_stack") != self.k:
            raise ValueError("the saved replay buffer does not hold this env's frame stacks")
        super().load_state_dict(state)
        self.t[: state["size"]] = state["t"].to(self.device)
        self.starts = {r: state["starts"][i].to(self.device) for i, r in enumerate(state["start_rows"])}
        self.prev, self.prev_done, self.prev_t = state["prev"], state["prev_done"], state["prev_t"]


def frame_stack_size(env_config: dict, observation_space) -> int | None:
    """k when the env's last ``env.wrappers`` entry is gymnasium's FrameStackObservation and the
    observations are uint8/bool stacks of k frames (Atari: (4, 84, 84)); None otherwise."""
    from rlx.networks.encoders import stores_as_uint8

    wrappers = (env_config or {}).get("wrappers") or []
    if not wrappers or not stores_as_uint8(observation_space) or len(observation_space.shape) < 2:
        return None
    last = wrappers[-1] if isinstance(wrappers[-1], dict) else {}
    if not str(last.get("_target_", "")).endswith("FrameStackObservation"):
        return None
    k = last.get("stack_size")
    return int(k) if k == observation_space.shape[0] and k > 1 else None


def make_replay_buffer(capacity: int, observation_space, action_shape: tuple[int, ...], discrete: bool,
                       device: torch.device, frame_stack: int | None = None,
                       members: int = 1) -> ReplayBuffer | ImageReplayBuffer:
    """:class:`DictReplayBuffer` for Dict observations with image keys (a packed Dict of float keys only is a
    float vector: the flat buffer), :class:`FrameStackReplayBuffer` for frame stacks (``frame_stack``: their
    size k), :class:`ImageReplayBuffer` for other uint8/bool observations (images), the flat float buffer otherwise. ``members`` > 1: a
    population's :class:`MemberReplayBuffer` (``capacity`` per member; vector observations only)."""
    from rlx.errors import UserError
    from rlx.networks.encoders import stores_as_uint8

    shape = tuple(observation_space.shape)
    layout = dict_layout(observation_space)
    if layout is not None and members == 1 and any(k.uint8 for k in layout.keys):  # K > 1: refused by check_member_observations
        return DictReplayBuffer(capacity, layout, action_shape, discrete, device)
    if members > 1:
        if stores_as_uint8(observation_space):
            raise UserError(f"a population of {members} members on image observations is not supported yet "
                            "(its replay buffer is vector-only); train image tasks as separate runs")
        return MemberReplayBuffer(capacity, shape, action_shape, discrete, device, members)
    if frame_stack and stores_as_uint8(observation_space) and len(shape) >= 2 and shape[0] == frame_stack:
        return FrameStackReplayBuffer(capacity, shape, action_shape, discrete, device)
    cls = ImageReplayBuffer if stores_as_uint8(observation_space) else ReplayBuffer
    return cls(capacity, shape, action_shape, discrete, device)

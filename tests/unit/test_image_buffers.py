"""uint8 image storage: rollout and replay buffers, bytes per transition, s' reconstructed instead of stored."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.buffers.replay import ImageReplayBuffer, ReplayBuffer, make_replay_buffer
from rlx.buffers.rollout import RolloutBuffer

CPU = torch.device("cpu")
ATARI = (4, 84, 84)


def test_rollout_buffer_stores_images_as_uint8():
    buf = RolloutBuffer(4, 2, ATARI, (), torch.long, CPU, obs_dtype=torch.uint8)
    frames = np.random.default_rng(0).integers(0, 256, (4, 2, *ATARI), dtype=np.uint8)
    for t in range(4):
        buf.add(frames[t], torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2), np.ones(2), np.zeros(2), np.zeros(2))
    rollout = buf.finish(torch.zeros(2))
    assert rollout.obs.dtype == torch.uint8 and buf.staged["obs"].dtype == np.uint8
    assert rollout.obs.element_size() * rollout.obs[0, 0].numel() == 4 * 84 * 84  # 1 byte per pixel
    assert torch.equal(rollout.obs, torch.from_numpy(frames))


def test_atari_replay_bytes_per_transition():
    """Each Atari observation stored once as uint8 + action, reward, terminated (float32) + done flag:
    28,237 bytes per transition, vs 225,804 for the float32 buffer that stores s and s'."""
    buf = make_replay_buffer(1000, gym.spaces.Box(0, 255, ATARI, np.uint8), (), True, CPU)
    assert isinstance(buf, ImageReplayBuffer)
    assert buf.bytes_per_transition == 4 * 84 * 84 + 3 * 4 + 1 == 28_237
    assert buf.obs.dtype == torch.uint8 and buf.obs.shape == (1000, *ATARI)
    per_row = buf.obs[0].numel() * buf.obs.element_size() + buf.rest[0].numel() * buf.rest.element_size() + 1
    assert per_row == buf.bytes_per_transition
    flat = ReplayBuffer(10, ATARI, (), True, CPU)
    assert flat.data.shape[1] * 4 == 225_804  # (2 x 28,224 + 3) float32
    # vector observations keep the flat float buffer
    assert isinstance(make_replay_buffer(10, gym.spaces.Box(-1, 1, (3,), np.float32), (), True, CPU), ReplayBuffer)


class _Counter(gym.Env):
    """Observation = the (episode, step) counter painted into a tiny uint8 image; episodes of random length."""

    observation_space = gym.spaces.Box(0, 255, (2, 3, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.episode, self.t = 0, 0

    def _obs(self):
        o = np.zeros((2, 3, 3), np.uint8)
        o[0], o[1] = self.episode % 256, self.t
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        end = self.rng.random() < 0.15
        return self._obs(), float(self.t), end and self.rng.random() < 0.5, end, {}


@pytest.mark.parametrize("capacity", [50, 1000])  # wrapping around many times, and not at all
def test_image_replay_next_obs_equals_the_flat_buffer_that_stores_it(capacity):
    """s' reconstructed from the next row / the episode's final observation / the newest step equals
    the s' that the flat buffer stores explicitly, for every stored transition, across episode ends
    (terminated and truncated) and ring wrap-around; a state_dict round trip keeps it so."""
    envs = gym.vector.SyncVectorEnv([_Counter] * 3, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    img = ImageReplayBuffer(capacity, (2, 3, 3), (), True, CPU)
    flat = ReplayBuffer(capacity, (2, 3, 3), (), True, CPU)
    obs, _ = envs.reset(seed=1)
    dones = 0
    for _ in range(200):
        actions = envs.action_space.sample()
        next_obs, r, term, trunc, info = envs.step(actions)
        for b in (img, flat):
            b.add(obs, actions, next_obs, r, term, trunc, info)
        dones += int((term | trunc).sum())
        obs = next_obs
    assert dones > 20 and len(img) == len(flat) == min(capacity, 600)

    def check(buf):
        idx = torch.arange(len(flat))
        rows = flat.data[idx]
        c = flat.cols
        assert torch.equal(buf.obs[idx].float().flatten(1), rows[:, c["obs"]])
        assert torch.equal(buf.next_obs(idx).float().flatten(1), rows[:, c["next_obs"]])
        assert torch.equal(buf.rest[idx, 1], rows[:, c["rewards"]])
        assert torch.equal(buf.rest[idx, 2], rows[:, c["terminated"]])

    check(img)
    assert len(img.final) <= capacity  # final observations of overwritten rows are dropped
    restored = ImageReplayBuffer(capacity, (2, 3, 3), (), True, CPU)
    restored.load_state_dict(img.state_dict())
    check(restored)
    torch.manual_seed(0)
    a = img.sample(64)
    torch.manual_seed(0)
    b = restored.sample(64)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) and a.obs.dtype == torch.uint8 and a.next_obs.dtype == torch.uint8


def test_bool_observations_are_stored_as_uint8():
    """MinAtar's 0/1 channels (a bool Box) take 1 byte each, not 4."""
    space = gym.spaces.Box(0, 1, (4, 10, 10), bool)
    buf = make_replay_buffer(8, space, (), True, CPU)
    o = np.stack([space.sample(), space.sample()])
    buf.add(o, np.array([0, 1]), o, np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), {})
    assert buf.obs.dtype == torch.uint8 and torch.equal(buf.obs[:2], torch.from_numpy(o.astype(np.uint8)))


@pytest.mark.parametrize("capacity, padding", [(50, "reset"), (1000, "reset"), (1000, "zero")])
def test_frame_stack_buffer_stores_each_frame_once_and_rebuilds_every_observation(capacity, padding):
    """FrameStackObservation over the counter env (episodes of random length): every sampleable row's s and
    s' rebuilt from single frames equal what the flat buffer stores; wrap-around, both paddings, and a
    state_dict round trip; an observation that does not continue the stack is stored whole."""
    from rlx.buffers.replay import FrameStackReplayBuffer

    k = 3
    def make():
        return gym.wrappers.FrameStackObservation(_Counter(), k, padding_type=padding)
    envs = gym.vector.SyncVectorEnv([make] * 3, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    space = envs.single_observation_space
    buf = make_replay_buffer(capacity, space, (), True, CPU, frame_stack=k)
    assert isinstance(buf, FrameStackReplayBuffer) and buf.frames.shape == (capacity, 2, 3, 3)
    flat = ReplayBuffer(capacity, space.shape, (), True, CPU)
    obs, _ = envs.reset(seed=2)
    for step in range(200):
        actions = envs.action_space.sample()
        next_obs, r, term, trunc, info = envs.step(actions)
        if step == 120:  # the env returns an observation that breaks the stack (as EpisodicLife's can)
            next_obs = next_obs.copy()
            next_obs[1, 0] = 77
        buf.add(obs, actions, next_obs, r, term, trunc, info)
        flat.add(obs, actions, next_obs, r, term, trunc, info)
        obs = next_obs

    def check(b):
        skip = (k - 1) * 3 if len(flat) == capacity else 0
        idx = (torch.arange(skip, len(flat)) + (flat.pos if len(flat) == capacity else 0)) % capacity
        rows, c = flat.data[idx], flat.cols
        assert torch.equal(b.obs_at(idx).float().flatten(1), rows[:, c["obs"]])
        assert torch.equal(b.next_obs(idx).float().flatten(1), rows[:, c["next_obs"]])

    check(buf)
    assert len(buf.starts) < len(buf) / 2  # only episode starts (and the broken stack) are stored whole
    again = FrameStackReplayBuffer(capacity, space.shape, (), True, CPU)
    again.load_state_dict(buf.state_dict())
    check(again)
    batch = buf.sample(256)
    assert batch.obs.shape == (256, k, 2, 3, 3) and batch.obs.dtype == torch.uint8


def test_atari_frame_stack_bytes_and_1m_fits_24gb():
    from rlx.buffers.replay import frame_stack_size

    space = gym.spaces.Box(0, 255, ATARI, np.uint8)
    wrappers = [{"_target_": "gymnasium.wrappers.AtariPreprocessing"},
                {"_target_": "gymnasium.wrappers.FrameStackObservation", "stack_size": 4}]
    assert frame_stack_size({"wrappers": wrappers}, space) == 4
    assert frame_stack_size({"wrappers": wrappers[:1]}, space) is None
    buf = make_replay_buffer(1000, space, (), True, CPU, frame_stack=4)
    assert buf.bytes_per_transition == 84 * 84 + 3 * 4 + 2 == 7_070
    per_row = (buf.frames[0].numel() + buf.rest[0].numel() * 4 + 1 + 1)
    assert per_row == buf.bytes_per_transition
    assert buf.bytes_per_transition * 1_000_000 < 24e9 / 3  # 7.1 GB: 1M Atari transitions fit a 24 GB machine

"""Environments: construction from a gymnasium id or ``module:Class`` (``make``: the env spec, vector envs,
wrappers, episode bookkeeping, reward normalization), rlx's batched NumPy ports of classic control
(``batched``), tested step for step against gymnasium's, and RL-Zoo's velocity-masked NoVel tasks (``novel``:
importing this package registers ``CartPoleNoVel-v1``, ``PendulumNoVel-v1``, ``MountainCarNoVel-v0`` and
``MountainCarContinuousNoVel-v0``), and a goal-conditioned point mass with a Dict observation (``goal``:
``PointGoal-v0``).

May import: ``networks`` (which observations an encoder stores as uint8), ``config``, ``errors``.

``rlx.envs.ChannelsFirst``, ``rlx.envs.EpisodicLife`` and ``rlx.envs.MaskVelocity`` stay importable here:
configs (shipped ones and users' own, and the config.yaml of every earlier run) name them as
``_target_: rlx.envs.<Wrapper>``."""
from rlx.envs import goal as goal  # registers PointGoal-v0
from rlx.envs.make import ChannelsFirst, EpisodicLife
from rlx.envs.novel import MaskVelocity

__all__ = ["ChannelsFirst", "EpisodicLife", "MaskVelocity"]

"""Environments: construction from a gymnasium id or ``module:Class`` (``make``: the env spec, vector envs,
wrappers, episode bookkeeping, reward normalization) and rlx's batched NumPy ports of classic control
(``batched``), tested step for step against gymnasium's.

May import: ``networks`` (which observations an encoder stores as uint8), ``config``, ``errors``.

``rlx.envs.ChannelsFirst`` and ``rlx.envs.EpisodicLife`` stay importable here: configs (shipped ones and
users' own, and the config.yaml of every earlier run) name them as ``_target_: rlx.envs.<Wrapper>``."""
from rlx.envs.make import ChannelsFirst, EpisodicLife

__all__ = ["ChannelsFirst", "EpisodicLife"]

"""rlx's Hydra config tree (shipped with the package) and the OmegaConf resolvers its YAML uses."""
from __future__ import annotations

import re

from omegaconf import OmegaConf


def path_slug(value: str) -> str:
    """A config value made safe as one path component: ``ALE/Pong-v5`` -> ``ALE-Pong-v5``, ``pkg.mod:Env`` -> ``pkg.mod-Env``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(value)).strip("-") or "env"


def register_resolvers() -> None:
    """``${rlx_slug:...}`` (used by ``hydra.run.dir``); safe to call more than once."""
    if not OmegaConf.has_resolver("rlx_slug"):
        OmegaConf.register_new_resolver("rlx_slug", path_slug)


register_resolvers()

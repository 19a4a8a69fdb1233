"""Hydra's handle on :mod:`rlx.app.launchers.ray_cluster` (Hydra loads launchers only from ``hydra_plugins``
and registers a plugin under the module that defines it, hence a subclass here, not a re-export)."""
from rlx.app.launchers.ray_cluster import RayClusterLauncher as _RayClusterLauncher


class RayClusterLauncher(_RayClusterLauncher):
    """``hydra/launcher=ray_cluster``: see :class:`rlx.app.launchers.ray_cluster.RayClusterLauncher`."""

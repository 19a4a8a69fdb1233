"""Hydra's handle on :mod:`rlx.app.launchers.population` (Hydra loads launchers only from ``hydra_plugins``
and registers a plugin under the module that defines it, hence a subclass here, not a re-export)."""
from rlx.app.launchers.population import PopulationLauncher as _PopulationLauncher


class PopulationLauncher(_PopulationLauncher):
    """``hydra/launcher=population``: see :class:`rlx.app.launchers.population.PopulationLauncher`."""

"""Hydra's handle on the user's config dir: ``$RLX_CONFIG_DIR``, else ``./conf``, put first on Hydra's search
path when it exists, so ``conf/algo/my_ppo.yaml`` is ``algo=my_ppo`` and ``conf/env/cartpole.yaml`` replaces
rlx's. Hydra applies search path plugins to every composition: ``@hydra.main`` (``rlx train``, ``rlx sweep``)
and ``initialize_config_module`` (:func:`rlx.config.compose.compose_config`, hence rlx's validation). Which
dir, and its checks, are :mod:`rlx.config.compose`'s (imports Hydra and OmegaConf only: no torch)."""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from rlx.config.compose import USER_PROVIDER, user_search_dir


class RlxUserConfigSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        path = user_search_dir()  # None when absent: rlx's own composition reports a missing $RLX_CONFIG_DIR
        if path is not None:
            search_path.prepend(provider=USER_PROVIDER, path=f"file://{path}")

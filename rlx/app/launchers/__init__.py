"""rlx's Hydra launchers: ``population`` (sweep jobs that differ only in per-member keys trained as one
process) and ``ray_cluster`` (one Ray task per job). Hydra loads launchers only from the ``hydra_plugins``
namespace, so ``hydra_plugins/rlx_*_launcher`` hold one-line subclasses of these; nothing in ``rlx`` imports
``hydra_plugins``."""

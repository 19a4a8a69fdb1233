"""Typed configuration: the ``param`` fields and dataclass builder every config node uses (``typed``)
and the dataclasses of the run-level groups (``schema``). The Hydra YAML tree itself is ``rlx/conf``.

May import: ``errors`` only: every other layer reads its settings from here."""

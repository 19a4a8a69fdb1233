"""The application: the ``rlx`` command line (``cli``), the Hydra entry and launch settings, validation
of overrides before anything runs, sweeps, ``rlx tune``, and the Hydra launchers whose thin shims live in
``hydra_plugins/``.

May import every layer below it (``train``, ``analysis``, ``demos``, ``algos``, ``rundir``, ``config``, ...);
nothing in ``rlx`` imports ``app`` (only ``hydra_plugins/`` and the ``rlx`` console script do)."""

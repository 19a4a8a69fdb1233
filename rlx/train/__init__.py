"""The training engine: the driver (``run``: settings -> algorithm, envs, session -> loop -> summary),
populations (``population``), the session every loop reports to (``session``), evaluation and the loops
(``loops/``: on-policy, off-policy, A3C's processes and Ray actors).

May import: ``algos``, ``rundir``, ``envs``, ``buffers``, ``networks``, ``members``, ``config``, ``errors``.
Never ``app`` (the commands above it) or ``analysis``."""

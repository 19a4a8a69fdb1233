"""What lives in a run dir and how it is written safely: the lock and fresh-dir claim (``lock``), atomic
checkpoints (``checkpoint``), and the logging sinks (``logging``: metrics.jsonl, console progress, W&B;
``tensorboard``).

May import: ``config``, ``errors`` (and the package version). Never the engine (``train``, ``algos``)."""

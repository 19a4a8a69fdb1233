"""Reading finished (or running) run dirs: statistics (IQM, bootstrap CIs), sweep reports (``report``)
and learning-curve plots (``plot``).

May import: ``errors`` only: it reads files a run wrote (config.yaml, metrics.jsonl, summary.json), never
the engine that wrote them."""

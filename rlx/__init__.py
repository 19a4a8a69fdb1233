"""rlx: config-driven deep RL experiments from one CLI."""
__version__ = "0.1.0"

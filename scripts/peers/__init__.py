"""rlx's peers (Stable-Baselines3, SBX, rejax), each in its own venv: ``scripts/bench.py --peers``."""

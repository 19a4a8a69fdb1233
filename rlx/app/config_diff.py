"""``rlx config diff A B``: the resolved config values two runs differ in."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlx.errors import UserError


def config_diff(run_a: str | Path, run_b: str | Path) -> list[tuple[str, Any, Any]]:
    """(key, value in A, value in B) for every resolved config value that differs."""

    def flat(run: str | Path) -> dict[str, Any]:
        path = Path(run) / "config.yaml"
        if not Path(run).is_dir() or not path.is_file():
            what = "no such path" if not Path(run).exists() else "not a run dir" if Path(run).is_dir() else "a file"
            raise UserError(f"{run}: {what}; expected a run dir (a directory with config.yaml)")
        try:
            loaded = OmegaConf.to_container(OmegaConf.load(path))
        except Exception as e:
            raise UserError(f"{path}: not a readable config ({type(e).__name__})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: not a run config (expected a mapping)")
        out: dict[str, Any] = {}

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, dict) and node:
                for k, v in node.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))
            else:
                out[prefix] = node

        walk(loaded, "")
        return out

    a, b = flat(run_a), flat(run_b)
    missing = "<absent>"
    return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]

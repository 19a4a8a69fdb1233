"""The tree's layers (issue 23): each package of rlx imports only the layers below it, no module imports
another module's private (``_name``) names, and nothing in rlx imports ``hydra_plugins`` (thin shims over
``rlx.app``). Function-level imports count as much as top-level ones."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top: a layer may import itself and anything listed before it.
LAYERS = ["rlx", "errors", "conf", "config", "objectives", "networks", "optim", "envs", "buffers", "members", "algos",
          "rundir", "train", "analysis", "demos", "app"]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rlx"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
    return out


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


SOURCES = sorted((ROOT / "rlx").rglob("*.py"))


def test_every_package_of_rlx_has_a_layer():
    packages = {_layer(_module_name(p)) for p in SOURCES}
    assert packages <= set(LAYERS), f"packages without a place in LAYERS: {packages - set(LAYERS)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layer_order(path):
    here = _module_name(path)
    rank = LAYERS.index(_layer(here))
    upward = [f"line {line}: {module}" for line, module, names in _imports(path)
              if module.split(".")[0] == "rlx" and LAYERS.index(_layer(module)) > rank
              and not (module == "rlx" and names == ["__version__"])]
    assert not upward, f"{here} ({_layer(here)}) imports layers above it: {upward}"


@pytest.mark.parametrize("path", SOURCES + sorted((ROOT / "hydra_plugins").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_across_modules_and_no_hydra_plugins_in_rlx(path):
    here = _module_name(path)
    for line, module, names in _imports(path):
        if here.startswith("rlx"):
            assert module.split(".")[0] != "hydra_plugins", f"{here} line {line} imports {module}: rlx never imports the shims"
        if module.split(".")[0] == "rlx" and module != here:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{here} line {line} imports private names {private} from {module}"


def test_the_checker_sees_a_violation(tmp_path):
    """The checks above can fail: an upward import and a private import are found in a file that has them."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from rlx.app.cli import main\n    from rlx.train.run import _private\n")
    found = _imports(bad)
    assert [(m, n) for _, m, n in found] == [("rlx.app.cli", ["main"]), ("rlx.train.run", ["_private"])]
    assert LAYERS.index(_layer("rlx.app.cli")) > LAYERS.index(_layer("rlx.networks.mlp"))

"""docs/notes.md, the map from the lecture notes to the code, stays true: every `path::name` it cites
exists (a top-level function or class, or ``Class.member`` for a method), and every table row names
the rlx code and the test that checks it."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "docs" / "notes.md"
REF = re.compile(r"`([\w./-]+\.py)::([\w.]+)`")
MIN_ROWS = 77  # the rows written when the map was made; add rows, do not drop them silently

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def notes_text() -> str:
    return NOTES.read_text(encoding="utf-8")


@cache
def definitions(path: str) -> frozenset[str]:
    """Top-level defs of a Python file, and ``Class.member`` for the defs in each top-level class body."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, _DEFS):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(f"{node.name}.{member.name}" for member in node.body if isinstance(member, _DEFS))
    return frozenset(names)


def test_every_cited_function_and_test_exists():
    refs = sorted(set(REF.findall(notes_text())))
    assert refs, "docs/notes.md cites no `path::name`"
    missing = []
    for path, name in refs:
        if not (ROOT / path).is_file():
            missing.append(f"{path}::{name} (no such file)")
        elif name not in definitions(path):
            missing.append(f"{path}::{name} (not defined there)")
    assert not missing, "docs/notes.md cites what does not exist:\n" + "\n".join(missing)


def test_every_row_names_the_code_and_its_test():
    rows = [line for line in notes_text().splitlines() if line.startswith("|") and REF.search(line)]
    assert len(rows) >= MIN_ROWS, f"docs/notes.md has {len(rows)} rows, expected at least {MIN_ROWS}"
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 4, f"not 4 cells (a stray '|' in a formula?): {row}"
        code, test = REF.findall(cells[2]), REF.findall(cells[3])
        assert code and all(not path.startswith("tests/") for path, _ in code), f"no rlx code cited: {row}"
        assert test and all(path.startswith("tests/") and name.split(".")[-1].startswith("test_") for path, name in test), (
            f"no test cited: {row}")

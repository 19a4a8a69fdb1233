"""Terminal tables of `rlx report` and `rlx plot --table` that stay readable in a narrow console.

No cell ever wraps (a wrapped error text is one word per line): every column gets a width, a cell longer
than its column ends in "…", and a table wider than the console gives way in a fixed order: long text
(errors) is cut first, then optional columns are left out (steps/s, then the mean, ...), then config
values are cut, then the text columns go (the caller prints them below the table); what fits again then
comes back (optional columns, then the config values' width, then text). Too many config keys even so:
the rows are numbered and spelled out in a legend below the table. Numbers are never cut. Headers
break at spaces, dotted config keys after their dots (``algo.`` / ``clip_eps``), so a long key does not
widen a column of short values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

__all__ = ["Col", "fit_table", "column_widths"]

SEPARATOR = 3  # " │ " between two columns (no outer edge, no edge padding)
TEXT_MIN = 16  # a text column is cut to this before optional columns are left out
KEY_MIN = 6  # a config value is cut to this, at the last resort


@dataclass(frozen=True)
class Col:
    header: str
    justify: Literal["left", "right"] = "right"
    kind: Literal["fixed", "key", "text"] = "fixed"  # fixed: never cut; key: a config value; text: cut first
    drop: int = 0  # > 0: may be left out when the table does not fit, the lowest first


def _cell_len(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def _header_words(col: Col) -> list[str]:
    if col.kind == "key":  # break after the dots: "algo." "clip_eps"
        parts = col.header.split(".")
        return [p + "." for p in parts[:-1]] + parts[-1:]
    return col.header.split(" ")


def _wrap_header(col: Col, width: int) -> str:
    joiner = "" if col.kind == "key" else " "
    lines: list[str] = []
    for word in _header_words(col):
        if lines and _cell_len(lines[-1] + joiner + word) <= width:
            lines[-1] += joiner + word
        else:
            lines.append(word)
    return "\n".join(lines)


def column_widths(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[int | None]:
    """Each column's width, None for a column left out; see the module docstring for the order of cuts."""
    natural = []
    for i, col in enumerate(cols):
        cells = [_cell_len(row[i]) for row in rows]
        natural.append(max([*cells, *(_cell_len(w) for w in _header_words(col)), 1]))
    widths: list[int | None] = list(natural)

    def total() -> int:
        return _total(widths)

    if total() <= width:
        return widths
    for i, col in enumerate(cols):  # long text first
        if col.kind == "text":
            widths[i] = min(natural[i], TEXT_MIN)
    dropped = []
    for i in sorted((i for i, c in enumerate(cols) if c.drop > 0), key=lambda i: cols[i].drop):
        if total() <= width:
            break
        widths[i] = None
        dropped.append(i)
    for i in sorted(range(len(cols)), key=lambda i: -natural[i]):  # then config values, the widest first
        w = widths[i]
        if cols[i].kind == "key" and w is not None and total() > width:
            widths[i] = max(min(KEY_MIN, natural[i]), w - (total() - width))
    for i, col in enumerate(cols):  # then the text columns go
        if col.kind == "text" and total() > width:
            widths[i] = None
    for i in reversed(dropped):  # what the cuts left room for comes back
        widths[i] = natural[i]
        if total() > width:
            widths[i] = None
    for kind in ("key", "text"):  # and config values, then text, take the room that is left
        for i, col in enumerate(cols):
            w = widths[i]
            if col.kind == kind and w is not None:
                widths[i] = min(natural[i], w + max(0, width - total()))
    return widths


def _total(widths: Sequence[int | None]) -> int:
    shown = [w for w in widths if w is not None]
    return sum(shown) + SEPARATOR * (len(shown) - 1)


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, title: str | None = None,
              styles: Sequence[str | None] | None = None) -> tuple[Any, list[Col], list[str]]:
    """A rich Table of ``rows`` (plain text, not markup) no wider than ``width`` when it can be (see above),
    the columns it shows, and legend lines to print below it: when the config values do not fit even cut
    (many keys), the table numbers its rows (``#``) and the legend spells each configuration out
    (``#1: algo=sac, env=pendulum``)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    widths = column_widths(cols, rows, width)
    keys = [i for i, c in enumerate(cols) if c.kind == "key"]
    legend: list[str] = []
    if keys and _total(widths) > width:
        legend = [f"#{j + 1}: " + ", ".join(f"{cols[i].header}={row[i]}" for i in keys if row[i] != "")
                  for j, row in enumerate(rows)]
        numbered: list[Col] = []
        cells: list[list[str]] = [[] for _ in rows]
        for i, col in enumerate(cols):  # the key columns become one "#" column where the first of them was
            if col.kind == "key" and i != keys[0]:
                continue
            numbered.append(Col("#") if col.kind == "key" else col)
            for j, row in enumerate(rows):
                cells[j].append(str(j + 1) if col.kind == "key" else row[i])
        cols, rows = numbered, cells
        widths = column_widths(cols, rows, width)
    shown = [i for i, w in enumerate(widths) if w is not None]
    table = Table(title=escape(title) if title else None, box=box.HEAVY_HEAD, show_edge=False, pad_edge=False)
    for i in shown:
        w = widths[i]
        assert w is not None
        table.add_column(escape(_wrap_header(cols[i], w)), justify=cols[i].justify, width=w, no_wrap=True,
                         overflow="ellipsis")
    for j, row in enumerate(rows):
        table.add_row(*(escape(row[i]) for i in shown), style=styles[j] if styles else None)
    return table, [cols[i] for i in shown], legend

"""Typed hyperparameters: dataclasses whose fields carry their allowed range.

Hydra composes YAML into a DictConfig; :func:`build` turns one config node into the typed dataclass an
algorithm (or the run) takes, rejecting unknown keys (with the nearest valid name), wrong types and
out-of-range values with one-line :class:`UserError` messages.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, TypeVar, cast, get_args, get_origin

from rlx.errors import UserError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from omegaconf import DictConfig

T = TypeVar("T", bound="DataclassInstance")  # build() takes dataclasses
# Open recordings of :func:`build`'s whole floats taken as ints: dotted key -> the int value (see whole_ints_in)
_WHOLE_FLOATS: list[dict[str, Any]] = []


def as_dict(cfg: DictConfig | Mapping[str, Any], *, resolve: bool = False) -> dict[str, Any]:
    """A config as a plain dict: a DictConfig through ``OmegaConf.to_container`` (``resolve``: interpolations
    resolved), a mapping as a shallow copy. The one place for to_container, typed as returning any container
    (dict | list | str | None): a DictConfig always gives a dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return cast("dict[str, Any]", OmegaConf.to_container(cfg, resolve=resolve))
    return dict(cfg)


def param(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          lt: float | None = None, help: str = "") -> Any:
    """A dataclass field with an allowed range: ``gamma: float = param(0.99, gt=0, le=1)``."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _range_text(meta: Mapping[str, Any]) -> str:
    lo = f"({meta['gt']}" if meta.get("gt") is not None else f"[{meta['ge']}" if meta.get("ge") is not None else "(-inf"
    hi = f"{meta['lt']})" if meta.get("lt") is not None else f"{meta['le']}]" if meta.get("le") is not None else "inf)"
    return f"{lo}, {hi}"


def _in_range(x: float, meta: Mapping[str, Any]) -> bool:
    return not (
        (meta.get("ge") is not None and x < meta["ge"])
        or (meta.get("gt") is not None and x <= meta["gt"])
        or (meta.get("le") is not None and x > meta["le"])
        or (meta.get("lt") is not None and x >= meta["lt"])
    )


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        return f"list of {_type_name(get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, converted). Ints are accepted for floats, whole floats (1e4) for ints; bools are never numbers."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is Literal:
        return value in get_args(tp), value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            return False, value
        (elem,) = get_args(tp)[:1]
        items = [_coerce(v, elem) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if isinstance(value, (int, float)) else value
    if tp is int:  # a whole float (total_steps=1e4 parses as 10000.0) is that int
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    if tp is Any:
        return True, value
    return isinstance(value, tp), value


def build(cls: type[T], values: Mapping[str, Any], prefix: str) -> T:
    """Validate ``values`` against dataclass ``cls`` and instantiate it. ``prefix`` names the config node."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = (f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close
                    else f"valid keys: {', '.join(sorted(fields))}")
            raise UserError(f"unknown key '{full}': {hint}")
        field = fields[key]
        ok, converted = _coerce(value, hints[key])
        if not ok:
            raise UserError(f"{full}={value!r}: expected {_type_name(hints[key])}")
        nums = converted if isinstance(converted, list) else [converted]
        for x in nums:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                if isinstance(x, float) and math.isnan(x):
                    raise UserError(f"{full}={value!r}: must be a number in {_range_text(field.metadata)}")
                if not _in_range(x, field.metadata):
                    raise UserError(f"{full}={value!r}: out of range, allowed {_range_text(field.metadata)}")
        if _WHOLE_FLOATS and _float_to_int(value, converted):
            for found in _WHOLE_FLOATS:
                found[full] = converted
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as e:
        raise UserError(f"{prefix}: {e}") from None



def _float_to_int(value: Any, converted: Any) -> bool:
    """Whether :func:`_coerce` turned a float of ``value`` (or of its items) into an int."""
    if isinstance(value, float):
        return isinstance(converted, int)
    if isinstance(value, (list, tuple)) and isinstance(converted, list):
        return any(_float_to_int(v, c) for v, c in zip(value, converted, strict=False))
    return False


@contextlib.contextmanager
def _recording() -> Iterator[dict[str, Any]]:
    found: dict[str, Any] = {}
    _WHOLE_FLOATS.append(found)
    try:
        yield found
    finally:
        _WHOLE_FLOATS.remove(found)


def whole_ints_in(cfg: DictConfig, parse: Callable[[DictConfig], Any]) -> None:
    """Write the ints that whole floats stand for (``total_steps=1e4`` composes as 10000.0) back into ``cfg``,
    wherever ``parse`` (a builder of typed nodes with :func:`build`) took one for an int field, so that code
    reading the config itself (a run's config.yaml, worker processes) sees 10000 too. ``parse`` raises what
    it raises."""
    from omegaconf import OmegaConf

    with _recording() as found:
        parse(cfg)
    for key, value in found.items():
        OmegaConf.update(cfg, key, value, merge=False)

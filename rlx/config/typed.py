"""Typed hyperparameters: dataclasses whose fields carry their allowed range.

Hydra composes YAML into a DictConfig; :func:`build` turns one config node into the typed dataclass an
algorithm (or the run) takes, rejecting unknown keys (with the nearest valid name), wrong types and
out-of-range values with one-line :class:`UserError` messages.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import TYPE_CHECKING, Any, Literal, Mapping, TypeVar, cast, get_args, get_origin

from rlx.errors import UserError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from omegaconf import DictConfig

T = TypeVar("T", bound="DataclassInstance")  # build() takes dataclasses


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
    """(ok, converted). Ints are accepted for floats; bools are never numbers."""
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
    if tp is int:
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
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as e:
        raise UserError(f"{prefix}: {e}") from None


"""Filters on encrypted fields: equality made to match ciphertext, everything else refused.

A deterministic field is queryable by equality only: ``{"path": v}``, ``$eq``, ``$in``, ``$ne``
and ``$nin`` become ``$in``/``$nin`` over every envelope ``v`` may be stored as (given by the
caller: ``FieldCrypto``, which knows the keys); ``$exists`` passes; any other operator (a range,
a regex) could not work on ciphertext and is a ``QueryError`` rather than a silent non-match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Sequence

from ..errors import QueryError
from .fieldpaths import Sensitive, norm_path

__all__ = ["match_ciphertext"]

EqualForms = Callable[[Sensitive, Sequence[Any]], list[Any]]


def match_ciphertext(fields: tuple[Sensitive, ...], filt: Mapping[str, Any], forms: EqualForms, prefix: str = "") -> dict[str, Any]:
    """A copy of a stored-form filter whose conditions on ``fields`` match their envelopes."""
    out: dict[str, Any] = {}
    for key, cond in filt.items():
        if key in ("$and", "$or", "$nor"):
            out[key] = [match_ciphertext(fields, sub, forms, prefix) for sub in cond]
            continue
        norm = norm_path(prefix + key)
        out[key] = cond
        for f in fields:
            if f.path == norm:
                out[key] = _condition(f, cond, forms)
            elif f.path.startswith(norm + ".") and isinstance(cond, Mapping):
                if "$elemMatch" in cond and isinstance(cond["$elemMatch"], Mapping):
                    out[key] = {**cond, "$elemMatch": match_ciphertext(fields, cond["$elemMatch"], forms, norm + ".")}
                elif cond and not any(k.startswith("$") for k in cond):
                    raise QueryError(f"match {f.path!r} by its own path: it is encrypted inside {norm!r}")
    return out


def _condition(f: Sensitive, cond: Any, forms: EqualForms) -> Any:
    if isinstance(cond, Mapping):
        out: dict[str, Any] = {}
        for op, arg in cond.items():
            if op == "$exists":
                out[op] = arg
            elif op in ("$eq", "$in", "$ne", "$nin"):
                target = "$in" if op in ("$eq", "$in") else "$nin"
                if target in out:
                    raise QueryError(f"combine at most one of $eq/$in (and one of $ne/$nin) on the encrypted field {f.path!r}")
                out[target] = forms(f, arg if op in ("$in", "$nin") else [arg])
            else:
                raise QueryError(f"operator {op} cannot be used on the encrypted field {f.path!r}; only equality ($eq, $in, $ne, $nin, $exists)")
        return out
    if cond is None:
        return None
    return {"$in": forms(f, [cond])}

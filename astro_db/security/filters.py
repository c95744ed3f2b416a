"""Filters on encrypted fields: equality made to match ciphertext, everything else refused.

A deterministic field is queryable by equality only: ``{"path": v}``, ``$eq``, ``$in``, ``$ne``
and ``$nin`` become ``$in``/``$nin`` over every envelope ``v`` may be stored as (given by the
caller: ``FieldCrypto``, which knows the keys); ``$exists`` passes; any other operator (a range,
a regex) could not work on ciphertext and is a ``QueryError`` rather than a silent non-match.

``SealRule`` is how this reaches every query: a rule of the query walker (``query.walker``) that
seals each filter against the model it is matched against, wherever it is (the call's own, a
``$match`` inside ``$facet``, a ``$lookup`` or ``$unionWith`` pipeline on another model,
``$graphLookup``'s ``restrictSearchWithMatch``, ``$geoNear``'s ``query``), seals update values,
and refuses a regex expression (``$regexMatch``...) whose input is an encrypted field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import QueryError
from ..query.walker import EXPRESSION, FILTER, UPDATE, Node
from .fieldpaths import Sensitive, norm_path

__all__ = ["match_ciphertext", "SealRule"]

# expression operators matching a regex against their input: on an encrypted field, ciphertext
_REGEX_EXPRESSIONS = ("$regexMatch", "$regexFind", "$regexFindAll")
_ROOTS = ("$ROOT.", "$CURRENT.")  # the document itself, spelt as a variable

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
                raise QueryError(
                    f"operator {op} cannot be used on the encrypted field {f.path!r}; only equality ($eq, $in, $ne, $nin, $exists)"
                )
        return out
    if cond is None:
        return None
    return {"$in": forms(f, [cond])}


class SealRule:
    """The query walker's rule for encrypted fields (``crypto``: a ``FieldCrypto``; ``registry``
    resolves a node's model class to its ``ModelInfo``)."""

    __slots__ = ("crypto", "registry")

    def __init__(self, crypto: Any, registry: Any) -> None:
        self.crypto = crypto
        self.registry = registry

    def visit(self, node: Node, value: Any) -> Any:
        kind = node.kind
        if kind == FILTER:
            return self.crypto.seal_filter(self.registry.resolve(node.model), value)
        if kind == UPDATE:
            value.update = self.crypto.seal_update(self.registry.resolve(node.model), value.update)
        elif kind == EXPRESSION and node.key in _REGEX_EXPRESSIONS and isinstance(value, Mapping):
            path = _field_of(value.get("input"))
            if path is not None:
                for f in self.crypto.fields[self.registry.resolve(node.model).name]:
                    if f.path == path or f.path.startswith(path + "."):
                        raise QueryError(f"{node.key} cannot match the encrypted field {f.path!r} (in {node.where}): "
                                         "it holds ciphertext on the server")
        return value



def _field_of(expression: Any) -> str | None:
    """The stored path (list positions left out) an expression names as a field of the
    document (``"$a.b"``, ``"$$ROOT.a.b"``, ``"$$CURRENT.a.b"``); ``None`` for a literal or an
    operator object. Another variable (``"$$this"``) keeps its ``$`` and so names no model path."""
    if not isinstance(expression, str) or not expression.startswith("$"):
        return None
    path = expression[1:]
    for root in _ROOTS:
        if path.startswith(root):
            path = path[len(root):]
    return norm_path(path)

"""Filters on encrypted fields: equality moved to the blind index, everything else refused.

A queryable field is queryable by equality only: ``{"path": v}``, ``$eq``, ``$in``, ``$ne`` and
``$nin`` become ``$in``/``$nin`` on its blind index ``<path>Index`` over the keyed hashes of
``v`` under every configured key (``security.blind``, given by the caller: ``FieldCrypto``, which
knows the keys; without a blind index, over every envelope ``v`` may be stored as); ``$exists``
stays on the field; any other operator (a range, a regex) could not work on ciphertext and is a
``QueryError`` rather than a silent non-match.

``SealRule`` is how this reaches every query: a rule of the query walker (``query.walker``) that
seals each filter against the model it is matched against, wherever it is (the call's own, a
``$match`` inside ``$facet``, a ``$lookup`` or ``$unionWith`` pipeline on another model,
``$graphLookup``'s ``restrictSearchWithMatch``, ``$geoNear``'s ``query``), seals update values,
and refuses a regex expression (``$regexMatch``...) whose input is an encrypted field and a
``$sort`` by one (where it holds ciphertext).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import QueryError
from ..query.walker import EXPRESSION, FILTER, STAGE, UPDATE, Node
from .fieldpaths import Sensitive, norm_path

__all__ = ["match_ciphertext", "SealRule"]

# expression operators matching a regex against their input: on an encrypted field, ciphertext
_REGEX_EXPRESSIONS = ("$regexMatch", "$regexFind", "$regexFindAll")
_ROOTS = ("$ROOT.", "$CURRENT.")  # the document itself, spelt as a variable

EqualForms = Callable[[Sensitive, Sequence[Any]], list[Any]]


def match_ciphertext(fields: tuple[Sensitive, ...], filt: Mapping[str, Any], forms: EqualForms, prefix: str = "", *,
                     blind: EqualForms | None = None) -> dict[str, Any]:
    """A copy of a stored-form filter whose conditions on ``fields`` match what is stored:
    equality on a field with a blind index (``blind`` given: its hashes of the values) moved to
    that index, on any other over ``forms``."""
    out: dict[str, Any] = {}
    for key, cond in filt.items():
        if key in ("$and", "$or", "$nor"):
            out[key] = [match_ciphertext(fields, sub, forms, prefix, blind=blind) for sub in cond]
            continue
        norm = norm_path(prefix + key)
        out[key] = cond
        for f in fields:
            if f.path == norm:
                if blind is not None and f.blind is not None:
                    kept, equal = _split_blind(f, cond, blind)
                    if kept is _NOTHING and equal is _NOTHING:
                        out[key] = _condition(f, cond, blind)  # an empty condition: left as it was
                    elif kept is _NOTHING:
                        del out[key]
                    else:
                        out[key] = kept
                    if equal is not _NOTHING:
                        out[key + "Index"] = equal
                else:
                    out[key] = _condition(f, cond, forms)
            elif f.path.startswith(norm + ".") and isinstance(cond, Mapping):
                if "$elemMatch" in cond and isinstance(cond["$elemMatch"], Mapping):
                    out[key] = {**cond, "$elemMatch": match_ciphertext(fields, cond["$elemMatch"], forms, norm + ".",
                                                                       blind=blind)}
                elif cond and not any(k.startswith("$") for k in cond):
                    raise QueryError(f"match {f.path!r} by its own path: it is encrypted inside {norm!r}")
    return out


_NOTHING: Any = object()


def _split_blind(f: Sensitive, cond: Any, blind: EqualForms) -> tuple[Any, Any]:
    """A condition on a field with a blind index as ``(what stays on the field, the condition on
    its index)``, ``_NOTHING`` for a side with no condition: ``$exists`` and a match of null (the
    index is absent exactly where the field is) stay on the field, equality moves to the index."""
    if not isinstance(cond, Mapping):
        if cond is None:
            return None, _NOTHING
        return _NOTHING, {"$in": blind(f, [cond])}
    equal = _condition(f, cond, blind)
    kept = {op: equal.pop(op) for op in list(equal) if op == "$exists"}
    return (kept if kept else _NOTHING), (equal if equal else _NOTHING)


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

    __slots__ = ("crypto", "registry", "infos")

    def __init__(self, crypto: Any, registry: Any) -> None:
        self.crypto = crypto
        self.registry = registry
        self.infos: dict[Any, Any] = {}  # node model class -> its ModelInfo, resolved once (the registry is fixed)

    def _info(self, model: Any) -> Any:
        info = self.infos.get(model)
        if info is None:
            info = self.registry.resolve(model)
            if len(self.infos) < 256:  # a leak guard (classes made at run time): resolved again past it
                self.infos[model] = info
        return info

    def visit(self, node: Node, value: Any) -> Any:
        kind = node.kind
        if kind == FILTER:
            return self.crypto.seal_filter(self.infos.get(node.model) or self._info(node.model), value)
        if kind == UPDATE:
            sealed = self.crypto.seal_update(self.infos.get(node.model) or self._info(node.model), value.update)
            if sealed is not value.update:  # a blind index kept in step is a field the write changes too
                named = set(value.fields)
                added = [top for top in dict.fromkeys(str(path).split(".", 1)[0] for spec in sealed.values()
                                                      for path in spec) if top not in named]
                if added:
                    value.fields = [*value.fields, *added]
                value.update = sealed
        elif kind == STAGE and node.key == "$sort" and isinstance(value, Mapping) and self.crypto.ordered_by_value():
            name = self.registry.resolve(node.model).name
            for key in value:
                sealed = self.crypto.sorted_by_ciphertext(name, str(key))
                if sealed is not None:
                    raise QueryError(f"$sort by the encrypted field {sealed!r} (in {node.where}): "
                                     "its stored order is the ciphertext's, which means nothing")
        elif (kind == EXPRESSION and node.key in _REGEX_EXPRESSIONS and isinstance(value, Mapping)
              and (self.crypto.enabled or not self.crypto.allow_plaintext)):  # without a key: plaintext, runs
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

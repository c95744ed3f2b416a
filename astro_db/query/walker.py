"""The query walker: a filter, an update or a pipeline traversed once, with every rule at every node.

A call's query is walked once. The walker knows the shape of what a caller may send and where
each part of it reads: a ``$match`` reads the model of the pipeline it is in; a ``$facet``
sub-pipeline the same model one level deeper; a ``$lookup`` pipeline (and its
``restrictSearchWithMatch`` for ``$graphLookup``) and a ``$unionWith`` pipeline the model of the
collection they name, one level deeper; ``$lookup``'s ``let`` and every other stage's spec are
expressions over the documents of the pipeline they are in. It checks that shape as it goes (a
stage is ``{"$name": spec}``, nested pipelines at most ``MAX_PIPELINE_DEPTH`` deep counted
through ``$facet``, ``$lookup`` and ``$unionWith`` alike, only the models' collections read,
only the known keys of ``$lookup`` / ``$unionWith`` / ``$graphLookup`` / ``$geoNear``).

At every node it calls the rules in order, each with the node's context (``Node``: kind, model,
depth, stage, place) and the value as the rules before it left it; a rule returns the value,
changed or not, or raises. The first rule is always the validation of what callers may send
(``pipeline.Checks``: filters compiled into stored form, updates validated, stages and
expression operators whitelisted, regexes through the policy); the service adds the seal rule
(``security.filters.SealRule``: conditions on encrypted fields made to match ciphertext) and
the actor's scope (``security.access.Guard``). A rule added here holds at every depth because no
other code walks a query.

Nodes, and when a rule sees them:

- ``FILTER``: a whole filter (the call's query, a ``$match``, ``$geoNear``'s ``query``,
  ``$graphLookup``'s ``restrictSearchWithMatch``), with the model it is matched against;
- ``UPDATE``: the call's update (the first rule turns it into a ``CompiledUpdate``);
- ``STAGE``: ``{"$name": spec}``, before its spec is walked;
- ``EXPRESSION``: each ``{"$operator": argument}`` inside an expression (``$project``,
  ``$group``, ``$lookup.let``, ``$graphLookup.startWith``, ``$geoNear.near``, ...), before its
  argument is walked;
- ``READS``: another collection a stage reads (``$lookup``'s ``from``, ``$unionWith``,
  ``$graphLookup``'s ``from``), with that collection's model, before anything of it is walked;
- ``PIPELINE``: a pipeline, after its stages were walked (depth 0: the call's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import QueryError
from .filters import MAX_VALUE_DEPTH, describe
from .regex import unknown_input_lengths

__all__ = [
    "Node", "Rule", "Walker", "FILTER", "UPDATE", "STAGE", "EXPRESSION", "PIPELINE", "READS", "MAX_PIPELINE_DEPTH",
    "model_collections",
]

FILTER, UPDATE, STAGE, EXPRESSION, PIPELINE, READS = "filter", "update", "stage", "expression", "pipeline", "reads"
#: Stages after which every document's stored values are still the stored ones (so the model's
#: length bounds hold for the regex policy); after any other stage they may not.
KEEPS_STORED_VALUES = frozenset({"$match", "$sort", "$limit", "$skip", "$sample"})
MAX_PIPELINE_DEPTH = 4  # pipelines nested in pipelines ($facet, $lookup, $unionWith)

LOOKUP_KEYS = frozenset({"from", "localField", "foreignField", "as", "let", "pipeline"})
UNION_KEYS = frozenset({"coll", "pipeline"})
GRAPH_KEYS = frozenset({"from", "startWith", "connectFromField", "connectToField", "as", "maxDepth", "depthField",
                        "restrictSearchWithMatch"})
GRAPH_REQUIRED = frozenset({"from", "startWith", "connectFromField", "connectToField", "as"})


@dataclass(frozen=True, init=False)
class Node:
    """Where a rule is: what kind of node, on which model, how deep, in which stage, where.

    ``where`` is the stage's place for nodes inside a stage, and the pipeline's (``""`` at the
    top, ``" in $facet 'a'"``...) for a ``STAGE`` or ``PIPELINE`` node.
    ``key`` is the operator of an ``EXPRESSION`` node, the stage name of a ``STAGE`` or ``READS`` node and,
    for a ``FILTER``, what holds it: ``"query"`` (the call's own filter), ``"$match"``,
    ``"query"`` of ``$geoNear`` (``stage == "$geoNear"``) or ``"restrictSearchWithMatch"``."""

    kind: str
    model: Any  # the model class whose collection this node reads
    depth: int = 0  # pipelines nested above this node (0: the call's own pipeline, or no pipeline)
    stage: str = ""  # the stage this node is in ("" outside a pipeline)
    where: str = ""  # its place, for messages ("stage 0 $facet in $lookup from 'users'")
    key: str = ""

    def __init__(self, kind: str, model: Any, depth: int = 0, stage: str = "", where: str = "", key: str = "") -> None:
        # the dataclass's own __init__ (same fields, order and defaults) as one dict update: a
        # frozen dataclass sets each field through object.__setattr__ (as events.WriteEvent)
        self.__dict__.update(kind=kind, model=model, depth=depth, stage=stage, where=where, key=key)

    @property
    def top(self) -> bool:
        """Whether this node is the call's own filter, update or pipeline (not inside a stage)."""
        return self.depth == 0 and not self.stage


class Rule(Protocol):
    """One concern applied at every node: return ``value`` (changed or not), or raise."""

    def visit(self, node: Node, value: Any) -> Any: ...


def model_collections(models: Iterable[Any]) -> dict[str, Any]:
    """Collection name -> model class, for the models (classes or ``ModelInfo``) given."""
    out: dict[str, Any] = {}
    for model in models:
        cls = getattr(model, "cls", model)
        out[cls._meta["collection"]] = cls
    return out


# The node of a call's own filter and update on each model: the same (frozen) value every call,
# so made once per model class (a handful: the registered models)
_OWN_FILTERS: dict[Any, Node] = {}
_OWN_UPDATES: dict[Any, Node] = {}


class Walker:
    """One traversal of a call's query, calling ``rules`` (in order) at every node.

    ``collections`` maps the collections a pipeline may read to their models (default: the
    models of ``astro_db.models``)."""

    __slots__ = ("rules", "collections")

    def __init__(self, rules: Sequence[Rule], collections: Mapping[str, Any] | None = None) -> None:
        self.rules = tuple(rules)
        if collections is None:
            from ..models import MODELS

            collections = model_collections(MODELS.values())
        self.collections = collections

    # --- entry points -------------------------------------------------------------------------

    def filter(self, model: Any, query: Any) -> Any:
        """The call's own filter on ``model``, through every rule."""
        node = _OWN_FILTERS.get(model)
        if node is None:
            if len(_OWN_FILTERS) > 256:  # a leak guard (classes made at run time): made again as needed
                _OWN_FILTERS.clear()
            node = _OWN_FILTERS[model] = Node(FILTER, model, key="query")
        for rule in self.rules:  # _visit, inlined (every call's filter)
            query = rule.visit(node, query)
        return query

    def update(self, model: Any, data: Any) -> Any:
        """The call's own update on ``model``, through every rule."""
        node = _OWN_UPDATES.get(model)
        if node is None:
            if len(_OWN_UPDATES) > 256:
                _OWN_UPDATES.clear()
            node = _OWN_UPDATES[model] = Node(UPDATE, model)
        for rule in self.rules:  # _visit, inlined (every update)
            data = rule.visit(node, data)
        return data

    def pipeline(self, model: Any, stages: Any) -> list[dict[str, Any]]:
        """An aggregation pipeline on ``model``, every stage at every depth through every rule."""
        return self._pipeline(model, stages, "", 0)  # type: ignore[no-any-return]

    # --- the traversal ------------------------------------------------------------------------

    def _visit(self, node: Node, value: Any) -> Any:
        for rule in self.rules:
            value = rule.visit(node, value)
        return value

    def _pipeline(self, model: Any, stages: Any, where: str, depth: int) -> Any:
        if depth > MAX_PIPELINE_DEPTH:
            raise QueryError(f"pipelines nested deeper than {MAX_PIPELINE_DEPTH} levels{where}")
        if not isinstance(stages, (list, tuple)):
            raise QueryError(f"a pipeline{where} is a list of stages, got {describe(stages)}")
        out = []
        with contextlib.ExitStack() as unbounded:
            rewritten = False
            for i, stage in enumerate(stages):
                if not isinstance(stage, Mapping) or len(stage) != 1:
                    raise QueryError(f"pipeline stage {i}{where} must be a dict with exactly one $stage key")
                (name, spec), = stage.items()
                spec = self._visit(Node(STAGE, model, depth, name, where, name), spec)
                here = f"stage {i} {name}{where}"
                out.append({name: self._stage(model, name, spec, here, depth)})
                if name not in KEEPS_STORED_VALUES and not rewritten:
                    # the documents after this stage may hold values the model's bounds do not
                    # (a $concat into "name", a $unionWith of another collection): every regex
                    # from here on, at any depth, is judged as if their lengths were unknown
                    unbounded.enter_context(unknown_input_lengths())
                    rewritten = True
        return self._visit(Node(PIPELINE, model, depth, "", where), out)

    def _stage(self, model: Any, name: str, spec: Any, here: str, depth: int) -> Any:
        handler = _STAGES.get(name)
        if handler is not None:
            return handler(self, model, spec, here, depth)
        return self._expression(model, spec, name, here, depth)

    def _match(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        return self._visit(Node(FILTER, model, depth, "$match", here, "$match"), spec)

    def _facet(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        if not isinstance(spec, Mapping):
            raise QueryError(f"{here} takes a dict of name -> pipeline")
        return {facet: self._pipeline(model, sub, f" in $facet {facet!r}", depth + 1) for facet, sub in spec.items()}

    def _lookup(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        spec = _options(spec, LOOKUP_KEYS, here)
        source = spec.get("from")
        joined = self._model_of(source, "$lookup", here, depth)
        out = {}
        for key, value in spec.items():
            if key == "pipeline":
                out[key] = self._pipeline(joined, value, f" in $lookup from {source!r}", depth + 1)
            elif key == "let":
                if not isinstance(value, Mapping):
                    raise QueryError(f"{here}: let takes a dict of name -> expression")
                out[key] = self._expression(model, value, "$lookup", f"{here} let", depth)
            else:
                out[key] = self._expression(model, value, "$lookup", here, depth)
        return out

    def _union(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        if isinstance(spec, str):
            self._model_of(spec, "$unionWith", here, depth)
            return spec
        if not isinstance(spec, Mapping):
            raise QueryError(f"{here} takes a collection name or {{coll, pipeline}}")
        spec = _options(spec, UNION_KEYS, here)
        source = spec.get("coll")
        other = self._model_of(source, "$unionWith", here, depth)
        out = dict(spec)
        if "pipeline" in spec:
            out["pipeline"] = self._pipeline(other, spec["pipeline"], f" in $unionWith {source!r}", depth + 1)
        return out

    def _graph_lookup(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        spec = _options(spec, GRAPH_KEYS, here)
        missing = GRAPH_REQUIRED - set(spec)
        if missing:
            raise QueryError(f"{here} needs {', '.join(sorted(missing))}")
        other = self._model_of(spec["from"], "$graphLookup", here, depth)
        out = {}
        for key, value in spec.items():
            if key == "restrictSearchWithMatch":
                out[key] = self._visit(Node(FILTER, other, depth, "$graphLookup", here, key), value)
            else:
                out[key] = self._expression(model, value, "$graphLookup", here, depth)
        return out

    def _geo_near(self, model: Any, spec: Any, here: str, depth: int) -> Any:
        if not isinstance(spec, Mapping):
            raise QueryError(f"{here} takes a dict")
        out = {}
        for key, value in spec.items():
            if key == "query":
                out[key] = self._visit(Node(FILTER, model, depth, "$geoNear", here, key), value)
            else:
                out[key] = self._expression(model, value, "$geoNear", here, depth)
        return out

    def _expression(self, model: Any, value: Any, stage: str, here: str, depth: int, level: int = 1) -> Any:
        """An expression rebuilt, each ``{"$op": argument}`` visited before its argument; one
        nested deeper than ``MAX_VALUE_DEPTH`` levels is a ``QueryError``."""
        if level > MAX_VALUE_DEPTH and isinstance(value, (Mapping, list, tuple)):
            raise QueryError(f"{here}: expression nested deeper than {MAX_VALUE_DEPTH} levels")
        if isinstance(value, Mapping):
            out = {}
            for key, sub in value.items():
                if isinstance(key, str) and key.startswith("$"):
                    sub = self._visit(Node(EXPRESSION, model, depth, stage, here, key), sub)
                out[key] = self._expression(model, sub, stage, here, depth, level + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self._expression(model, sub, stage, here, depth, level + 1) for sub in value]
        return value

    def _model_of(self, collection: Any, stage: str, here: str, depth: int) -> Any:
        """The model of the other ``collection`` a stage reads, shown to the rules (``READS``);
        a ``QueryError`` for a collection that is not a model's."""
        model = self.collections.get(collection) if isinstance(collection, str) else None
        if model is None:
            raise QueryError(f"{here} may only read the models' collections "
                             f"({', '.join(sorted(self.collections))}), got {collection!r}")
        self._visit(Node(READS, model, depth, stage, here, stage), collection)
        return model


def _options(spec: Any, allowed: frozenset[str], here: str) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise QueryError(f"{here} takes a dict")
    extra = [k for k in spec if k not in allowed]
    if extra:
        raise QueryError(f"{here}: unknown option(s) {', '.join(map(repr, extra))}")
    return spec


_STAGES: dict[str, Callable[[Walker, Any, Any, str, int], Any]] = {
    "$match": Walker._match,
    "$facet": Walker._facet,
    "$lookup": Walker._lookup,
    "$unionWith": Walker._union,
    "$graphLookup": Walker._graph_lookup,
    "$geoNear": Walker._geo_near,
}

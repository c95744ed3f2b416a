"""Aggregation pipeline checks: the same rules at every depth.

One recursive checker walks the top pipeline and every pipeline nested in it (``$facet``
sub-pipelines, ``$lookup`` and ``$unionWith`` pipelines). At every depth: only known read-only
stages (``$out`` / ``$merge`` refused); every ``$match`` goes through ``compile_filter`` against
the model of the collection it reads (a ``$lookup`` pipeline matches the joined model), so the
operator whitelist, depth and ``$in`` limits and the regex policy hold there too, and its field
names are stored; ``$lookup`` / ``$unionWith`` / ``$graphLookup`` only read the models'
collections; every expression (``$project``, ``$addFields``, ``$group``, ``$lookup.let``, ...) is
walked for code-running operators and for ``$regexMatch`` / ``$regexFind`` / ``$regexFindAll``,
whose pattern must be a literal that passes the regex policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bson.regex import Regex

from ..errors import QueryError
from .filters import FORBIDDEN_OPERATORS, compile_filter, describe
from .regex import check_regex, check_regex_input, check_regex_options

__all__ = ["compile_pipeline", "check_expression", "PIPELINE_STAGES", "PIPELINE_WRITE_STAGES", "MAX_PIPELINE_DEPTH"]

PIPELINE_STAGES = frozenset({
    "$match", "$group", "$sort", "$limit", "$skip", "$project", "$unwind", "$count", "$addFields",
    "$set", "$unset", "$lookup", "$facet", "$bucket", "$bucketAuto", "$sortByCount", "$sample",
    "$replaceRoot", "$replaceWith", "$geoNear", "$unionWith", "$graphLookup",
})
PIPELINE_WRITE_STAGES = frozenset({"$out", "$merge"})
REGEX_EXPRESSIONS = frozenset({"$regexMatch", "$regexFind", "$regexFindAll"})
MAX_PIPELINE_DEPTH = 4  # pipelines nested in pipelines ($facet, $lookup, $unionWith)

_LOOKUP_KEYS = {"from", "localField", "foreignField", "as", "let", "pipeline"}
_GRAPH_KEYS = {"from", "startWith", "connectFromField", "connectToField", "as", "maxDepth", "depthField",
               "restrictSearchWithMatch"}
_GRAPH_REQUIRED = {"from", "startWith", "connectFromField", "connectToField", "as"}


def compile_pipeline(model: Any, pipeline: Any) -> list[dict[str, Any]]:
    """Check an aggregation pipeline on ``model`` at every depth; its ``$match`` stages compiled."""
    return _compile_stages(model, pipeline, "", 0)


def check_expression(value: Any, where: str) -> None:
    """Refuse code-running operators anywhere in an aggregation expression, and check the
    pattern of every ``$regexMatch`` / ``$regexFind`` / ``$regexFindAll`` in it."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key in FORBIDDEN_OPERATORS:
                raise QueryError(f"operator {key} is not allowed (in {where})")
            if key in REGEX_EXPRESSIONS:
                _check_regex_expression(key, sub, where)
            check_expression(sub, where)
    elif isinstance(value, (list, tuple)):
        for sub in value:
            check_expression(sub, where)


def _compile_stages(model: Any, pipeline: Any, where: str, depth: int) -> list[dict[str, Any]]:
    if depth > MAX_PIPELINE_DEPTH:
        raise QueryError(f"pipelines nested deeper than {MAX_PIPELINE_DEPTH} levels{where}")
    if not isinstance(pipeline, (list, tuple)):
        raise QueryError(f"a pipeline{where} is a list of stages, got {describe(pipeline)}")
    out = []
    for i, stage in enumerate(pipeline):
        if not isinstance(stage, Mapping) or len(stage) != 1:
            raise QueryError(f"pipeline stage {i}{where} must be a dict with exactly one $stage key")
        (name, spec), = stage.items()
        if name in PIPELINE_WRITE_STAGES:
            raise QueryError(f"pipeline stage {name}{where} writes to a collection and is not allowed")
        if name not in PIPELINE_STAGES:
            raise QueryError(f"unknown or unsupported pipeline stage {name!r}{where}")
        out.append({name: _compile_stage(model, name, spec, f"stage {i} {name}{where}", depth)})
    return out


def _compile_stage(model: Any, name: str, spec: Any, here: str, depth: int) -> Any:
    if name == "$match":
        return compile_filter(model, spec)
    if name == "$facet":
        if not isinstance(spec, Mapping):
            raise QueryError(f"{here} takes a dict of name -> pipeline")
        return {facet: _compile_stages(model, sub, f" in $facet {facet!r}", depth + 1) for facet, sub in spec.items()}
    if name == "$lookup":
        return _compile_lookup(spec, here, depth)
    if name == "$unionWith":
        return _compile_union(spec, here, depth)
    if name == "$graphLookup":
        return _compile_graph_lookup(spec, here)
    if name == "$geoNear" and isinstance(spec, Mapping) and "query" in spec:
        check_expression({k: v for k, v in spec.items() if k != "query"}, here)
        return {**spec, "query": compile_filter(model, spec["query"])}
    check_expression(spec, here)
    return spec


def _compile_lookup(spec: Any, here: str, depth: int) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise QueryError(f"{here} takes a dict")
    _known_keys(spec, _LOOKUP_KEYS, here)
    source = spec.get("from")
    joined = _model_of(source, here)
    out = dict(spec)
    if "let" in spec:
        if not isinstance(spec["let"], Mapping):
            raise QueryError(f"{here}: let takes a dict of name -> expression")
        check_expression(spec["let"], f"{here} let")
    if "pipeline" in spec:
        out["pipeline"] = _compile_stages(joined, spec["pipeline"], f" in $lookup from {source!r}", depth + 1)
    return out


def _compile_union(spec: Any, here: str, depth: int) -> Any:
    if isinstance(spec, str):
        _model_of(spec, here)
        return spec
    if not isinstance(spec, Mapping):
        raise QueryError(f"{here} takes a collection name or {{coll, pipeline}}")
    _known_keys(spec, {"coll", "pipeline"}, here)
    source = spec.get("coll")
    other = _model_of(source, here)
    out = dict(spec)
    if "pipeline" in spec:
        out["pipeline"] = _compile_stages(other, spec["pipeline"], f" in $unionWith {source!r}", depth + 1)
    return out


def _compile_graph_lookup(spec: Any, here: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise QueryError(f"{here} takes a dict")
    _known_keys(spec, _GRAPH_KEYS, here)
    missing = _GRAPH_REQUIRED - set(spec)
    if missing:
        raise QueryError(f"{here} needs {', '.join(sorted(missing))}")
    other = _model_of(spec["from"], here)
    check_expression({k: v for k, v in spec.items() if k != "restrictSearchWithMatch"}, here)
    out = dict(spec)
    if "restrictSearchWithMatch" in spec:
        out["restrictSearchWithMatch"] = compile_filter(other, spec["restrictSearchWithMatch"])
    return out


def _check_regex_expression(operator: str, spec: Any, where: str) -> None:
    """``{input, regex, options}`` with a literal pattern that passes the regex policy."""
    if not isinstance(spec, Mapping) or "regex" not in spec:
        raise QueryError(f"{operator} (in {where}) takes {{input, regex, options}}")
    _known_keys(spec, {"input", "regex", "options"}, f"{operator} in {where}")
    pattern, options = spec["regex"], spec.get("options", "")
    if isinstance(pattern, str) and pattern.startswith("$"):
        raise QueryError(f"{operator} (in {where}) takes a literal regex, not a field path or variable ({pattern[:40]!r})")
    if not isinstance(pattern, (str, re.Pattern, Regex)):
        raise QueryError(f"{operator} (in {where}) takes a literal regex, got {describe(pattern)}")
    check_regex_options(options, f"{operator} in {where}")
    check_regex(pattern, f"{operator} in {where}", options if isinstance(pattern, str) else "",
                max_input=check_regex_input(spec.get("input"), f"{operator} in {where}"),
                all_matches=operator == "$regexFindAll")


def _known_keys(spec: Mapping[str, Any], allowed: set[str], here: str) -> None:
    extra = [k for k in spec if k not in allowed]
    if extra:
        raise QueryError(f"{here}: unknown option(s) {', '.join(map(repr, extra))}")


def _model_of(collection: Any, here: str) -> Any:
    """The model class reading ``collection``; a ``QueryError`` for any other collection."""
    from ..models import MODELS

    by_collection = {cls._meta["collection"]: cls for cls in MODELS.values()}
    if collection not in by_collection:
        raise QueryError(f"{here} may only read the models' collections "
                         f"({', '.join(sorted(by_collection))}), got {collection!r}")
    return by_collection[collection]

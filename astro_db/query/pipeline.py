"""What a caller may send, as the first rule of the query walker (``walker``): the same checks at every depth.

``Checks`` is the rule every walk starts with. At every node the walker reaches (``walker.Node``):

- a filter (the call's query, any ``$match``, ``$geoNear``'s ``query``, ``$graphLookup``'s
  ``restrictSearchWithMatch``) goes through ``compile_filter`` against the model it is matched
  against (a ``$lookup`` or ``$unionWith`` pipeline matches the joined model), so the operator
  whitelist, depth and ``$in`` limits and the regex policy hold there too, and its field names
  are stored; ``strict`` applies to the call's own filter;
- an update goes through ``compile_update``, and what it writes through ``check_document_keys``;
- a stage must be a known read-only stage (``$out`` / ``$merge`` refused);
- an expression operator (anywhere in ``$project``, ``$addFields``, ``$group``, ``$lookup.let``,
  ``$graphLookup.startWith``, ``$geoNear.near``, ...) must not run code (``$function``,
  ``$accumulator``, ``$where``, ``$expr``...); ``$regexMatch`` / ``$regexFind`` /
  ``$regexFindAll`` take a literal pattern that passes the regex policy with its options.

``compile_pipeline`` is the walk with this rule alone (no actor, no key); the service adds its
rules in ``ops/steps/compile.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bson.regex import Regex

from ..errors import QueryError
from .filters import FORBIDDEN_OPERATORS, check_document_keys, compile_filter, describe
from .regex import check_regex, check_regex_input, check_regex_options
from .updates import CompiledUpdate, compile_update
from .walker import EXPRESSION, FILTER, MAX_PIPELINE_DEPTH, STAGE, UPDATE, Node, Walker

__all__ = [
    "Checks", "compile_pipeline", "check_operator", "PIPELINE_STAGES", "PIPELINE_WRITE_STAGES", "REGEX_EXPRESSIONS",
    "MAX_PIPELINE_DEPTH",
]

PIPELINE_STAGES = frozenset({
    "$match", "$group", "$sort", "$limit", "$skip", "$project", "$unwind", "$count", "$addFields",
    "$set", "$unset", "$lookup", "$facet", "$bucket", "$bucketAuto", "$sortByCount", "$sample",
    "$replaceRoot", "$replaceWith", "$geoNear", "$unionWith", "$graphLookup",
})
PIPELINE_WRITE_STAGES = frozenset({"$out", "$merge"})
REGEX_EXPRESSIONS = frozenset({"$regexMatch", "$regexFind", "$regexFindAll"})
_REGEX_KEYS = frozenset({"input", "regex", "options"})
_WRITTEN = frozenset({"$set", "$push", "$addToSet"})  # the update operators whose values are stored


class Checks:
    """The walker's first rule: what a caller may send, in stored form (see the module doc)."""

    __slots__ = ("strict",)

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict  # literals only in the call's own filter (``compile_filter(strict=)``)

    def visit(self, node: Node, value: Any) -> Any:
        kind = node.kind
        if kind == FILTER:
            return compile_filter(node.model, value, strict=self.strict and node.top)
        if kind == EXPRESSION:
            check_operator(node.key, value, node.where)
        elif kind == STAGE:
            _check_stage(node.key, node.where)
        elif kind == UPDATE:
            return _compile_update(node.model, value)
        return value


def compile_pipeline(model: Any, pipeline: Any) -> list[dict[str, Any]]:
    """Check an aggregation pipeline on ``model`` at every depth; its filters compiled."""
    return Walker((Checks(),)).pipeline(model, pipeline)


def check_operator(operator: Any, argument: Any, where: str) -> None:
    """One expression operator: not a code-running one; a regex one with a safe literal pattern."""
    if operator in FORBIDDEN_OPERATORS:
        raise QueryError(f"operator {operator} is not allowed (in {where})")
    if operator in REGEX_EXPRESSIONS:
        _check_regex_expression(operator, argument, where)


def _check_stage(name: str, where: str) -> None:
    if name in PIPELINE_WRITE_STAGES:
        raise QueryError(f"pipeline stage {name}{where} writes to a collection and is not allowed")
    if name not in PIPELINE_STAGES:
        raise QueryError(f"unknown or unsupported pipeline stage {name!r}{where}")


def _compile_update(model: Any, data: Any) -> CompiledUpdate:
    compiled = compile_update(model, data)
    for op, spec in compiled.update.items():
        if op in _WRITTEN:
            for key, value in spec.items():
                if isinstance(value, (dict, list)):  # a scalar holds no key to refuse
                    check_document_keys(value["$each"] if isinstance(value, dict) and "$each" in value else value, key)
    return compiled


def _check_regex_expression(operator: str, spec: Any, where: str) -> None:
    """``{input, regex, options}`` with a literal pattern that passes the regex policy."""
    if not isinstance(spec, Mapping) or "regex" not in spec:
        raise QueryError(f"{operator} (in {where}) takes {{input, regex, options}}")
    extra = [k for k in spec if k not in _REGEX_KEYS]
    if extra:
        raise QueryError(f"{operator} in {where}: unknown option(s) {', '.join(map(repr, extra))}")
    pattern, options = spec["regex"], spec.get("options", "")
    if isinstance(pattern, str) and pattern.startswith("$"):
        raise QueryError(f"{operator} (in {where}) takes a literal regex, not a field path or variable ({pattern[:40]!r})")
    if not isinstance(pattern, (str, re.Pattern, Regex)):
        raise QueryError(f"{operator} (in {where}) takes a literal regex, got {describe(pattern)}")
    check_regex_options(options, f"{operator} in {where}")
    check_regex(pattern, f"{operator} in {where}", options,  # a compiled pattern is judged by its own flags
                max_input=check_regex_input(spec.get("input"), f"{operator} in {where}"),
                all_matches=operator == "$regexFindAll")

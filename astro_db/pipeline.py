"""Aggregation pipeline checks: known read-only stages, no code, ``$match`` validated.

``$out``/``$merge`` (writes) and code-running operators are refused anywhere; ``$lookup`` may only
read the models' collections; pipelines nested in ``$facet`` and ``$lookup`` are checked the same
way as the top one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import QueryError
from .query import (
    _PIPELINE_STAGES,
    _PIPELINE_WRITE_STAGES,
    _describe,
    _reject_code,
    compile_filter,
)

__all__ = ["compile_pipeline"]


def compile_pipeline(model: Any, pipeline: Any) -> list[dict[str, Any]]:
    """Check an aggregation pipeline: known read-only stages, no code, ``$match`` validated,
    ``$lookup`` only into the models' collections, nested pipelines checked the same way."""
    out = _check_stages(pipeline, "")
    for stage in out:
        if "$match" in stage:
            stage["$match"] = compile_filter(model, stage["$match"])
    return out


def _model_collections() -> set[str]:
    from .models import MODELS

    return {cls._meta["collection"] for cls in MODELS.values()}


def _check_stages(pipeline: Any, where: str) -> list[dict[str, Any]]:
    """The stage checks of ``compile_pipeline``, for the top pipeline and nested ones."""
    if not isinstance(pipeline, (list, tuple)):
        raise QueryError(f"a pipeline{where} is a list of stages, got {_describe(pipeline)}")
    out = []
    for i, stage in enumerate(pipeline):
        if not isinstance(stage, Mapping) or len(stage) != 1:
            raise QueryError(f"pipeline stage {i} must be a dict with exactly one $stage key")
        (name, spec), = stage.items()
        if name in _PIPELINE_WRITE_STAGES:
            raise QueryError(f"pipeline stage {name} writes to a collection and is not allowed")
        if name not in _PIPELINE_STAGES:
            raise QueryError(f"unknown or unsupported pipeline stage {name!r}")
        _reject_code(spec, f"stage {i} {name}")
        if name == "$lookup":
            _check_lookup(spec, f"{where} stage {i}")
        elif name == "$facet":
            if not isinstance(spec, Mapping):
                raise QueryError(f"$facet{where} takes a dict of name -> pipeline")
            for facet, sub in spec.items():
                _check_stages(sub, f" in $facet {facet!r}")
        out.append({name: spec})
    return out


def _check_lookup(spec: Any, where: str) -> None:
    if not isinstance(spec, Mapping):
        raise QueryError(f"$lookup{where} takes a dict")
    source = spec.get("from")
    if source not in _model_collections():
        raise QueryError(f"$lookup{where} may only read the models' collections "
                         f"({', '.join(sorted(_model_collections()))}), got {source!r}")
    if "pipeline" in spec:
        _check_stages(spec["pipeline"], f" in $lookup from {source!r}")

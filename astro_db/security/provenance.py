"""Which encrypted paths of an aggregation's output still hold the stored value.

Aggregation output is opened at the model's declared sensitive paths only, and only where no
stage could have put something else there: ``{"$addFields": {"birthData.location.name":
{"$literal": <someone's ciphertext>}}}`` must not turn the pipeline into a decryption oracle.
Stages that keep documents whole (``$match``, ``$sort``, ``$limit``...) keep every path;
``$project`` inclusion/exclusion keeps them; a computed value written over or around a path
(``$project``/``$addFields``/``$set`` expressions, ``$lookup``'s ``as``, ``$unwind``'s
``includeArrayIndex``, ``$geoNear``'s output fields) loses that path; a stage that rebuilds
documents (``$group``, ``$replaceRoot``, ``$facet``, ``$count``, ``$bucket``...) loses all.
A lost path stays sealed in the output: deliberate, and documented in docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .fieldpaths import norm_path

__all__ = ["intact_paths"]

_KEEP = {"$match", "$sort", "$limit", "$skip", "$sample", "$unset"}
_COMPUTE = {"$addFields", "$set"}


def intact_paths(stages: Iterable[Mapping[str, Any]], paths: Iterable[str]) -> frozenset[str]:
    """The subset of ``paths`` that every stage leaves holding the stored value (or nothing)."""
    intact = set(paths)
    for stage in stages:
        if not intact:
            break
        intact -= _lost(stage, intact)
    return frozenset(intact)


def _lost(stage: Mapping[str, Any], paths: set[str]) -> set[str]:
    if len(stage) != 1:
        return set(paths)
    (name, spec), = stage.items()
    if name in _KEEP:
        return set()
    if name in _COMPUTE and isinstance(spec, Mapping):
        written: Iterable[Any] = spec.keys()
    elif name == "$project" and isinstance(spec, Mapping):
        written = _computed(spec, "")
    elif name == "$lookup" and isinstance(spec, Mapping):
        written = [spec.get("as")]
    elif name == "$unwind":
        written = [spec.get("includeArrayIndex")] if isinstance(spec, Mapping) else []
    elif name == "$geoNear" and isinstance(spec, Mapping):
        written = [spec.get("distanceField"), spec.get("includeLocs")]
    else:
        return set(paths)
    keys = [norm_path(k) for k in written if isinstance(k, str) and k]
    return {p for p in paths if any(_overlap(k, p) for k in keys)}


def _computed(spec: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """The keys of a ``$project`` spec given an expression (not an inclusion flag)."""
    for key, value in spec.items():
        path = prefix + str(key)
        if isinstance(value, bool) or isinstance(value, (int, float)):
            continue  # 1/0/true/false: keep or drop the stored value
        if isinstance(value, Mapping) and value and not any(str(k).startswith("$") for k in value):
            yield from _computed(value, path + ".")
        else:
            yield path


def _overlap(written: str, path: str) -> bool:
    return written == path or path.startswith(written + ".") or written.startswith(path + ".")

"""The specification's documents: SMALL_DOC, LARGE_DOC (flat) and LARGE_DOC_NESTED.

The spec's data files (``odm-data/flat_models.tgz`` and ``nested_models.tgz`` of
github.com/mongodb/specifications, ``source/benchmarking/``) are licensed CC BY-NC-SA 3.0, so
they are not copied into this repository: ``--data DIR`` (or ``ASTRO_DB_ODM_DATA``) points at
the extracted tarballs (``DIR/flat-models/small_doc.json``, ``DIR/flat-models/large_doc.json``,
``DIR/nested-models/large_doc_nested.json``; ``flat_models/`` and ``nested_models/`` spellings
too). Without it, documents of the same shapes and sizes are generated here: the same keys in
the same order, the same value types, strings of about the files' lengths, and for the large
flat document an ``image_field`` of the same number of bytes; they score on the spec files'
sizes (``SPEC_SIZES``), so the MB/s of a generated run and of a run on the files compare.

A dataset's size for scoring is its source file's size (the spec's rule) times the operations
per iteration; for the update tasks it is ``len("updated_value")`` (13 bytes) times them.
"""

from __future__ import annotations

import os
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import json_util

__all__ = ["Dataset", "Datasets", "SPEC_SIZES", "UPDATED_VALUE", "load", "generated"]

UPDATED_VALUE = "updated_value"  # the spec's update value: 13 bytes a document

# The spec's files' sizes in bytes (the unit of each task's score), as measured on them.
SPEC_SIZES = {"SMALL_DOC": 252, "LARGE_DOC": 3_226_020, "LARGE_DOC_NESTED": 7_643}
_SMALL_INTS = (55336395, 41992681, 72188733, 46660880, 3527055, 74094448)
_LARGE_STRINGS, _LARGE_INTS = 125, 125
_LARGE_IMAGE_BYTES = 2_413_217  # the decoded length of the spec's image_field
_NESTED_STR_DOCS, _NESTED_INT_DOCS, _NESTED_ARRAY_ITEMS, _SUB_FIELDS = 5, 7, 2, 15


@dataclass(frozen=True)
class Dataset:
    """One of the spec's documents: as loaded (extended JSON decoded: the image is ``bytes``)
    and the size of its source file, the unit of its score."""

    name: str
    document: dict[str, Any]
    source_size: int
    origin: str  # the file it was read from, or "generated"


@dataclass(frozen=True)
class Datasets:
    small: Dataset
    large: Dataset
    nested: Dataset

    @property
    def origin(self) -> str:
        origins = {d.origin for d in (self.small, self.large, self.nested)}
        return "generated (the spec's shapes and sizes)" if origins == {"generated"} else \
            "the specification's data files: " + ", ".join(sorted(origins))


def _find(root: Path, group: str, name: str) -> Path:
    for folder in (f"{group}-models", f"{group}_models", ""):
        path = root / folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found under {root} (expected {group}-models/{name}: extract the spec's "
                            f"odm-data/{group}_models.tgz there)")


def _read(root: Path, group: str, name: str, label: str) -> Dataset:
    path = _find(root, group, name)
    raw = path.read_bytes()
    return Dataset(label, json_util.loads(raw.decode("utf-8")), len(raw), str(path))


def load(data_dir: str | os.PathLike[str] | None = None) -> Datasets:
    """The spec's files from ``data_dir`` (default: ``ASTRO_DB_ODM_DATA``); generated ones if
    neither is given."""
    where = data_dir or os.environ.get("ASTRO_DB_ODM_DATA")
    if not where:
        return generated()
    root = Path(where)
    return Datasets(_read(root, "flat", "small_doc.json", "SMALL_DOC"),
                    _read(root, "flat", "large_doc.json", "LARGE_DOC"),
                    _read(root, "nested", "large_doc_nested.json", "LARGE_DOC_NESTED"))


def _text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "#$@*&") for _ in range(length))


def _sized(label: str, document: dict[str, Any]) -> Dataset:
    return Dataset(label, document, SPEC_SIZES[label], "generated")


def generated(seed: int = 27) -> Datasets:
    """Documents of the spec's shapes and sizes (deterministic for a seed)."""
    rng = random.Random(seed)
    small = {f"field{i}": _text(rng, 8) for i in range(1, 8)}
    small.update({f"field{i}": n for i, n in zip(range(8, 14), _SMALL_INTS)})
    large: dict[str, Any] = {f"field{i}": _text(rng, 26 + i % 9) for i in range(1, _LARGE_STRINGS + 1)}
    large.update({f"field{i}": rng.randrange(10**7, 10**8)
                  for i in range(_LARGE_STRINGS + 1, _LARGE_STRINGS + _LARGE_INTS + 1)})
    large["image_field"] = rng.randbytes(_LARGE_IMAGE_BYTES)

    def strings() -> dict[str, Any]:
        return {f"field{i}": _text(rng, 30 + i % 5) for i in range(1, _SUB_FIELDS + 1)}

    nested: dict[str, Any] = {f"embedded_str_doc_{n}": strings() for n in range(1, _NESTED_STR_DOCS + 1)}
    nested["embedded_str_doc_array"] = [strings() for _ in range(_NESTED_ARRAY_ITEMS)]
    for n in range(_NESTED_STR_DOCS + 3, _NESTED_STR_DOCS + 3 + _NESTED_INT_DOCS):
        nested[f"embedded_int_doc_{n}"] = {f"field{i}": rng.randrange(1, 1000) for i in range(1, _SUB_FIELDS + 1)}
    return Datasets(_sized("SMALL_DOC", small), _sized("LARGE_DOC", large), _sized("LARGE_DOC_NESTED", nested))


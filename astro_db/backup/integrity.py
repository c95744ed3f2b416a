"""The shallow integrity check of one backup set's files, shared by ``verify`` and ``restore``.

Every file the manifest lists must exist, have the SHA-256 the manifest recorded, parse as BSON
document by document, and hold the manifest's number of documents; each collection's entry must
point at listed files with matching counts. Both ``verify`` (all sets) and ``restore`` (the sets
of its plan, before writing anything) run exactly this check, so a file ``verify`` rejects is
never loaded.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import bson
from bson.errors import BSONError

from ..errors import BackupIntegrityError
from .repository import BackupSet
from .stream import RAW, file_sha256, iter_raw

__all__ = ["Problems", "check_set_files", "require_intact"]

Progress = Callable[[str, int, "int | None"], None]


class Problems:
    """Integrity problems found so far, as (path, message) pairs, raised together."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: Any, message: str) -> None:
        self.items.append((str(path), message))

    def raise_if_any(self, what: str = "backup verification failed") -> None:
        if self.items:
            lines = "; ".join(f"{path}: {message}" for path, message in self.items)
            raise BackupIntegrityError(f"{what}: {lines}", path=self.items[0][0])


def check_set_files(s: BackupSet, problems: Problems, progress: Progress | None = None) -> tuple[int, int]:
    """Check every file of set ``s`` against its manifest; ``(files, documents)`` checked."""
    listed = s.manifest.get("files", {})
    documents = 0
    for relative, meta in listed.items():
        path = s.file(relative)
        count = _check_file(path, meta, problems)
        if count is None:
            continue
        documents += count
        if progress:
            progress("verify", count, None)
    for name, entry in s.manifest.get("collections", {}).items():
        for key in ("file", "deleted_file"):
            if entry.get(key) and entry[key] not in listed:
                problems.add(s.file(entry[key]), f"{name}: not listed among the manifest's files")
        if entry.get("file") in listed and listed[entry["file"]].get("documents") != entry.get("count"):
            problems.add(s.file(entry["file"]), f"{name}: count {entry.get('count')} differs from the file's {listed[entry['file']].get('documents')}")
    return len(listed), documents


def _check_file(path: Any, meta: dict[str, Any], problems: Problems) -> int | None:
    """The number of documents in ``path`` if it matches ``meta``; None (and a problem) if not."""
    if not path.is_file():
        problems.add(path, "missing")
        return None
    if file_sha256(path) != meta.get("sha256"):
        problems.add(path, "checksum mismatch (the file changed after the backup)")
        return None
    count = 0
    try:
        for raw in iter_raw(path):
            bson.decode(raw, RAW.with_options(document_class=dict))
            count += 1
    except BackupIntegrityError as exc:
        problems.add(path, str(exc).split(": ", 1)[-1])
        return None
    except (BSONError, ValueError) as exc:
        problems.add(path, f"document {count + 1} does not parse as BSON ({exc})")
        return None
    if count != meta.get("documents"):
        problems.add(path, f"holds {count} documents, the manifest says {meta.get('documents')}")
        return None
    return count


def require_intact(sets: Iterable[BackupSet], what: str) -> None:
    """Raise ``BackupIntegrityError`` naming the first bad file if any file of ``sets`` fails."""
    problems = Problems()
    for s in sets:
        check_set_files(s, problems)
    problems.raise_if_any(what)

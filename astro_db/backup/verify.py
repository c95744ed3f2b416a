"""Verifying a repository: checksums, parsing, counts, chaining, and (deep) a real load.

Shallow checks need no server: every file the manifest lists exists and has its SHA-256, every
document in it parses as BSON, the number of documents matches the manifest, each incremental's
parent exists, and each set's window starts where the previous set's ended. ``deep`` loads every
set's data files into a scratch database on the server (a unique name, dropped afterwards) and
compares each collection's order-independent content hash with the manifest's. Any failure raises
``BackupIntegrityError`` whose ``path`` names the first bad file; the message lists them all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from ..errors import AstroDBError, BackupError, BackupIntegrityError, translate
from .integrity import Problems, check_set_files
from .repository import BackupSet, Repository
from .restore import Loader, load_file
from .stream import RAW, ContentHash

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["run_verify"]

log = logging.getLogger(__name__)


def run_verify(repo: Repository, *, deep: bool = False, database: MongoDB | None = None, decode: bool = False,
               progress: Callable[[str, int, int | None], None] | None = None) -> dict[str, Any]:
    """Check every set; returns ``{"sets": [...], "files": n, "documents": n, "deep": bool}``.
    ``deep`` loads each set into a scratch database beside ``database`` (a gateway whose calls
    run through the run step); ``decode``: that server cannot store raw BSON."""
    problems = Problems()
    sets: list[BackupSet] = []
    for directory in repo.set_dirs():
        try:
            sets.append(repo.load(directory))
        except BackupIntegrityError as exc:
            problems.add(exc.path, str(exc).split(": ", 1)[-1])
    sets.sort(key=lambda s: (s.end, s.id))
    if not sets and not problems.items:
        raise BackupError(f"the backup repository {repo.path} holds no backup sets: nothing to verify (check --repo)")
    files = documents = 0
    for s in sets:
        f, d = check_set_files(s, problems, progress)
        files, documents = files + f, documents + d
    _check_chain(sets, problems)
    problems.raise_if_any()
    if deep:
        if database is None:
            raise BackupError("a deep verify needs a database server to load into: pass --url (db=...)")
        for s in sets:
            _deep_check(s, database, decode, problems, progress)
        problems.raise_if_any()
    return {"repository": str(repo.path), "sets": [s.id for s in sets], "files": files, "documents": documents, "deep": deep,
            "signed": repo.signed}


def _check_chain(sets: list[BackupSet], problems: Problems) -> None:
    by_id = {s.id: s for s in sets}
    for before, s in zip([None, *sets], sets):
        manifest = s.path / "manifest.json"
        if s.kind == "incremental":
            parent = by_id.get(s.parent or "")
            if parent is None:
                problems.add(manifest, f"incremental set {s.id}: its parent {s.parent} is not in the repository")
                continue
            if s.start != parent.end:
                problems.add(
                    manifest,
                    f"incremental set {s.id}: its window starts {s.manifest['window']['from']}, "
                    f"its parent ends {parent.manifest['window']['to']}",
                )
        if before is not None and s.manifest.get("previous") == before.id and s.start != before.end:
            problems.add(manifest, f"set {s.id}: its window does not start where {before.id} ends")


def _deep_check(s: BackupSet, gateway: MongoDB, decode: bool, problems: Problems, progress: Any) -> None:
    """Load the set's data files into a scratch database; compare content hashes."""
    name = f"astro_verify_{uuid.uuid4().hex[:12]}"
    scratch = gateway.sibling(name)
    try:
        loader = Loader(scratch, decode, progress)
        for coll, entry in s.manifest["collections"].items():
            loader.insert(coll, load_file(s, entry["file"]), entry["count"])
            stored = scratch.get_collection(coll, codec_options=RAW).find({}, batch_size=1000)
            got = ContentHash.of(stored)
            if got.count != entry["count"] or got.hexdigest() != entry["content_hash"]:
                problems.add(s.file(entry["file"]), f"restored into a scratch database, {coll} holds {got.count} documents "
                             f"hashing {got.hexdigest()[:16]}..., "
                             f"the manifest says {entry['count']} hashing {str(entry['content_hash'])[:16]}...")
    except PyMongoError as exc:
        raise translate(exc, operation=f"deep verify of {s.id}") from exc
    finally:
        try:
            gateway.drop_database(name)
        except (PyMongoError, AstroDBError):
            log.warning("deep verify: could not drop the scratch database %s; drop it by hand", name)

"""A backup repository: a directory of backup sets, each a directory with a ``manifest.json``.

    REPO/
      20250301T020000123000Z-full/         manifest.json, users.bson.gz, ..., journal.bson.gz
      20250302T020000456000Z-incremental/  manifest.json, users.bson.gz, users.deleted.bson.gz, ...

A set is written into a hidden staging directory and renamed into place only once its manifest
is complete, so a crashed backup never leaves a set that looks whole. Sets are ordered by the end
of their time window (``window.to``); every set's window starts where the previous one ended, so
the journals of consecutive sets cover time without gaps.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import BackupError, BackupIntegrityError

__all__ = ["Repository", "BackupSet", "MANIFEST", "FORMAT", "parse_time", "format_time", "select_kept"]

MANIFEST = "manifest.json"
FORMAT = 1
_STAGING = ".staging-"


def parse_time(value: Any) -> _dt.datetime:
    """An aware UTC datetime from a datetime or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, _dt.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = _dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise BackupError(f"not an ISO-8601 time: {value!r} (e.g. 2025-03-01T12:30:00Z)") from exc
    else:
        raise BackupError(f"expected a datetime or an ISO-8601 string, got {type(value).__name__}")
    return when.replace(tzinfo=_dt.timezone.utc) if when.tzinfo is None else when.astimezone(_dt.timezone.utc)


def format_time(value: _dt.datetime | None) -> str | None:
    return None if value is None else parse_time(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BackupSet:
    """One set in the repository, as its manifest describes it."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")

    @property
    def start(self) -> _dt.datetime | None:
        value = self.manifest["window"].get("from")
        return None if value is None else parse_time(value)

    @property
    def end(self) -> _dt.datetime:
        return parse_time(self.manifest["window"]["to"])

    def file(self, relative: str) -> Path:
        return self.path / relative

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id, "kind": self.kind, "parent": self.parent, "from": m["window"].get("from"),
            "to": m["window"]["to"], "documents": {c: e["count"] for c, e in m["collections"].items()},
            "deleted": {c: e.get("deleted", 0) for c, e in m["collections"].items() if e.get("deleted")},
            "journal_entries": m["journal"]["count"], "bytes": sum(f["bytes"] for f in m["files"].values()),
        }


class Repository:
    """The backup sets under one directory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"<backup Repository {self.path}>"

    def ensure(self) -> Repository:
        """Create the repository directory itself, never its parents: a mistyped
        ``/mnt/bakcup/astro`` must fail, not quietly fill the wrong disk."""
        if not self.path.parent.is_dir():
            raise BackupError(
                f"cannot create the backup repository {self.path}: its parent directory "
                f"{self.path.parent} does not exist (create it first, or check the path)"
            )
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise BackupError(f"cannot create the backup repository {self.path}: {exc}") from exc
        return self

    def require(self) -> Repository:
        if not self.path.is_dir():
            raise BackupError(f"no backup repository at {self.path}")
        return self

    def set_dirs(self) -> list[Path]:
        """Directories that should be sets (staging directories excluded)."""
        self.require()
        return sorted(p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))

    def sets(self) -> list[BackupSet]:
        """Every set, oldest first; an unreadable manifest raises ``BackupIntegrityError``."""
        out = [self.load(p) for p in self.set_dirs()]
        return sorted(out, key=lambda s: (s.end, s.id))

    def load(self, directory: Path) -> BackupSet:
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise BackupIntegrityError(f"{path}: manifest missing", path=str(path)) from exc
        except (OSError, ValueError) as exc:
            raise BackupIntegrityError(f"{path}: manifest unreadable ({exc})", path=str(path)) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "window" not in manifest:
            raise BackupIntegrityError(f"{path}: not an astro_db backup manifest (format {FORMAT})", path=str(path))
        return BackupSet(directory, manifest)

    def get(self, set_id: str) -> BackupSet:
        for s in self.sets():
            if s.id == set_id:
                return s
        raise BackupError(f"no backup set {set_id!r} in {self.path}")

    # --- writing -----------------------------------------------------------------------------

    def staging(self, set_id: str) -> Path:
        """A fresh hidden directory to write a set into."""
        self.ensure()
        path = self.path / f"{_STAGING}{set_id}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    def commit(self, staging: Path, manifest: dict[str, Any]) -> BackupSet:
        """Write the manifest, then move the staged set into place (an atomic rename)."""
        tmp = staging / (MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(staging / MANIFEST)
        final = self.path / manifest["id"]
        if final.exists():
            raise BackupError(f"a backup set {final} already exists")
        staging.replace(final)
        return BackupSet(final, manifest)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def delete(self, backup_set: BackupSet) -> None:
        shutil.rmtree(backup_set.path)


def root_full(sets: Iterable[BackupSet]) -> dict[str, str | None]:
    """Set id -> id of the full set its parent chain starts at (``None`` if the chain is broken)."""
    by_id = {s.id: s for s in sets}
    out: dict[str, str | None] = {}
    for s in by_id.values():
        current: BackupSet | None = s
        seen = set()
        while current is not None and current.kind != "full" and current.id not in seen:
            seen.add(current.id)
            current = by_id.get(current.parent or "")
        out[s.id] = current.id if current is not None and current.kind == "full" else None
    return out


def select_kept(sets: list[BackupSet], keep_daily: int | None = None,
                keep_weekly: int | None = None) -> tuple[list[BackupSet], list[BackupSet]]:
    """Which sets a ``prune --keep-daily N --keep-weekly M`` keeps, and which it deletes.

    The newest full set of each of the last ``N`` days that have one is kept, and the newest full
    set of each of the last ``M`` ISO weeks that have one; the incrementals that build on a kept
    full are kept with it. The newest full is always kept. Either rule may be left out (``None``:
    it keeps nothing by itself), but not both: a prune with no retention would delete every set
    but the newest full, which is never what a bare command meant."""
    if keep_daily is None and keep_weekly is None:
        raise BackupError("prune needs a retention: pass --keep-daily N and/or --keep-weekly M")
    keep_daily, keep_weekly = keep_daily or 0, keep_weekly or 0
    if keep_daily < 0 or keep_weekly < 0:
        raise BackupError("--keep-daily and --keep-weekly must be 0 or more")
    fulls = sorted((s for s in sets if s.kind == "full"), key=lambda s: s.end, reverse=True)
    kept_fulls: set[str] = set()
    for key, limit in ((lambda s: s.end.date(), keep_daily), (lambda s: s.end.isocalendar()[:2], keep_weekly)):
        seen: list[Any] = []
        for s in fulls:
            period = key(s)
            if period in seen:
                continue
            if len(seen) >= limit:
                break
            seen.append(period)
            kept_fulls.add(s.id)
    if fulls:
        kept_fulls.add(fulls[0].id)
    roots = root_full(sets)
    kept = [s for s in sets if roots.get(s.id) in kept_fulls]
    deleted = [s for s in sets if roots.get(s.id) not in kept_fulls]
    return kept, deleted

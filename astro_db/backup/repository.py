"""A backup repository: a directory of backup sets, each a directory with a ``manifest.json``.

    REPO/
      20250301T020000123000Z-full/         manifest.json, users.bson.gz, ..., journal.bson.gz
      20250302T020000456000Z-incremental/  manifest.json, users.bson.gz, users.deleted.bson.gz, ...

A set is written into a hidden staging directory and renamed into place only once its manifest
is complete, so a crashed backup never leaves a set that looks whole. Sets are ordered by the end
of their time window (``window.to``); every set's window starts where the previous one ended, so
the journals of consecutive sets cover time without gaps.

**Authenticated sets.** A repository opened with a ``secret`` (``backup_secret``) signs each set
it writes: the manifest, which lists every file's SHA-256, carries ``mac``, an HMAC-SHA256 of its
canonical JSON (sorted keys, no spaces, the ``mac`` key left out) under the secret. Every set is
read through ``load``, and with a secret ``load`` refuses a set whose MAC is missing or wrong, or
whose directory is not named by its manifest's id (a signed set renamed), with
``BackupIntegrityError``: whoever can write the repository (a shared bucket, a backup host) but
does not hold the secret cannot change a set, rename one or add one that any reader (verify,
restore, its erasure ledger, prune, the parent of the next incremental) accepts. The checksums
alone find damage, not a forger, who rewrites the manifest too. Without a secret, MACs are not
checked. ``sign`` signs the sets of a repository that predate the secret, once the operator has
verified them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from ..errors import BackupError, BackupIntegrityError

__all__ = ["Repository", "BackupSet", "MANIFEST", "FORMAT", "MAC_KEY", "parse_time", "format_time", "select_kept"]

MANIFEST = "manifest.json"
FORMAT = 1
_STAGING = ".staging-"
MAC_KEY = "mac"  # the manifest's HMAC-SHA256 under backup_secret, "hmac-sha256:<hex>"
_MAC_SCHEME = "hmac-sha256:"


def manifest_mac(manifest: dict[str, Any], secret: str | bytes) -> str:
    """The MAC of ``manifest`` (its ``mac`` key left out) under ``secret``."""
    body = json.dumps({k: v for k, v in manifest.items() if k != MAC_KEY}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return _MAC_SCHEME + hmac.new(key, body, hashlib.sha256).hexdigest()


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


@overload
def format_time(value: _dt.datetime) -> str: ...
@overload
def format_time(value: None) -> None: ...
def format_time(value: _dt.datetime | None) -> str | None:
    return None if value is None else parse_time(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BackupSet:
    """One set in the repository, as its manifest describes it."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        set_id: str = self.manifest["id"]
        return set_id

    @property
    def kind(self) -> str:
        kind: str = self.manifest["kind"]
        return kind

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

    def __init__(self, path: str | os.PathLike[str], secret: str | bytes | None = None) -> None:
        self.path = Path(path).expanduser()
        self._secret = secret or None  # never shown: not in the repr

    @property
    def signed(self) -> bool:
        """Whether sets are signed when written and their MACs checked when read."""
        return self._secret is not None

    def __repr__(self) -> str:
        return f"<backup Repository {self.path}{' (signed)' if self._secret is not None else ''}>"

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
        if self._secret is not None:
            self._authenticate(path, manifest)
        return BackupSet(directory, manifest)

    def _authenticate(self, path: Path, manifest: dict[str, Any]) -> None:
        """Raise ``BackupIntegrityError`` unless ``manifest`` carries its MAC under the secret and
        names the directory it is in."""
        assert self._secret is not None
        mac = manifest.get(MAC_KEY)
        if not isinstance(mac, str) or not mac.startswith(_MAC_SCHEME):
            raise BackupIntegrityError(
                f"{path}: the set is not signed, and backup_secret is set: it was taken without the secret, or "
                "written by someone else (sign the sets you have verified with 'astro-db backup sign')", path=str(path))
        if not hmac.compare_digest(mac, manifest_mac(manifest, self._secret)):
            raise BackupIntegrityError(
                f"{path}: the manifest's MAC does not match: the manifest was changed after the backup, or signed "
                "under another backup_secret", path=str(path))
        if manifest.get("id") != path.parent.name:
            raise BackupIntegrityError(
                f"{path}: the set is signed as {manifest.get('id')!r} but lies in {path.parent.name!r} (moved or "
                "copied under another name)", path=str(path))

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
        """Write the manifest (signed, with a secret), then move the staged set into place (an
        atomic rename)."""
        if self._secret is not None:
            manifest = {**manifest, MAC_KEY: manifest_mac(manifest, self._secret)}
        _write_manifest(staging, manifest)
        final = self.path / manifest["id"]
        if final.exists():
            raise BackupError(f"a backup set {final} already exists")
        staging.replace(final)
        return BackupSet(final, manifest)

    def sign(self) -> list[str]:
        """Sign every set that carries no MAC yet (sets taken before ``backup_secret`` was set),
        in place; the ids signed. A set that carries one must match it (``BackupIntegrityError``
        otherwise, nothing signed). Sign only sets you have verified: a MAC vouches for what it
        signs."""
        if self._secret is None:
            raise BackupError("signing needs backup_secret (ASTRO_DB_BACKUP_SECRET)")
        unsigned = []
        for directory in self.set_dirs():
            manifest = Repository(self.path).load(directory).manifest
            if MAC_KEY in manifest:
                self.load(directory)
            else:
                unsigned.append((directory, manifest))
        for directory, manifest in unsigned:
            if manifest.get("id") != directory.name:
                raise BackupIntegrityError(f"{directory / MANIFEST}: the manifest names {manifest.get('id')!r}, not "
                                           "its directory: nothing signed", path=str(directory / MANIFEST))
        for directory, manifest in unsigned:
            _write_manifest(directory, {**manifest, MAC_KEY: manifest_mac(manifest, self._secret)})
        return [directory.name for directory, _ in unsigned]

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def delete(self, backup_set: BackupSet) -> None:
        shutil.rmtree(backup_set.path)


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """``directory``'s manifest written whole or not at all (a temporary file, synced, renamed)."""
    tmp = directory / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(directory / MANIFEST)


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
    rules: tuple[tuple[Callable[[BackupSet], Any], int], ...] = (
        (lambda s: s.end.date(), keep_daily), (lambda s: s.end.isocalendar()[:2], keep_weekly)
    )
    for key, limit in rules:
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

"""No personal value is ever stored, journalled, backed up, cached or logged in clear, on random histories.

Hypothesis draws a history of writes through every public write path (``create``,
``create_many``, ``update`` / ``update_many`` with ``$set`` of a field, of a list position, of
``$[]``, of a whole embedded document or list, ``$push`` / ``$addToSet`` with and without
``$each``, ``upsert_many`` inserting and updating, ``expected_revision=``, ``returning=False``,
transactions committed and aborted), cached reads between them, backup sets, key rotation and
the erasure of one user. Each personal value written is a fresh marker (a random string, or a
random birth instant). After the history every stored byte is scanned: every collection of the
database and the key vault (BSON as stored), every backup file (decompressed), the query
cache's entries and every log record of the ``astro_db`` loggers at DEBUG. No marker may be in
any of them; a marker written to a field the docs keep in clear (``activity``) must be found,
which shows the scan sees what it should. The erased user's values are read back nowhere: not
through the service, not in her export, not from a backup taken before her erasure and restored.

The differential: the same history's service reads give every marker back (the values were
written), the stored bytes none of them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import struct
import uuid
from pathlib import Path
from typing import Any

from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealed_scan import raw_documents

from astro_db import Database, backup, errors
from astro_db.changes import revision_of
from astro_db.migrations import Migrator
from astro_db.security.crypto import FieldCrypto, is_unreadable, new_key

UTC = dt.timezone.utc
DAYS = [dt.datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)]
MODELS = ("User", "BirthChart", "PlanetaryInsight", "TimingRecommendation")


class Markers:
    """Fresh personal values, remembered per owner so the erased user's can be told apart."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}  # marker -> owner tag
        self.dates: dict[dt.datetime, str] = {}
        self.clear: list[str] = []  # markers written to fields kept in clear

    def text(self, owner: str) -> str:
        value = "Qz" + uuid.uuid4().hex[:12].upper()
        self.texts[value] = owner
        return value

    def email(self, owner: str) -> str:
        local = "qz" + uuid.uuid4().hex[:12]  # stored lower-cased: the marker is the lower-case local part
        self.texts[local] = owner
        return f"{local}@example.com"

    def date(self, owner: str) -> dt.datetime:
        raw = uuid.uuid4().int
        when = dt.datetime(1901, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=raw % (60 * 365 * 86400),
                                                                    milliseconds=1 + raw % 997)
        self.dates[when] = owner
        return when

    def plain(self) -> str:
        value = "Qc" + uuid.uuid4().hex[:12].upper()
        self.clear.append(value)
        return value

    def needles(self, owner: str | None = None) -> list[tuple[str, bytes, str]]:
        """(what, bytes to find in BSON, text to find in logs) for each personal marker."""
        out = [(m, m.encode(), m) for m, o in self.texts.items() if owner is None or o == owner]
        for when, o in self.dates.items():
            if owner is None or o == owner:
                ms = int(when.timestamp() * 1000)
                out.append((when.isoformat(), struct.pack("<q", ms), when.strftime("%Y-%m-%dT%H:%M:%S")))
                out.append((when.isoformat(), str(ms).encode(), str(when)[:19]))
        return out


step = st.one_of(
    st.tuples(st.just("create_user")),
    st.tuples(st.just("create_many_users"), st.integers(1, 3)),
    st.tuples(st.just("rename_user"), st.integers(0, 9), st.sampled_from(["plain", "returning", "revision"])),
    st.tuples(st.just("set_email"), st.integers(0, 9)),
    st.tuples(st.just("create_chart"), st.integers(0, 9)),
    st.tuples(st.just("set_chart"), st.integers(0, 9),
              st.sampled_from(["birthData", "birthData.location", "birthData.location.name", "birthData.date",
                               "birthData+unset"])),
    st.tuples(st.just("create_insight"), st.integers(0, 9), st.sampled_from(DAYS)),
    st.tuples(st.just("set_insight"), st.integers(0, 9),
              st.sampled_from(["summary", "recommendations", "recommendations.0", "recommendations.$[]", "$push",
                               "$push$each", "$addToSet", "$addToSet$each", "update_many"])),
    st.tuples(st.just("upsert_insights"), st.integers(0, 9), st.lists(st.sampled_from(DAYS), min_size=1, max_size=3,
                                                                       unique=True)),
    st.tuples(st.just("create_timing"), st.integers(0, 9)),
    st.tuples(st.just("set_timing"), st.integers(0, 9),
              st.sampled_from(["risks", "risks.0", "risks.0.description", "risks.$[].description", "$push",
                               "$push$each"])),
    st.tuples(st.just("transaction"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("read"), st.sampled_from(MODELS)),
    st.tuples(st.just("backup"), st.booleans()),
    st.tuples(st.just("rotate")),
    st.tuples(st.just("migrate"), st.booleans()),
)

MIGRATION = '''
version = {version}
description = "a migration writing personal values"


def up(ctx):
    if {by_function}:
        ctx.migrate("BirthChart", {{"m": {{"$ne": {version}}}}}, lambda doc: {{"$set": {{
            "birthData.location": {{"name": {place!r}, "coordinates": [5.0, 6.0]}}, "m": {version}}}}})
    else:
        ctx.migrate("User", {{"m": {{"$ne": {version}}}}}, {{"$set": {{"name": {name!r}, "m": {version}}}}})
'''



def _ids(db: Database, collection: str) -> list[Any]:
    return [d["_id"] for d in db.mongo[collection].find({}, {"_id": 1}, sort=[("_id", 1)])]


def _pick(items: list[Any], n: int) -> Any:
    return items[n % len(items)] if items else None


def _owner_of(db: Database, users: dict[Any, str], collection: str, _id: Any) -> str:
    doc = db.mongo[collection].find_one({"_id": _id}, {"userId": 1})
    return users.get(doc["userId"] if doc else None, "?")


def _apply(db: Database, m: Markers, users: dict[Any, str], move: tuple[Any, ...]) -> None:
    name = move[0]
    uids = sorted(users)
    if name == "create_user":
        tag = f"u{len(users)}"
        users[db.create("User", {"email": m.email(tag), "name": m.text(tag)}).id] = tag
    elif name == "create_many_users":
        tags = [f"u{len(users) + i}" for i in range(move[1])]
        made = db.create_many("User", [{"email": m.email(t), "name": m.text(t)} for t in tags])
        for doc, tag in zip(made, tags, strict=True):
            users[doc.id] = tag
    elif name == "rename_user":
        uid = _pick(uids, move[1])
        how = move[2]
        if how == "plain":
            db.update("User", {"id": uid}, {"name": m.text(users[uid])})
        elif how == "returning":
            db.update("User", {"id": uid}, {"$set": {"name": m.text(users[uid])}}, returning=False)
        else:
            current = db.mongo["users"].find_one({"_id": uid})
            revision = revision_of(current) if current else 0
            try:
                db.update("User", {"id": uid}, {"name": m.text(users[uid])}, expected_revision=revision)
            except errors.ConflictError:
                pass
    elif name == "set_email":
        uid = _pick(uids, move[1])
        db.update("User", {"id": uid}, {"$set": {"email": m.email(users[uid])}})
    elif name == "create_chart":
        uid = _pick(uids, move[1])
        tag = users[uid]
        db.create("BirthChart", {"userId": uid, "birthData": {
            "date": m.date(tag), "timezone": "Europe/Paris",
            "location": {"name": m.text(tag), "coordinates": [2.35, 48.85]}}})
    elif name == "set_chart":
        cid = _pick(_ids(db, "birthCharts"), move[1])
        if cid is None:
            return
        tag = _owner_of(db, users, "birthCharts", cid)
        path = move[2]
        update: dict[str, Any]
        if path == "birthData":
            update = {"$set": {"birthData": {"date": m.date(tag), "timezone": "UTC",
                                             "location": {"name": m.text(tag), "coordinates": [1.0, 2.0]}}}}
        elif path == "birthData.location":
            update = {"$set": {"birthData.location": {"name": m.text(tag), "coordinates": [3.0, 4.0]}}}
        elif path == "birthData.location.name":
            update = {"$set": {"birthData.location.name": m.text(tag)}}
        elif path == "birthData.date":
            update = {"$set": {"birthData.date": m.date(tag)}}
        else:
            update = {"$set": {"birthData.date": m.date(tag)}, "$unset": {"birthData.location": ""}}
        db.update("BirthChart", {"id": cid}, update)
    elif name == "create_insight":
        uid = _pick(uids, move[1])
        tag = users[uid]
        try:
            db.create("PlanetaryInsight", {"userId": uid, "date": move[2], "energyLevel": 50,
                                           "recommendations": [m.text(tag), m.text(tag)], "summary": m.text(tag)})
        except errors.DuplicateKeyError:
            pass
    elif name == "set_insight":
        iid = _pick(_ids(db, "planetaryInsights"), move[1])
        if iid is None:
            return
        tag = _owner_of(db, users, "planetaryInsights", iid)
        how = move[2]
        updates: dict[str, Any] = {
            "summary": {"$set": {"summary": m.text(tag)}},
            "recommendations": {"$set": {"recommendations": [m.text(tag)]}},
            "recommendations.0": {"$set": {"recommendations.0": m.text(tag)}},
            "recommendations.$[]": {"$set": {"recommendations.$[]": m.text(tag)}},
            "$push": {"$push": {"recommendations": m.text(tag)}},
            "$push$each": {"$push": {"recommendations": {"$each": [m.text(tag), m.text(tag)]}}},
            "$addToSet": {"$addToSet": {"recommendations": m.text(tag)}},
            "$addToSet$each": {"$addToSet": {"recommendations": {"$each": [m.text(tag)]}}},
        }
        if how == "update_many":
            owner = db.mongo["planetaryInsights"].find_one({"_id": iid})["userId"]
            db.update_many("PlanetaryInsight", {"userId": owner}, {"$set": {"summary": m.text(users[owner])}})
        else:
            try:
                db.update("PlanetaryInsight", {"id": iid}, updates[how])
            except errors.ValidationError:
                pass  # more than 20 recommendations: refused, nothing written
    elif name == "upsert_insights":
        uid = _pick(uids, move[1])
        tag = users[uid]
        db.upsert_many("PlanetaryInsight", [{"userId": uid, "date": d, "energyLevel": 60, "summary": m.text(tag),
                                             "recommendations": [m.text(tag)]} for d in move[2]], on=("userId", "date"))
    elif name == "create_timing":
        uid = _pick(uids, move[1])
        tag = users[uid]
        db.create("TimingRecommendation", {"userId": uid, "activity": m.plain(),
                                           "risks": [{"level": "low", "description": m.text(tag)}]})
    elif name == "set_timing":
        tid = _pick(_ids(db, "timingRecommendations"), move[1])
        if tid is None:
            return
        tag = _owner_of(db, users, "timingRecommendations", tid)
        risk = {"level": "high", "description": m.text(tag)}
        updates = {
            "risks": {"$set": {"risks": [risk]}},
            "risks.0": {"$set": {"risks.0": risk}},
            "risks.0.description": {"$set": {"risks.0.description": m.text(tag)}},
            "risks.$[].description": {"$set": {"risks.$[].description": m.text(tag)}},
            "$push": {"$push": {"risks": risk}},
            "$push$each": {"$push": {"risks": {"$each": [risk, {"level": "low", "description": m.text(tag)}]}}},
        }
        db.update("TimingRecommendation", {"id": tid}, updates[move[2]])
    elif name == "transaction":
        uid = _pick(uids, move[1])
        tag = users[uid]
        try:
            with db.transaction() as tx:
                db.update("User", {"id": uid}, {"name": m.text(tag)}, transaction=tx)
                db.create("TimingRecommendation", {"userId": uid, "activity": "tx",
                                                   "risks": [{"level": "low", "description": m.text(tag)}]},
                          transaction=tx)
                if not move[2]:
                    raise _Abort
        except _Abort:
            pass
    elif name == "read":
        db.find(move[1], {}, lean=True, cache=True)
        db.find(move[1], {}, cache=True)


class _Abort(Exception):
    pass


def _cache_strings(value: Any, seen: set[int], out: list[bytes], depth: int = 0) -> None:
    """Every str and bytes reachable from ``value`` (the query cache's entries)."""
    if id(value) in seen or depth > 40:
        return
    seen.add(id(value))
    if isinstance(value, str):
        out.append(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray)):
        out.append(bytes(value))
    elif isinstance(value, dt.datetime):
        out.append(struct.pack("<q", int(value.replace(tzinfo=value.tzinfo or UTC).timestamp() * 1000)))
    elif isinstance(value, dict):
        for k, v in value.items():
            _cache_strings(k, seen, out, depth + 1)
            _cache_strings(v, seen, out, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _cache_strings(v, seen, out, depth + 1)
    elif hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        for name in getattr(value, "__slots__", ()):
            _cache_strings(getattr(value, name, None), seen, out, depth + 1)
        for v in getattr(value, "__dict__", {}).values():
            _cache_strings(v, seen, out, depth + 1)


def _at_rest(db: Database, repo: Path) -> dict[str, bytes]:
    """Every stored byte: each collection of the database and of the key vault's database (BSON
    as stored), each backup file (decompressed) and the query cache's entries."""
    out = {"collections": b"\0".join(raw_documents(db))}
    vault = db.executor.runtime.crypto.vault
    if vault is not None:
        vault_db = db.mongo.client[vault.namespace.partition(".")[0]]
        out["key vault"] = b"\0".join(bson_of(d) for name in vault_db.list_collection_names()
                                      for d in vault_db[name].find())
    files = []
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            files.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    out["backup files"] = b"\0".join(files)
    found: list[bytes] = []
    _cache_strings(db.executor.runtime.cache._entries, set(), found)
    out["query cache"] = b"\0".join(found)
    return out


def bson_of(doc: dict[str, Any]) -> bytes:
    import bson

    return bson.encode(doc)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _leaks(m: Markers, stores: dict[str, bytes], log_text: str, owner: str | None = None) -> list[str]:
    found = []
    for what, needle, text in m.needles(owner):
        for where, data in stores.items():
            if needle in data:
                found.append(f"{what} in {where}")
        if text in log_text:
            found.append(f"{what} in the log: {next(ln for ln in log_text.splitlines() if text in ln)[:300]}")
    return found


def _opened_everywhere(db: Database) -> str:
    """What the service reads back: every document of every model, lean, opened."""
    return repr([db.find(model, {}, lean=True, cache=False) for model in MODELS])


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
@given(history=st.lists(step, min_size=1, max_size=12), erase=st.booleans())
def test_no_personal_value_is_stored_backed_up_cached_or_logged_in_clear(tmp_path_factory, history, erase):
    repo = tmp_path_factory.mktemp("repo")
    capture = _Capture()
    logger = logging.getLogger("astro_db")
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    key, older = new_key(), None
    try:
        db = Database(f"mongomock://localhost/rest{uuid.uuid4().hex[:8]}", encryption_key=key,
                      cache_models=MODELS).connect()
        try:
            m = Markers()
            users: dict[Any, str] = {}
            _apply(db, m, users, ("create_user",))
            victim_tag = "victim"
            victim = db.create("User", {"email": m.email(victim_tag), "name": m.text(victim_tag)}).id
            users[victim] = victim_tag
            db.create("BirthChart", {"userId": victim, "birthData": {
                "date": m.date(victim_tag), "timezone": "UTC",
                "location": {"name": m.text(victim_tag), "coordinates": [0.0, 0.0]}}})
            db.create("PlanetaryInsight", {"userId": victim, "date": DAYS[0], "energyLevel": 1,
                                           "recommendations": [m.text(victim_tag)], "summary": m.text(victim_tag)})
            backup.backup(db, repo)
            migrated: list[Path] = []
            for move in history:
                if move[0] == "backup":
                    backup.backup(db, repo, full=move[1])
                elif move[0] == "migrate":
                    migrations = tmp_path_factory.mktemp("migrations", numbered=True) if not migrated else migrated[0]
                    migrated[:] = [migrations]
                    version = len(list(migrations.glob("*.py"))) + 1
                    (migrations / f"{version:04d}_m.py").write_text(MIGRATION.format(
                        version=version, by_function=move[1], place=m.text("migration"), name=m.text("migration")))
                    Migrator(db, migrations).up()
                elif move[0] == "rotate":
                    older, key = key, new_key()
                    db.executor.runtime.crypto = FieldCrypto.from_config(
                        db.config.replace(encryption_key=key, encryption_keys=older), db.executor.runtime.registry)
                    db.rotate_keys()
                else:
                    _apply(db, m, users, move)
            # the differential: the service gives back every value still stored (the marker of a
            # value replaced since is found in the change records' post-images only, sealed)
            opened = _opened_everywhere(db)
            assert any(t in opened for t in m.texts), "the service reads back the values written"
            with Database(f"mongomock://localhost/copy{uuid.uuid4().hex[:8]}", encryption_key=key,
                          encryption_keys=older) as copy:
                backup.restore(repo, copy)  # what a restore writes: the same sealed values
                restored = b"\0".join(raw_documents(copy))
            stores = {**_at_rest(db, repo), "a restored copy": restored}
            assert all(c.encode() in stores["collections"] for c in m.clear), "the scan sees what is in clear"
            if erase:
                before = tmp_path_factory.mktemp("before")
                backup.backup(db, before)  # a set taken before the erasure, in a repository of its own
                db.erase_user(victim)
                backup.backup(db, repo)
                stores = {**_at_rest(db, repo), "a restored copy": restored}
            assert not _leaks(m, stores, "\n".join(capture.lines))
            if erase:
                _erased_nowhere(db, m, before, victim, victim_tag)
        finally:
            db.disconnect()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def _erased_nowhere(db: Database, m: Markers, repo: Path, victim: Any, tag: str) -> None:
    """After ``erase_user``: none of her values reads back through the service, her export or
    a backup taken before the erasure and restored (without the erasure ledger: her documents
    come back, each value ``UNREADABLE``)."""
    needles = [text for _what, _b, text in m.needles(tag)]
    assert not [n for n in needles if n in _opened_everywhere(db)]
    assert not [n for n in needles if n in repr(db.export_user(victim))]
    with Database(f"mongomock://localhost/back{uuid.uuid4().hex[:8]}", encryption_key=db.config.encryption_key,
                  encryption_keys=db.config.encryption_keys) as target:
        backup.restore(repo, target)
        restored = target.find("User", {"id": victim}, lean=True)
        assert restored and is_unreadable(restored[0]["name"]) and is_unreadable(restored[0]["email"])
        shown = _opened_everywhere(target)
        assert not [n for n in needles if n in shown]

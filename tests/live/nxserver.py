"""Run an nx-27017 server (through tests/nx_launcher.py) for the live test tier.

``NxServer`` owns one server process on a loopback port and a data directory;
fault tests use ``kill()`` (SIGKILL) and ``restart()``. ``self_check(url)``
proves that the launcher's patches (ObjectId filters, transaction inserts,
updated datetimes) still work against a server.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
from bson import ObjectId
from pymongo.errors import PyMongoError

LAUNCHER = Path(__file__).resolve().parent.parent / "nx_launcher.py"
PINNED = "nx-27017==0.8.1 neosqlite==1.17.2"
START_TIMEOUT = 15.0  # seconds; a start usually takes well under one


def free_port(host: str = "127.0.0.1") -> int:
    """A currently unused TCP port on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGKILL the server if the test process dies without cleanup.

    Caution: PR_SET_PDEATHSIG fires when the *thread* that started the server exits, not the
    process. Start and restart the server from a thread that outlives it (the test's own),
    never from a short-lived helper thread, or the server dies with that thread."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class NxServer:
    """One nx-27017 server process: fixed data directory, fixed port."""

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None,
                 host: str = "127.0.0.1", command: list[str] | None = None) -> None:
        # command: what runs the server (its nx-27017 arguments are appended);
        # default: the patched launcher. test_nxserver passes the stock module.
        self.command = list(command) if command else [sys.executable, str(LAUNCHER)]
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port  # picked on first start, then kept across restarts
        self.proc: subprocess.Popen | None = None
        self.pid_file = self.data_dir / "nx.pid"
        self.log_file = self.data_dir / "nx.log"
        self.out_file = self.data_dir / "nx.out"  # stdout/stderr of the process
        self.last_start_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> NxServer:
        if self.alive():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        # A SIGKILLed server leaves its pid file; nx-27017 refuses to start if
        # that pid happens to be alive again, so remove it (we own this dir).
        self.pid_file.unlink(missing_ok=True)
        cmd = [
            *self.command,
            "--data-dir", str(self.data_dir),
            "--port", str(self.port),
            "--pid-file", str(self.pid_file),
            "--log-file", str(self.log_file),
            "--host", self.host,
        ]
        began = time.monotonic()
        with open(self.out_file, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._wait_ready(began + START_TIMEOUT)
        self.last_start_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nx-27017 exited with code {self.proc.returncode} during start-up"
                    f"\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
                self._ping(timeout_ms=1000)
                return
            except (OSError, PyMongoError) as exc:
                last_error = exc
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"nx-27017 did not answer a ping on {self.host}:{self.port} within "
            f"{START_TIMEOUT:.0f} s (last error: {last_error!r})\n{self.log_tail()}"
        )

    def _ping(self, timeout_ms: int) -> None:
        client = pymongo.MongoClient(
            self.host, self.port, directConnection=True,
            serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def restart(self) -> NxServer:
        """kill -9, then start again on the same data directory and port."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Terminate politely; SIGKILL if it has not exited within 5 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    # -- inspection --------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, dbname: str = "test") -> str:
        if self.port is None:
            raise RuntimeError("NxServer has no port yet: call start() first")
        return f"mongodb://{self.host}:{self.port}/{dbname}"

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.out_file, self.log_file):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no server output)"

    def __repr__(self) -> str:
        state = "alive" if self.alive() else "stopped"
        return f"NxServer({str(self.data_dir)!r}, port={self.port}, {state})"


@contextlib.contextmanager
def temporary_server(prefix: str) -> Iterator[NxServer]:
    """A started server on a fresh temporary data directory, stopped and its directory removed
    after (the benchmark scripts' server)."""
    data_dir = tempfile.mkdtemp(prefix=prefix)
    server = NxServer(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def self_check(url: str) -> None:
    """Prove that tests/nx_launcher.py's patches work on ``url``.

    Without them nx-27017 0.8.1 / neosqlite 1.17.2 silently match nothing for an
    ObjectId filter on a non-_id field, and an update stores a datetime as a
    string. Raises RuntimeError naming the failing op.
    """
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database(default="astro_self_check")
        coll = db[f"nx_self_check_{uuid.uuid4().hex[:8]}"]
        try:
            _run_self_check(coll)
        finally:
            coll.drop()
    finally:
        client.close()


def _run_self_check(coll) -> None:
    oid = ObjectId()
    doc_id = coll.insert_one({"userId": oid, "n": 1}).inserted_id
    coll.insert_one({"userId": ObjectId(), "n": 2})  # decoy: a dropped filter shows up

    checks = [
        ("find({'userId': oid})",
         lambda: [d["_id"] for d in coll.find({"userId": oid})] == [doc_id]),
        ("count_documents({'userId': oid})",
         lambda: coll.count_documents({"userId": oid}) == 1),
        ("count_documents({'_id': id})",
         lambda: coll.count_documents({"_id": doc_id}) == 1),
        ("update_one({'userId': oid}, ...)",
         lambda: coll.update_one({"userId": oid}, {"$set": {"seen": True}}).matched_count == 1),
        ("aggregate([{'$match': {'userId': oid}}])",
         lambda: [str(d["_id"]) for d in coll.aggregate([{"$match": {"userId": oid}}])]
         == [str(doc_id)]),
        ("distinct('n', {'userId': oid})",
         lambda: coll.distinct("n", {"userId": oid}) == [1]),
        ("delete_many({'userId': oid})",
         lambda: coll.delete_many({"userId": oid}).deleted_count == 1
         and coll.count_documents({}) == 1),
        ("a transaction's first insert with readConcern stores one document",
         lambda: _transaction_inserts_once(coll.database.client, coll)),
        ("$set / $push of a datetime reads back as a datetime (and matches a range)",
         lambda: _updated_datetimes_read_back(coll)),
        ("a range on _id over ObjectIds answers as MongoDB does (in SQL: the keyset read)",
         lambda: _id_ranges_answer_as_mongodb(coll)),
        ("a keyset read's $or (an ObjectId range and the type brackets after it) answers as MongoDB does",
         lambda: _id_keysets_answer_as_mongodb(coll)),
        ("Binary subtypes 4 and 6 read back as stored and match (an _id, a field, $in, update, delete), "
         "plain bytes beside them too",
         lambda: _binaries_keep_their_subtype(coll)),
        ("count_documents answers as MongoDB does (missing fields, arrays, $ne, skip and limit)",
         lambda: _counts_answer_as_mongodb(coll)),
        ("$set of an ObjectId (in SQL: the service's op id) reads back as an ObjectId and matches",
         lambda: _set_object_ids_read_back(coll)),
        ("update_many / delete_many by an _id $in of ObjectIds (in SQL) change exactly those documents",
         lambda: _id_in_writes_answer_as_mongodb(coll)),
        ("inclusion and exclusion projections (no deep copy: Slowness 16) answer as MongoDB does",
         lambda: _projections_answer_as_mongodb(coll)),
        ("a write command in one SQLite transaction keeps per-document results (duplicates, ordered, aborts)",
         lambda: _write_commands_keep_per_document_results(coll)),
        ("findAndModify refused by a unique index answers E11000, as MongoDB does",
         lambda: _find_and_modify_answers_a_duplicate_key(coll)),
        ("findAndModify of an $inc on a string answers an error (TypeMismatch), as MongoDB does",
         lambda: _find_and_modify_answers_a_refusal(coll)),
    ]
    for name, check in checks:
        try:
            ok = check()
        except pymongo.errors.OperationFailure as exc:
            ok, name = False, f"{name} raised {exc}"
        if not ok:
            raise RuntimeError(
                f"nx-27017 patch (tests/nx_launcher.py) no longer works: {name}; "
                f"check the pinned versions {PINNED}"
            )


def _find_and_modify_answers_a_duplicate_key(coll) -> bool:
    other = coll.database[f"{coll.name}_fam"]
    try:
        other.create_index([("k", 1)], unique=True)
        other.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 2}])
        try:
            other.find_one_and_update({"_id": 2}, {"$set": {"k": 1}})
        except pymongo.errors.DuplicateKeyError:
            return other.find_one({"_id": 2}) == {"_id": 2, "k": 2}
        return False
    finally:
        other.drop()


def _find_and_modify_answers_a_refusal(coll) -> bool:
    other = coll.database[f"{coll.name}_famx"]
    try:
        other.insert_one({"_id": 1, "s": "x"})
        try:
            other.find_one_and_update({"_id": 1}, {"$inc": {"s": 1}})
        except pymongo.errors.DuplicateKeyError:
            return False
        except pymongo.errors.OperationFailure as exc:
            return exc.code == 14 and other.find_one({"_id": 1}) == {"_id": 1, "s": "x"}
        return False
    finally:
        other.drop()


def _binaries_keep_their_subtype(coll) -> bool:
    """Bug 7: a data key's UUID _id (subtype 4) and a ciphertext (subtype 6) must come back as
    themselves, and a query on them must match (the key vault's reads and writes)."""
    from bson.binary import Binary

    key, sealed = Binary(uuid.uuid4().bytes, 4), Binary(b"\x02ciphertext", 6)
    coll.insert_one({"_id": key, "keyAltNames": ["user:check"], "v": sealed})
    coll.insert_one({"_id": "ref", "key": key})
    doc = coll.find_one({"_id": key})
    return (doc is not None and type(doc["_id"]) is Binary and doc["_id"].subtype == 4 and doc["v"] == sealed
            and doc["v"].subtype == 6
            and coll.find_one({"_id": {"$in": [key]}}, {"_id": 1}) is not None
            and coll.find_one({"key": key}, {"_id": 1})["_id"] == "ref"
            and coll.update_one({"_id": key}, {"$set": {"w": sealed}}).matched_count == 1
            and coll.find_one({"keyAltNames": {"$in": ["user:check"]}})["w"].subtype == 6
            and coll.delete_many({"_id": {"$in": [key, "ref"]}}).deleted_count == 2
            and _plain_bytes_beside_subtypes(coll, key))


def _plain_bytes_beside_subtypes(coll, key) -> bool:
    """Bug 7 too: plain bytes (subtype 0) in a command with a Binary of another subtype (a
    ``findAndModify`` returning the new document, a replace) failed "Object of type bytes is not
    JSON serializable" (tests/live/test_binary_subtypes_live.py)."""
    from bson.binary import Binary
    from pymongo import ReplaceOne, ReturnDocument

    coll.insert_one({"_id": "mixed", "a": b"old", "b": {"c": key}})
    after = coll.find_one_and_update({"_id": "mixed"}, {"$set": {"a": key, "b": {"c": b"z"}}},
                                     return_document=ReturnDocument.AFTER)
    replaced = coll.bulk_write([ReplaceOne({"_id": "mixed"}, {"_id": "mixed", "a": b"x", "b": Binary(b"y", 0x80)})])
    doc = coll.find_one({"_id": "mixed"})
    return (after is not None and after["b"]["c"] == b"z" and replaced.matched_count == 1
            and doc["a"] == b"x" and doc["b"] == Binary(b"y", 0x80)
            and coll.delete_one({"_id": "mixed"}).deleted_count == 1)


def _transaction_inserts_once(client, coll) -> bool:
    """Bug 3: the readConcern of a transaction's first insert must not become a document."""
    from pymongo.read_concern import ReadConcern

    before = coll.count_documents({})
    with client.start_session() as session:
        session.start_transaction(read_concern=ReadConcern("majority"))
        coll.insert_one({"tx": 1}, session=session)
        session.commit_transaction()
    return coll.count_documents({}) == before + 1


def _updated_datetimes_read_back(coll) -> bool:
    """Bugs 4 and 5: an updated datetime must stay a date, a pushed sub-document a dict."""
    when = datetime.datetime(2026, 11, 25, 8, 33, 21, 761000, tzinfo=datetime.timezone.utc)
    doc_id = coll.insert_one({"log": []}).inserted_id
    coll.update_one({"_id": doc_id}, {"$set": {"at": when}})
    coll.update_one({"_id": doc_id}, {"$push": {"log": {"at": when}}})
    doc = coll.find_one({"_id": doc_id})
    second = datetime.timedelta(seconds=1)
    return (
        isinstance(doc["at"], datetime.datetime)
        and isinstance(doc["log"][0], dict)
        and isinstance(doc["log"][0]["at"], datetime.datetime)
        and coll.count_documents({"_id": doc_id, "at": {"$gte": when - second,
                                                        "$lt": when + second}}) == 1
        and coll.count_documents({"_id": doc_id, "at": {"$gte": when + second}}) == 0
    )


def _id_ranges_answer_as_mongodb(coll) -> bool:
    """Slowness 8: `{"_id": {"$gt": oid}}` sorted by _id, limited, matches what MongoDB matches:
    the ObjectIds past it in order, never an int or a short string _id."""
    base = coll.database[f"{coll.name}_ids"]
    try:
        ids = sorted(ObjectId() for _ in range(6))
        base.insert_many([{"_id": i, "k": n} for n, i in enumerate(ids)])
        base.insert_many([{"_id": 7, "k": 7}, {"_id": "zz", "k": 8}])
        after = [d["_id"] for d in base.find({"_id": {"$gt": ids[1]}}).sort("_id", 1).limit(3)]
        window = [d["_id"] for d in base.find({"_id": {"$gte": ids[2], "$lt": ids[4]}, "k": {"$ne": 3}})]
        below = base.count_documents({"_id": {"$lte": ids[5]}})
        return after == ids[2:5] and window == [ids[2]] and below == 6
    finally:
        base.drop()


def _id_keysets_answer_as_mongodb(coll) -> bool:
    """Slowness 18: the keyset read of a scan in _id order (``ids_after``: ``$or`` of the
    ObjectIds past one and the ``bool`` and ``date`` brackets after them, sorted, limited) answers
    as MongoDB does: the ObjectIds past it in order, then the booleans, never an int or a string
    _id, the rest of the filter applied to every branch, within the limit. (A date _id is left
    out, as nx-27017's own matcher leaves it out: the one difference, unchanged by the patch.)"""
    base = coll.database[f"{coll.name}_keys"]
    try:
        ids = sorted(ObjectId() for _ in range(6))
        base.insert_many([{"_id": i, "k": n % 2} for n, i in enumerate(ids)])
        base.insert_many([{"_id": False, "k": 0}, {"_id": True, "k": 1}, {"_id": 7, "k": 1}, {"_id": "zz", "k": 1}])

        def after(oid, limit, **rest):
            later = [{"_id": {"$gt": oid}}, {"_id": {"$type": "bool"}}, {"_id": {"$type": "date"}}]
            return [d["_id"] for d in base.find({**rest, "$or": later}).sort("_id", 1).limit(limit)]

        return (after(ids[1], 3) == ids[2:5] and after(ids[1], 10) == [*ids[2:], False, True]
                and after(ids[0], 10, k=1) == [ids[1], ids[3], ids[5], True] and after(ids[5], 1) == [False])
    finally:
        base.drop()


def _counts_answer_as_mongodb(coll) -> bool:
    """Slowness 9: PyMongo's count_documents pipeline, answered without the Python aggregation
    tier's copies, counts what MongoDB counts (missing fields, null, arrays, strings beside
    numbers), and what that tier itself counts for the same match: a pipeline of another shape
    (a ``$project`` after the ``$group``) still runs the tier."""
    base = coll.database[f"{coll.name}_counts"]
    try:
        base.insert_many([{"a": 1}, {"a": 2}, {"b": 1}, {"a": None}, {"a": [1, 2]}, {"a": "1"}, {"a": {"x": 1}}])
        mongodb = [({}, {}, 7), ({"a": 1}, {}, 2), ({"a": {"$ne": 1}}, {}, 5), ({"a": {"$exists": False}}, {}, 1),
                   ({"a": {"$gt": 1}}, {}, 2), ({"a": {"$in": [2, "1"]}}, {}, 3), ({"$or": [{"b": 1}, {"a": 2}]}, {}, 3),
                   ({"zz": 3}, {}, 0), ({}, {"skip": 5}, 2), ({}, {"skip": 9}, 0), ({}, {"limit": 4}, 4),
                   ({"a": {"$ne": 1}}, {"skip": 1, "limit": 3}, 3), ({"a": {"$ne": 1}}, {"skip": 4, "limit": 3}, 1)]
        group = {"$group": {"_id": 1, "n": {"$sum": 1}}}
        for filt, options, expected in mongodb:
            if base.count_documents(filt, **options) != expected:
                return False
            if not options:
                tier = list(base.aggregate([{"$match": filt}, group, {"$project": {"n": 1}}]))
                if (tier[0]["n"] if tier else 0) != expected:
                    return False
        return True
    finally:
        base.drop()


def _write_commands_keep_per_document_results(coll) -> bool:
    """Slowness 10: a write command runs in one SQLite transaction, yet answers document by
    document as MongoDB does: an unordered insert keeps every document but the duplicate, an
    ordered one the documents before it; an update_many and a delete_many change what they
    match; a client transaction's abort still undoes its writes, its commit keeps them."""
    from pymongo.errors import BulkWriteError

    base = coll.database[f"{coll.name}_writes"]
    try:
        try:
            base.insert_many([{"_id": n} for n in (1, 2, 1, 3)], ordered=False)
            return False
        except BulkWriteError as exc:
            if [e["index"] for e in exc.details["writeErrors"]] != [2] or exc.details["nInserted"] != 3:
                return False
        try:
            base.insert_many([{"_id": n} for n in (4, 5, 2, 6)], ordered=True)
            return False
        except BulkWriteError as exc:
            if [e["index"] for e in exc.details["writeErrors"]] != [2] or exc.details["nInserted"] != 2:
                return False
        if sorted(d["_id"] for d in base.find()) != [1, 2, 3, 4, 5]:
            return False
        if base.update_many({"_id": {"$gte": 3}}, {"$set": {"k": 1}}).modified_count != 3:
            return False
        if base.delete_many({"k": 1, "_id": {"$lt": 5}}).deleted_count != 2:
            return False
        with coll.database.client.start_session() as session:
            session.start_transaction()
            base.insert_one({"_id": 8}, session=session)
            base.update_one({"_id": 1}, {"$set": {"k": 2}}, session=session)
            session.abort_transaction()
            session.start_transaction()
            base.insert_one({"_id": 9}, session=session)
            session.commit_transaction()
        return sorted((d["_id"], d.get("k")) for d in base.find()) == [(1, None), (2, None), (5, 1), (9, None)]
    finally:
        base.drop()


def _set_object_ids_read_back(coll) -> bool:
    """Slowness 12: an ObjectId set by $set/$setOnInsert (top level, nested, in a list) is stored
    as insert stores it: it reads back as an ObjectId and an equality on it matches."""
    ref = ObjectId()
    doc_id = coll.insert_one({"n": 9}).inserted_id
    coll.update_one({"_id": doc_id}, {"$set": {"ref": ref, "owner": {"id": ref}, "refs": [ref]}, "$inc": {"n": 1}})
    coll.update_one({"_id": "upserted"}, {"$setOnInsert": {"ref": ref}}, upsert=True)
    coll.update_one({"_id": doc_id}, {"$set": {"flag": False}})  # Bug 14: a bool alone, not 0
    doc = coll.find_one({"_id": doc_id})
    if doc["flag"] is not False:
        return False
    return (doc["ref"] == ref and isinstance(doc["ref"], ObjectId) and doc["owner"] == {"id": ref}
            and doc["refs"] == [ref] and doc["n"] == 10
            and sorted(str(d["_id"]) for d in coll.find({"ref": ref})) == sorted([str(doc_id), "upserted"])
            and coll.count_documents({"owner.id": ref}) == 1
            and coll.delete_many({"ref": ref}).deleted_count == 2)


def _id_in_writes_answer_as_mongodb(coll) -> bool:
    """Slowness 13: an update_many / delete_many whose filter holds `{"_id": {"$in": [ObjectId...]}}`
    (with another condition, as a migration's batch) changes the listed documents that match the
    rest of the filter, no other; a $set of true beside an ObjectId stores true (Bug 14)."""
    base = coll.database[f"{coll.name}_in"]
    try:
        ids = [ObjectId() for _ in range(4)]
        base.insert_many([{"_id": i, "done": n == 1} for n, i in enumerate(ids)] + [{"_id": 7, "done": False}])
        changed = base.update_many({"done": False, "_id": {"$in": ids[:3]}}, {"$set": {"done": True, "by": ids[0]}})
        if type(base.find_one({"_id": ids[2]})["done"]) is not bool:
            return False
        other = base.update_many({"_id": {"$in": [ids[3]]}}, {"$set": {"other": 1}})
        gone = base.delete_many({"_id": {"$in": [ids[0], ids[3]]}, "other": {"$exists": False}})
        left = {str(d["_id"]): (d["done"], d.get("by"), d.get("other")) for d in base.find()}
        return (changed.matched_count == 2 and changed.modified_count == 2 and other.modified_count == 1
                and gone.deleted_count == 1
                and left == {str(ids[1]): (True, None, None), str(ids[2]): (True, ids[0], None),
                             str(ids[3]): (False, None, 1), "7": (False, None, None)})
    finally:
        base.drop()


def _projections_answer_as_mongodb(coll) -> bool:
    """Slowness 16: a projected find copies only the top level of what it loaded; what comes back
    is MongoDB's answer for top-level inclusions and exclusions, nested values whole."""
    doc_id = coll.insert_one({"a": 1, "b": {"c": [1, {"d": 2}]}, "e": [3, 4]}).inserted_id
    one = {"_id": doc_id}
    return (coll.find_one(one, {"a": 1}) == {"_id": doc_id, "a": 1}
            and coll.find_one(one, {"b": 0}) == {"_id": doc_id, "a": 1, "e": [3, 4]}
            and coll.find_one(one, {"_id": 0, "b": 1, "e": 1}) == {"b": {"c": [1, {"d": 2}]}, "e": [3, 4]}
            and coll.find_one(one)["b"] == {"c": [1, {"d": 2}]})

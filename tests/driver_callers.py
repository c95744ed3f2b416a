"""Who calls the driver: every public method of PyMongo's (and mongomock-ng's) client, database,
collection, cursor and session classes wrapped to note the astro_db module of the nearest
calling frame outside the driver (a lambda counts where it is written).

Used by tests/unit/test_gateway.py and tests/live/test_gateway_live.py: a workload through the
public API must make its driver calls from ``astro_db.driver.gateway`` only (docs/ARCHITECTURE.md,
"One gateway").
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

#: The gateway's methods that send a command (``astro_db.driver.gateway``), by class: what a test
#: wraps to stand between astro_db and the server (a slow server, an outage at the n-th call).
GATEWAY_CALLS: dict[str, list[str]] = {
    "Collection": ["find", "find_one", "count_documents", "aggregate", "insert_one", "insert_many",
                   "update_one", "update_many", "replace_one", "delete_one", "delete_many",
                   "find_one_and_update", "find_one_and_delete", "bulk_write"],
    "Gateway": ["bulk_write_command", "client_bulk_write", "command"],
}

#: Modules whose frames are the driver's (or this file's), skipped when looking for the caller.
DRIVER_PREFIXES = ("pymongo", "mongomock_ng", "bson", "gridfs", "mongoengine", __name__)
#: Dunder methods that are driver calls too (iterating a cursor sends getMore; ``db[name]``
#: makes a collection object).
DUNDERS = ("__next__", "__iter__", "__getitem__", "__getattr__", "__enter__", "__exit__")


#: Methods that send nothing (building a collection or database object) or read on an open
#: cursor (its later batches: never retried, as docs/reliability.md says; ``iter_find``'s go
#: through ``run.read_on``).
NOT_RUN = {"__getitem__", "__getattr__", "get_collection", "get_database", "with_options", "__iter__", "__next__", "next",
           "close", "rewind", "allow_disk_use", "max_time_ms"}
#: Modules whose driver calls are not operations, so do not pass the run step
#: (docs/ARCHITECTURE.md, "One gateway"): establishing and closing the client (its own bounded,
#: retried ping), a transaction's session (start, commit, abort, end: translated there, retried
#: as a unit by ``with_transaction``), and ``health()``'s own bounded ping (it reports "down"
#: while the breaker is open instead of failing fast). The key vault's own calls
#: (``security.vault``: its index, key reads and inserts, an erasure's deletion, a rewrap) are
#: operations of their own and pass it: not exempt.
RUN_STEP_EXEMPT = {"astro_db.driver.connection", "astro_db.driver.transactions", "astro_db.monitoring.health"}


def _classes() -> list[type]:
    import pymongo.client_session
    import pymongo.collection
    import pymongo.command_cursor
    import pymongo.cursor
    import pymongo.database
    import pymongo.mongo_client

    classes: list[type] = [
        pymongo.collection.Collection, pymongo.database.Database, pymongo.mongo_client.MongoClient,
        pymongo.cursor.Cursor, pymongo.command_cursor.CommandCursor, pymongo.client_session.ClientSession,
    ]
    try:
        import mongomock_ng.collection
        import mongomock_ng.command_cursor
        import mongomock_ng.database
        import mongomock_ng.mongo_client
        import mongomock_ng.session
    except ImportError:  # pragma: no cover - the embedded extra is not installed
        return classes
    classes += [mongomock_ng.collection.Collection, mongomock_ng.collection.Cursor,
                mongomock_ng.database.Database, mongomock_ng.mongo_client.MongoClient,
                mongomock_ng.command_cursor.CommandCursor, mongomock_ng.session.ClientSession]
    return classes


def _frames() -> Iterator[Any]:
    """The frames of the stack from the nearest one outside this module (the wrappers' caller) up."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    while frame is not None:
        yield frame
        frame = frame.f_back


def _caller() -> str | None:
    return next((name for frame in _frames()
                 if not (name := frame.f_globals.get("__name__", "")).startswith(DRIVER_PREFIXES)), None)


def _run_step_on_stack() -> bool:
    return any(frame.f_globals.get("__name__") == "astro_db.ops.steps.run" for frame in _frames())


def _asker() -> str:
    """``module:function`` of the nearest astro_db frame outside the gateway and the driver."""
    for frame in _frames():
        name = frame.f_globals.get("__name__", "")
        if name.startswith("astro_db") and name != "astro_db.driver.gateway":
            return f"{name}:{frame.f_code.co_name}"
    return "?"


class Callers:
    """``modules``: {astro_db module: {"Class.method", ...}} of the driver calls noted."""

    def __init__(self) -> None:
        self.modules: dict[str, set[str]] = defaultdict(set)
        #: {astro_db function outside the gateway that asked for it: {"Class.method"}} of the
        #: calls made with no run step (``ops.steps.run``) on the stack
        self.unrun: dict[str, set[str]] = defaultdict(set)

    def note(self, where: str) -> None:
        module = _caller()
        if module is not None and (module == "astro_db" or module.startswith("astro_db.")):
            self.modules[module].add(where)
            if not _run_step_on_stack():
                self.unrun[_asker()].add(where)

    def outside(self, allowed: set[str]) -> dict[str, set[str]]:
        return {m: calls for m, calls in sorted(self.modules.items()) if m not in allowed}

    def past_the_run_step(self) -> dict[str, set[str]]:
        """The calls that reach the server with no run step on the stack, by asking function,
        but ``RUN_STEP_EXEMPT``'s and those that send nothing or read on a cursor (``NOT_RUN``)."""
        out = {}
        for asker, calls in sorted(self.unrun.items()):
            sent = {c for c in calls if c.rsplit(".", 1)[1] not in NOT_RUN}
            if sent and asker.split(":")[0] not in RUN_STEP_EXEMPT:
                out[asker] = sent
        return out


@contextlib.contextmanager
def driver_callers() -> Iterator[Callers]:
    """Wrap the driver's classes for the ``with`` block; yields the ``Callers`` it fills."""
    callers = Callers()
    saved: list[tuple[type, str, Any]] = []
    for cls in _classes():
        for name, value in list(vars(cls).items()):
            if (name.startswith("_") and name not in DUNDERS) or not inspect.isfunction(value):
                continue
            saved.append((cls, name, value))
            setattr(cls, name, _wrap(callers, f"{cls.__module__.split('.')[0]}.{cls.__name__}.{name}", value))
    try:
        yield callers
    finally:
        for cls, name, value in reversed(saved):
            setattr(cls, name, value)


def _wrap(callers: Callers, where: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        callers.note(where)
        return fn(*args, **kwargs)

    return wrapper


#: the CLI's keys (rotate-key needs the new one and the old ones)
KEYS = {"ASTRO_DB_ENCRYPTION_KEY": "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
        "ASTRO_DB_ENCRYPTION_KEYS": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="}

MIGRATION = '''
version = 1
description = "a plan for every user"


def up(ctx):
    ctx.migrate("User", {"plan": {"$exists": False}}, {"$set": {"plan": "free"}})
    for batch in ctx.batches("User", {}, batch_size=2, projection={"email": 1}):
        pass
    ctx.command({"ping": 1})


def down(ctx):
    ctx.migrate("User", {"plan": {"$exists": True}}, {"$unset": {"plan": ""}})
'''


def workload(db: Any, tmp: Any, *, restore_target: Any, cli_url: str) -> None:
    """Every kind of call the public API makes: CRUD, streams, pages, upserts, transactions,
    aggregation, tooling, backup (full and incremental), restore, verify, key rotation,
    maintenance, migrations, schema, reconcile_changes and the CLI commands."""
    import datetime as _dt

    from click.testing import CliRunner

    from astro_db import backup, schema
    from astro_db.cli import cli
    from astro_db.migrations import Migrator

    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    db.create_many("User", [{"email": f"u{i}@example.com", "name": f"U {i}"} for i in range(5)])
    chart = db.create("BirthChart", {"userId": str(user.id), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": "London", "coordinates": [-0.1276, 51.5072]}}})
    db.find("User", {"email": "ann@example.com"})  # the name is encrypted: equality on the email (its blind index)
    db.find_one("User", {"email": "ann@example.com"}, cache=True)
    db.find_one("User", {"email": "ann@example.com"}, cache=True)
    db.count("User", {})
    list(db.iter_find("User", {}, batch_size=2))
    page = db.page("User", {}, limit=2, sort=[("status", 1)])
    db.page("User", {}, limit=2, sort=[("status", 1)], after=page.next)
    db.aggregate("User", [{"$match": {"email": "ann@example.com"}}, {"$project": {"status": 1}}])
    db.update("User", {"id": str(user.id)}, {"name": "Annie"})
    db.update("BirthChart", {"id": str(chart.id)}, {"$push": {"positions": {"body": "Sun", "sign": "Aries", "degree": 1.0}}})
    db.update_many("User", {"email": "u1@example.com"}, {"$set": {"name": "U one"}})
    db.upsert_many("PlanetaryInsight", [{"userId": str(user.id), "date": "2025-01-01T00:00:00Z", "energyLevel": 5,
                                         "recommendations": ["go"], "expiresAt": "2020-01-01T00:00:00Z"}], on=("userId", "date"))
    with db.transaction() as tx:
        db.create("User", {"email": "tx@example.com", "name": "Tx"}, transaction=tx)
        db.update("User", {"email": "tx@example.com"}, {"name": "Tx2"}, transaction=tx)
    db.with_transaction(lambda tx: db.find_one("User", {"email": "tx@example.com"}, transaction=tx))
    victim = db.create("User", {"email": "gone@example.com", "name": "Gone"})
    db.delete("User", {"id": str(victim.id)})
    db.delete_many("User", {"email": "u2@example.com"})
    db.audit_trail("User", user.id)
    erased = db.create("User", {"email": "erase@example.com", "name": "Erased"})
    db.export_user(erased.id)
    db.erase_user(erased.id)
    db.create_user_with_chart({"email": "pair@example.com", "name": "Pair"}, {"birthData": {
        "date": "1991-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": "Paris", "coordinates": [2.35, 48.85]}}})
    paired = db.find_one("User", {"email": "pair@example.com"})
    db.delete_user_cascade(paired.id)
    # tooling
    db.sync_indexes()
    db.health()
    db.metrics()
    db.explain("User", {"email": "ann@example.com"})
    db.advise()
    db.rotate_keys(dry_run=True)
    db.rotate_keys()
    db.cleanup(dry_run=True)
    db.cleanup(now=_dt.datetime.now(_dt.timezone.utc))
    db.reconcile_changes()
    if db.executor.runtime.capabilities.validators:
        schema.diff(db)
        schema.install(db, action="warn")
    folder = tmp / "migrations"
    folder.mkdir()
    (folder / "0001_plan.py").write_text(MIGRATION)
    migrator = Migrator(db, folder, batch_size=2)
    migrator.status()
    migrator.up()
    migrator.down()
    # backup, restore, verify
    repo = tmp / "repo"
    backup.backup(db, repo, full=True)
    db.update("BirthChart", {"id": str(chart.id)}, {"$set": {"birthData.timezone": "UTC"}})
    backup.backup(db, repo)
    backup.verify(repo)
    backup.verify(repo, deep=True, url=restore_target)
    backup.restore(repo, restore_target, drop=True)
    backup.content_hashes(db)
    backup.prune(repo, keep_daily=7, source=db)
    # the CLI: a shell over the same methods
    runner = CliRunner()
    for args in (["health"], ["stats"], ["explain", "User", '{"email": "a@example.com"}'], ["advise"],
                 ["cleanup", "--dry-run"], ["indexes", "list"], ["indexes", "sync"], ["indexes", "usage"],
                 ["schema", "diff"], ["reconcile-changes"], ["migrate", "status", "--dir", str(folder)],
                 ["backup", "--repo", str(tmp / "cli-repo"), "--full"], ["verify", "--repo", str(tmp / "cli-repo")],
                 ["restore", "--repo", str(tmp / "cli-repo"), "--drop"], ["rotate-key", "--dry-run"],
                 ["migrate", "up", "--dir", str(folder)], ["migrate", "down", "--dir", str(folder)]):
        result = runner.invoke(cli, ["--url", cli_url, *args], env=KEYS)
        assert result.exit_code in (0, 1), (args, result.output, result.exception)

"""One gateway owns the driver, on a real wire-protocol server (nx-27017, or ASTRO_DB_TEST_URI):
the workload of tests/unit/test_gateway.py (CRUD, transactions, tooling, backup, restore,
verify, key rotation, maintenance, migrations, schema, the CLI) calls the driver from
``astro_db.driver.gateway`` only."""

from __future__ import annotations

import uuid

import pymongo
from driver_callers import driver_callers, workload

from astro_db import Database

KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="  # base64 of 32 bytes "A"
ALLOWED = {"astro_db.driver.gateway"}


def test_every_driver_call_of_the_public_api_is_made_by_the_gateway_live(live_server, tmp_path):
    names = [f"astro_gw_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    db = Database(live_server.url(names[0]), server_selection_timeout_ms=2000, encryption_key=KEY).connect()
    target = Database(live_server.url(names[1]), server_selection_timeout_ms=2000, ensure_indexes=False).connect()
    try:
        with driver_callers() as callers:
            workload(db, tmp_path, restore_target=target, cli_url=live_server.url(names[2]))
            db.disconnect()
    finally:
        db.disconnect()
        target.disconnect()
        _drop(live_server, names)
    outside = callers.outside(ALLOWED)
    assert outside == {}, f"{len(outside)} modules call the driver: " + "\n".join(
        f"{module}: {sorted(calls)}" for module, calls in outside.items())
    assert "astro_db.driver.gateway" in callers.modules  # the wrapping saw the calls
    assert callers.past_the_run_step() == {}  # every operation's call passes the run step


def test_the_call_time_bound_reaches_the_commands_of_backup_and_restore(live_server, tmp_path):
    """Backup and restore make their driver calls through Executor.call: each command they send
    that is not a cursor's read carries the run step's bound (PyMongo's client-side timeout sends
    it as ``maxTimeMS``), at most ``operation_timeout_ms``."""
    from spies import CommandSpy

    from astro_db import backup

    names = [f"astro_gw_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    spy = CommandSpy()
    db = Database(live_server.url(names[0]), server_selection_timeout_ms=2000, operation_timeout_ms=4000,
                  event_listeners=[spy]).connect()
    target = Database(live_server.url(names[1]), server_selection_timeout_ms=2000, operation_timeout_ms=4000,
                      ensure_indexes=False, event_listeners=[spy]).connect()
    try:
        db.create("User", {"email": "ann@example.com", "name": "Ann"})
        spy.commands.clear()
        spy.names.clear()
        backup.backup(db, tmp_path / "repo", full=True)
        backup.restore(tmp_path / "repo", target, drop=True)
    finally:
        db.disconnect()
        target.disconnect()
        _drop(live_server, names)
    bounded = [(name, cmd) for name, cmd in zip(spy.names, spy.commands)
               if name not in ("find", "getMore", "endSessions", "hello", "isMaster", "ping")]
    sent = {name for name, _ in bounded}
    assert {"listCollections", "count", "createIndexes", "insert"} <= sent, sent
    unbounded = [name for name, cmd in bounded if not 0 < cmd.get("maxTimeMS", 0) <= 4000]
    assert unbounded == [], unbounded


def test_the_key_vaults_commands_carry_the_call_time_bound(live_server):
    """The key vault's own calls (its index, key lookups and libmongocrypt's key reads, a new
    data key's insert, an erasure's delete) pass the run step: each command sent to the key
    vault carries the call's bound (``maxTimeMS``), at most ``operation_timeout_ms``."""
    from spies import CommandSpy

    name = f"astro_gw_{uuid.uuid4().hex[:8]}"
    vault = f"kv_{uuid.uuid4().hex[:8]}"
    spy = CommandSpy()
    db = Database(live_server.url(name), server_selection_timeout_ms=2000, operation_timeout_ms=4000, encryption_key=KEY,
                  key_vault_namespace=f"{vault}.__keyVault", event_listeners=[spy]).connect()
    try:
        ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        db.executor.runtime.crypto.vault.reset()  # the next read asks the key vault again
        assert db.find_one("User", {"id": ann.id}).name == "Ann"
        db.erase_user(ann.id)
    finally:
        db.disconnect()
        _drop(live_server, [name, vault])
    sent = [(cmd_name, cmd) for cmd_name, cmd in zip(spy.names, spy.commands)
            if cmd.get(cmd_name) == "__keyVault"]
    assert {"createIndexes", "find", "insert", "delete"} <= {cmd_name for cmd_name, _ in sent}, sent
    unbounded = [cmd_name for cmd_name, cmd in sent if not 0 < cmd.get("maxTimeMS", 0) <= 4000]
    assert unbounded == [], unbounded


def _drop(live_server, names) -> None:
    """Drop the test's databases on the live server."""
    client = pymongo.MongoClient(live_server.url("admin"), serverSelectionTimeoutMS=2000)
    try:
        for name in names:
            client.drop_database(name)
    finally:
        client.close()

"""The key vault's own calls are operations of the run step (docs/ARCHITECTURE.md, "One gateway";
docs/reliability.md, "The key vault"): its index, the key reads (``key_for``'s lookup and
libmongocrypt's), a data key's insertion, an erasure's deletion and a rewrap's updates get the
breaker, the call's time budget, the retries and the translation.

Faults are injected in the key vault collection handle (``KeyVault._collection``): a proxy whose
chosen method fails as told, recording per attempt whether the run step was on the stack and the
PyMongo deadline it ran under. No wall-clock limits: counts, the deadline handed to PyMongo, the
error's type and message.
"""

from __future__ import annotations

import sys
import time

import pytest
from pymongo import _csot
from pymongo import errors as pm

from astro_db import Database
from astro_db.driver.timeouts import CALL_BOUND
from astro_db.errors import (
    DatabaseConnectionError,
    ErasureIncompleteError,
    OperationTimeoutError,
    PermissionDeniedError,
)
from astro_db.personal import ERASURES_COLLECTION
from astro_db.security.crypto import UNREADABLE, FieldCrypto

from .security_data import KEY_A, KEY_B, data_key_providers, new_db, user_data


class Faulty:
    """A key vault collection handle whose ``method`` fails ``times`` times with ``exc()`` (after
    doing the call when ``landed``: the reply lost), recording each attempt."""

    def __init__(self, real, method: str, exc, *, times: int = 1, landed: bool = False) -> None:
        self.real, self.method, self.exc, self.times, self.landed = real, method, exc, times, landed
        self.attempts = 0
        self.under_run_step: list[bool] = []
        self.deadlines: list[float | None] = []
        self.remaining: list[float | None] = []
        self.bounds: list[object] = []

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.attempts += 1
            self.under_run_step.append(_run_step_on_stack())
            self.deadlines.append(_csot.get_deadline())
            self.remaining.append(_csot.remaining())
            self.bounds.append(CALL_BOUND.get())
            if self.attempts <= self.times:
                if self.landed:
                    attr(*args, **kwargs)
                raise self.exc()
            return attr(*args, **kwargs)

        return call


def _run_step_on_stack() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "astro_db.ops.steps.run":
            return True
        frame = frame.f_back
    return False


def inject(db: Database, method: str, exc=lambda: pm.AutoReconnect("connection reset"), **kwargs) -> Faulty:
    """Every later key vault call of ``db`` goes to a ``Faulty`` around the real handle; the
    vault's cached keys (its and libmongocrypt's) dropped so that the next use reads the vault."""
    vault = db.executor.runtime.crypto.vault
    assert vault is not None
    real = vault._collection
    proxy = Faulty(real(), method, exc, **kwargs)
    vault._collection = lambda: proxy
    vault.reset()
    return proxy


def _keys(db: Database, alt: str) -> int:
    return db.mongo.client["encryption"]["__keyVault"].count_documents({"keyAltNames": alt})


def _vault_ops(db: Database) -> dict:
    return {name: stats for name, stats in db.metrics()["operations"].get("-", {}).items() if name.startswith("key vault")}


@pytest.fixture
def db():
    database = new_db(encryption_key=KEY_A)
    database.executor.runtime.retry.sleep = lambda s: None  # the backoff's waits: no real waiting
    yield database
    database.disconnect()


# --- retries -----------------------------------------------------------------------------------------


def test_a_data_key_lookup_that_meets_a_transient_error_is_retried_and_the_create_succeeds(db):
    proxy = inject(db, "find_one")
    ann = db.create("User", user_data(name="Ann"))  # her data key: looked up (fails once, retried), then made
    assert proxy.attempts == 2 and proxy.under_run_step == [True, True]
    assert db.find_one("User", {"id": ann.id}).name == "Ann"
    assert _keys(db, f"user:{ann.id}") == 1
    assert db.metrics()["retries"]["retries"] == 1
    read = _vault_ops(db)["key vault read"]
    assert read["count"] >= 1 and read["error_count"] == 0  # the monitor's figures name it


def test_libmongocrypts_key_read_on_a_find_is_retried_and_the_value_reads_in_clear(db):
    ann = db.create("User", user_data(name="Ann"))
    proxy = inject(db, "find")  # the key read libmongocrypt asks for when it opens her name
    assert db.find_one("User", {"id": ann.id}).name == "Ann"  # not UNREADABLE
    assert proxy.attempts == 2 and all(proxy.under_run_step)


def test_a_data_key_insert_whose_reply_was_lost_is_retried_and_ends_with_one_key(db):
    proxy = inject(db, "insert_one", landed=True)  # the key landed, the reply did not
    ann = db.create("User", user_data(name="Ann"))
    assert proxy.attempts == 2 and all(proxy.under_run_step)  # the retry met its own _id: read back
    assert _keys(db, f"user:{ann.id}") == 1
    assert db.find_one("User", {"id": ann.id}).name == "Ann"


def test_a_key_vault_that_keeps_failing_fails_the_read_with_the_run_steps_error_never_unreadable(db):
    ann = db.create("User", user_data(name="Ann"))
    proxy = inject(db, "find", times=99)
    with pytest.raises(DatabaseConnectionError) as info:
        db.find_one("User", {"id": ann.id})
    assert proxy.attempts == db.config.retry_attempts == 3
    assert str(info.value).startswith("could not read the key vault encryption.__keyVault: key vault read: lost the "
                                      "connection to MongoDB")
    assert "gave up after 3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, pm.AutoReconnect)
    assert db.executor.runtime.crypto.stats()["unreadable"] == 0  # an error, not UNREADABLE
    db.executor.runtime.crypto.vault._collection = lambda: proxy.real
    assert db.find_one("User", {"id": ann.id}).name == "Ann"  # nothing was lost


def test_an_open_breaker_fails_a_key_vault_call_fast_without_a_driver_call(db):
    db.create("User", user_data())  # the key vault's index made
    proxy = inject(db, "find_one", times=0)
    for _ in range(db.config.breaker_threshold):
        db.executor.runtime.breaker.record_failure(pm.AutoReconnect("connection refused"))
    with pytest.raises(DatabaseConnectionError, match="could not read the key vault .*failing fast"):
        db.create("User", user_data())  # its data key is looked up first, in the seal step
    assert proxy.attempts == 0


def test_key_vault_failures_feed_the_breaker(db):
    proxy = inject(db, "find_one", times=99)
    with pytest.raises(DatabaseConnectionError):
        db.create("User", user_data())
    assert proxy.attempts == 3
    assert db.executor.runtime.breaker.stats()["consecutive_failures"] >= 1


# --- the time budget ---------------------------------------------------------------------------------


def test_a_key_read_shares_the_calls_timeout_ms_budget(db):
    ann = db.create("User", user_data(name="Ann"))
    info = db.executor.runtime.registry.resolve("User")
    users = Faulty(db.executor.runtime.coll(info), "find_one", None, times=0)
    db.executor.runtime.gateway.collections[info.collection] = users
    proxy = inject(db, "find", times=0)
    assert db.find_one("User", {"id": ann.id}, timeout_ms=5000).name == "Ann"
    bound = users.bounds[0]
    assert bound is not None and (bound.ms, bound.source) == (5000, "timeout_ms")
    assert proxy.bounds == [bound]  # one budget for the find and the key read it made
    assert abs(proxy.deadlines[0] - bound.deadline) < 0.01  # PyMongo's deadline: what is left of that budget


def test_without_timeout_ms_a_key_vault_call_runs_under_operation_timeout_ms(db):
    proxy = inject(db, "find_one", times=0)
    db.create("User", user_data())
    assert proxy.remaining and all(r is not None and 0 < r <= 30.0 for r in proxy.remaining)


def test_a_key_read_that_outlasts_the_budget_ends_in_operation_timeout_error_naming_it(db):
    ann = db.create("User", user_data(name="Ann"))

    def spent() -> pm.NetworkTimeout:
        while _csot.remaining() > 0:  # what PyMongo does while the server does not answer
            time.sleep(0.001)
        return pm.NetworkTimeout("timed out")

    proxy = inject(db, "find", spent, times=99)
    # a budget the user's own read cannot use up on a loaded machine (at 200 ms it once did, in CI:
    # the key vault was never read); the injected read then spends the rest of it
    with pytest.raises(OperationTimeoutError) as info:
        db.find_one("User", {"id": ann.id}, timeout_ms=1500)
    assert proxy.attempts == 1  # no retry starts past the deadline
    message = str(info.value)
    assert message.startswith("could not read the key vault encryption.__keyVault: key vault read did not finish "
                              "within 1500 ms (timeout_ms)"), message


# --- erasure ----------------------------------------------------------------------------------------


def _erasable(db: Database):
    ann = db.create("User", user_data(name="Ann"))
    db.create("BirthChart", {"userId": str(ann.id), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": "London", "coordinates": [-0.1276, 51.5072]}}})
    return ann


def test_an_erasure_whose_key_deletion_fails_transiently_is_retried_and_finishes(db):
    ann = _erasable(db)
    proxy = inject(db, "delete_many")
    report = db.erase_user(ann.id)
    assert proxy.attempts == 2 and all(proxy.under_run_step)
    assert report["state"] == "done" and report["keys_shredded"] == 1
    assert _keys(db, f"user:{ann.id}") == 0


def test_an_erasure_whose_key_deletion_fails_permanently_raises_erasure_incomplete_and_loses_nothing(db):
    ann = _erasable(db)
    refused = lambda: pm.OperationFailure("not authorized on encryption to execute command { delete: \"__keyVault\" }",  # noqa: E731
                                          code=13)
    proxy = inject(db, "delete_many", refused, times=99)
    with pytest.raises(ErasureIncompleteError) as info:
        db.erase_user(ann.id)
    error = info.value
    assert proxy.attempts == 1  # not transient: not retried
    assert error.user_id == ann.id and error.pending == ("data keys", "erase record")
    assert isinstance(error.__cause__, PermissionDeniedError)
    assert str(error).startswith(f"erase_user User {ann.id}: its documents are deleted and their change records "
                                 "scrubbed, but its data keys could not be deleted (could not delete from the key vault "
                                 "encryption.__keyVault: key vault delete: the MongoDB user is not authorised")
    assert "call erase_user again, or reconcile_changes()" in str(error)
    # what was done stays done; the rest is recorded as to do
    raw = db.mongo
    assert raw[ERASURES_COLLECTION].find_one({"_id": ann.id})["state"] == "started"
    assert raw["users"].count_documents({"_id": ann.id}) == 0 and raw["birthCharts"].count_documents({}) == 0
    assert not [r for r in raw["astroChanges"].find({"documentId": ann.id}) if r.get("doc")]  # scrubbed
    assert raw["astroChanges"].count_documents({"documentId": ann.id, "action": "erase"}) == 0
    assert _keys(db, f"user:{ann.id}") == 1  # the key is still there, and said to be
    # the key vault writable again: a second call finishes it, nothing done twice
    db.executor.runtime.crypto.vault._collection = lambda: proxy.real
    report = db.erase_user(ann.id)
    assert report["state"] == "done" and report["resumed"] and report["keys_shredded"] == 1
    assert _keys(db, f"user:{ann.id}") == 0
    assert raw["astroChanges"].count_documents({"documentId": ann.id, "action": "erase"}) == 1


def test_a_key_deletion_whose_reply_was_lost_and_whose_retry_deletes_nothing_still_counts_the_key(db):
    ann = _erasable(db)
    proxy = inject(db, "delete_many", landed=True)  # the first delete lands, its reply is lost
    report = db.erase_user(ann.id)
    assert proxy.attempts == 2 and report["state"] == "done"
    assert report["keys_shredded"] == 1  # was 0: the retry's deleted_count
    assert db.mongo["astroChanges"].find_one({"documentId": ann.id, "action": "erase"})["keysShredded"] == 1
    assert _keys(db, f"user:{ann.id}") == 0


def test_an_erasure_whose_every_key_deletion_reply_was_lost_reports_the_key_when_the_rerun_finishes_it(db):
    """The key is gone after the first attempt but every reply was lost, so the call failed: the
    rerun finds no key to delete, and reports the one the erasure shredded (kept in the ledger
    before the deletion), in its report and its erase record."""
    ann = _erasable(db)
    proxy = inject(db, "delete_many", landed=True, times=99)
    with pytest.raises(ErasureIncompleteError):
        db.erase_user(ann.id)
    assert _keys(db, f"user:{ann.id}") == 0  # it did land
    ledger = db.mongo[ERASURES_COLLECTION].find_one({"_id": ann.id})
    assert ledger["state"] == "started" and ledger["keysShredded"] == 1
    db.executor.runtime.crypto.vault._collection = lambda: proxy.real
    report = db.erase_user(ann.id)
    assert report["state"] == "done" and report["resumed"] and report["keys_shredded"] == 1  # was 0
    assert db.mongo["astroChanges"].find_one({"documentId": ann.id, "action": "erase"})["keysShredded"] == 1
    assert db.erase_user(ann.id)["keys_shredded"] == 1  # and so for every later call


def test_reconcile_changes_finishes_an_erasure_its_key_deletion_stopped(db):
    ann = _erasable(db)
    proxy = inject(db, "delete_many", times=99)
    with pytest.raises(ErasureIncompleteError) as info:
        db.erase_user(ann.id)
    assert isinstance(info.value.__cause__, DatabaseConnectionError) and proxy.attempts == 3
    db.executor.runtime.crypto.vault._collection = lambda: proxy.real
    assert db.reconcile_changes()["erasures"]["finished"] == 1
    assert db.mongo[ERASURES_COLLECTION].find_one({"_id": ann.id})["state"] == "done"
    assert _keys(db, f"user:{ann.id}") == 0


# --- rewrap ------------------------------------------------------------------------------------------


def test_a_rewrap_update_that_meets_a_transient_error_is_retried_and_every_key_moves(db):
    ann = db.create("User", user_data(name="Ann"))
    db.create("User", user_data(name="Bob"))
    rt = db.executor.runtime
    rt.crypto = FieldCrypto.from_config(db.config.replace(encryption_key=KEY_B, encryption_keys=KEY_A), rt.registry)
    rt.retry.sleep = lambda s: None
    before = data_key_providers(db)
    assert len(before) == 1
    proxy = inject(db, "update_one")
    report = db.rotate_keys()
    assert report["dataKeys"] == 2
    assert proxy.attempts == 3 and all(proxy.under_run_step)  # two keys, the first one twice
    after = data_key_providers(db)
    assert len(after) == 1 and after != before
    assert db.find_one("User", {"id": ann.id}).name == "Ann" != UNREADABLE


def test_every_key_vault_call_of_a_new_user_is_an_operation_of_the_run_step(db):
    """``key vault index``, ``read`` and ``insert`` are counted by the monitor as operations."""
    fresh = new_db(encryption_key=KEY_A)
    try:
        fresh.create("User", user_data())
        assert {"key vault index", "key vault read", "key vault insert"} <= set(_vault_ops(fresh))
    finally:
        fresh.disconnect()


def test_no_key_vault_call_runs_inside_another_run_step_call(db, tmp_path, monkeypatch):
    """The vault is called by the seal, open and hooks steps and by tools, never from inside a
    driver call's closure: its calls are never nested in another run step call (no retries of
    retries, no budget or breaker counted twice)."""
    from driver_callers import workload

    from astro_db.ops.steps import run

    real, depth, nested, seen = run.call, [0], [], []

    def call(rt, info, operation, fn, *args, **kwargs):
        if operation.startswith("key vault"):
            seen.append(operation)
            if depth[0]:
                nested.append(operation)
        depth[0] += 1
        try:
            return real(rt, info, operation, fn, *args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(run, "call", call)
    target = new_db()
    try:
        workload(db, tmp_path, restore_target=target, cli_url=f"mongomock://localhost/vcli{id(db)}")
    finally:
        target.disconnect()
    assert {"key vault index", "key vault read", "key vault insert", "key vault delete"} <= set(seen)
    assert nested == []

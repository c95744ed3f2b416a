"""A commit whose outcome is unknown is never answered "retry", and never leaves a stale cached answer.

PyMongo labels a commit whose connection was lost (or whose time ran out) after it was sent
``UnknownTransactionCommitResult``: the server may have committed. README: "a write whose outcome
is unknown is read back, never reported as simply failed" and "the web integrations never answer
'retry' for a write that was applied"; docs/transactions.md: "query-cache invalidation waits for
the commit". Hypothesis draws the writes of a transaction on cached models and whether its commit
lands before the reply is lost; the embedded server's answers are the oracle. Before the fix
the commit raised a plain ``DatabaseConnectionError`` / ``OperationTimeoutError`` (503 with
``Retry-After`` in the integrations) even when it had committed, and the cache kept serving the
answers the committed writes changed (its invalidation waits for a commit it never saw).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import errors as pm

from astro_db import Database, errors
from astro_db.contrib import _http
from astro_db.driver import gateway

QUERIES = [("User", {}), ("User", {"name": "Ann"}), ("PlanetaryInsight", {}),
           ("PlanetaryInsight", {"energyLevel": {"$gte": 50}})]

WRITES = {
    "create_user": lambda db, s, tx: db.create("User", {"email": f"{uuid.uuid4().hex[:8]}@b.co", "name": "Ann"},
                                               transaction=tx),
    "rename": lambda db, s, tx: db.update("User", {"id": s["user"]}, {"name": "Bea"}, transaction=tx),
    "create_insight": lambda db, s, tx: db.create("PlanetaryInsight", {"userId": s["user"], "date": next(s["days"]),
                                                                       "energyLevel": 90, "recommendations": ["Go"]},
                                                  transaction=tx),
    "lower": lambda db, s, tx: db.update_many("PlanetaryInsight", {"userId": s["user"]}, {"energyLevel": 10},
                                              transaction=tx),
    "delete_insight": lambda db, s, tx: db.delete("PlanetaryInsight", {"id": s["insight"]}, transaction=tx),
}

LOST = {
    "AutoReconnect": lambda: pm.AutoReconnect("connection closed"),
    "NetworkTimeout": lambda: pm.NetworkTimeout("timed out"),
}


def unknown(kind: str) -> pm.PyMongoError:
    exc = LOST[kind]()
    exc._add_error_label("UnknownTransactionCommitResult")  # as PyMongo labels a commit's network error
    return exc


def answers(db: Database, *, cache: bool) -> list[Any]:
    return [sorted(repr(sorted(d.items())) for d in db.find(model, filt, lean=True, cache=cache))
            for model, filt in QUERIES]


@pytest.mark.parametrize("how", ["context manager", "commit_transaction", "with_transaction"])
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.sampled_from(sorted(WRITES)), min_size=1, max_size=4), lands=st.booleans(),
       kind=st.sampled_from(sorted(LOST)))
def test_a_commit_of_unknown_outcome_says_so_and_leaves_no_stale_answer(monkeypatch, how, writes, lands, kind):
    db = Database(f"mongomock://localhost/c{uuid.uuid4().hex[:10]}", cache_models=("User", "PlanetaryInsight")).connect()
    try:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-12-01", "energyLevel": 60,
                                                 "recommendations": ["Rest"]})
        seeds = {"user": user.id, "insight": insight.id, "days": iter(f"2026-11-{d:02d}" for d in range(1, 29))}
        assert answers(db, cache=True) == answers(db, cache=False)  # every query's answer is cached now
        real = gateway.commit_transaction
        sent = []

        def commit(session: Any) -> None:  # the first commit is lost; a commit sent again is answered
            sent.append(1)
            if len(sent) > 1:  # the server answers a commit sent again with the first one's outcome
                return None if lands else real(session)
            if lands:
                real(session)
            raise unknown(kind)

        def unit(tx: Any) -> None:
            for name in writes:
                WRITES[name](db, seeds, tx)

        with monkeypatch.context() as patch:
            patch.setattr(gateway, "commit_transaction", commit)
            try:
                if how == "context manager":
                    with db.transaction() as tx:
                        unit(tx)
                elif how == "commit_transaction":
                    tx = db.start_transaction()
                    unit(tx)
                    db.commit_transaction(tx)
                else:
                    db.with_transaction(unit)  # sends the commit again, as the drivers specify
            except errors.AstroDBError as exc:
                assert how != "with_transaction", exc
                status = _http.status_for(exc)
                assert getattr(exc, "applied", False) is None, (type(exc).__name__, str(exc))
                assert status != 503 and "Retry-After" not in _http.response_headers(status)
                assert "may or may not have been applied" in str(exc)
        # whatever happened, no cached answer differs from the server's (the embedded backend
        # shows a transaction's writes before its commit: it does not isolate sessions)
        assert answers(db, cache=True) == answers(db, cache=False), (how, writes, lands)
    finally:
        db.disconnect()

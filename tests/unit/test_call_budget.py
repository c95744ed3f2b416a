"""One budget per call with the defaults, as with ``timeout_ms=``: every driver call of a call shares it.

A call of the service is often several driver calls: an update and its change records, a
delete's revision read, intent, compare-and-set delete and confirmation, ``create_many``'s
chunks, ``update_many``'s documents. The promise (README, docs/reliability.md) is one deadline
for the whole call: ``timeout_ms=`` on the call, else ``operation_timeout_ms``. Here every driver
call takes ``step`` seconds of the bounds' clock (``timeouts.time``, moved by hand: no waiting),
as against a server that stalls, and Hypothesis compares, for each operation, the call made
with the default budget of 1000 ms and the same call with ``timeout_ms=1000``: the same outcome,
the same number of driver calls, the same documents left; and no driver call starts past the
deadline. Before the fix, a call without ``timeout_ms=`` gave each driver call a fresh budget
of its own, so a delete against a server taking 0.9 s a command ran its four commands (3.6 s
against a 1 s budget) where ``timeout_ms=1000`` stopped it.
"""

from __future__ import annotations

import uuid
from typing import Any

from driver_callers import GATEWAY_CALLS
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database
from astro_db.driver import gateway, timeouts

BUDGET_MS = 1000


class Clock:
    """The bounds' clock: still unless a driver call moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now



class SlowServer:
    """Every driver call through the gateway takes ``step`` s of ``clock``; ``starts`` notes the
    clock when each one began and ``bounds`` the deadline of the call bound it ran under."""

    def __init__(self, monkeypatch: Any, clock: Clock) -> None:
        self.clock, self.step = clock, 0.0
        self.starts: list[float] = []
        self.bounds: list[float | None] = []
        for cls_name, names in GATEWAY_CALLS.items():
            cls = getattr(gateway, cls_name)
            for name in names:
                monkeypatch.setattr(cls, name, self._slow(getattr(cls, name)))

    def _slow(self, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            bound = timeouts.CALL_BOUND.get()
            self.starts.append(self.clock.now)
            self.bounds.append(bound.deadline if bound is not None else None)
            self.clock.now += self.step
            return real(*args, **kwargs)
        return call


def seeded() -> tuple[Database, dict[str, Any]]:
    db = Database(f"mongomock://localhost/b{uuid.uuid4().hex[:10]}", operation_timeout_ms=BUDGET_MS).connect()
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    insights = db.create_many("PlanetaryInsight", [
        {"userId": user.id, "date": f"2026-12-0{d}T00:00:00Z", "energyLevel": 10 * d, "recommendations": ["Rest"]}
        for d in range(1, 6)], lean=True)
    return db, {"user": user.id, "insights": insights.ids}


def days(uid: Any, first: int, n: int) -> list[dict[str, Any]]:
    return [{"userId": uid, "date": f"2026-11-{d:02d}T00:00:00Z", "energyLevel": d, "recommendations": ["Walk"]}
            for d in range(first, first + n)]


OPERATIONS = {
    "create": lambda db, s, kw: db.create("PlanetaryInsight", days(s["user"], 1, 1)[0], **kw),
    "create_many": lambda db, s, kw: db.create_many("PlanetaryInsight", days(s["user"], 1, 6), **kw),
    "upsert_many": lambda db, s, kw: db.upsert_many("PlanetaryInsight", days(s["user"], 1, 4), on=("userId", "date"),
                                                    **kw),
    "update": lambda db, s, kw: db.update("User", {"id": s["user"]}, {"name": "Bea"}, **kw),
    "update_many": lambda db, s, kw: db.update_many("PlanetaryInsight", {"userId": s["user"]},
                                                    {"$inc": {"energyLevel": 1}}, **kw),
    "delete": lambda db, s, kw: db.delete("PlanetaryInsight", {"id": s["insights"][0]}, **kw),
    "delete_many": lambda db, s, kw: db.delete_many("PlanetaryInsight", {"userId": s["user"]}, **kw),
    "find": lambda db, s, kw: db.find("PlanetaryInsight", {"userId": s["user"]}, **kw),
    "find_one": lambda db, s, kw: db.find_one("User", {"id": s["user"]}, **kw),
    "count": lambda db, s, kw: db.count("PlanetaryInsight", {}, **kw),
    "page": lambda db, s, kw: db.page("PlanetaryInsight", {}, limit=2, **kw),
    "iter_find": lambda db, s, kw: list(db.iter_find("PlanetaryInsight", {}, **kw)),
    "export_user": lambda db, s, kw: db.export_user(s["user"], **kw),
    "audit_trail": lambda db, s, kw: db.audit_trail("User", s["user"], **kw),
}


def outcome(run: Any, *args: Any) -> str:
    try:
        run(*args)
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the error's type
        return type(exc).__name__
    return "ok"


def state(db: Database) -> list[tuple[Any, ...]]:
    """The documents left, by what the calls wrote (ids differ between the two databases)."""
    rows = [(d.get("date"), d.get("energyLevel"), d.get("name")) for name in ("User", "PlanetaryInsight")
            for d in db.mongo[db.executor.model(name).collection].find({}, {"_id": 0})]
    return sorted(rows, key=repr)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(OPERATIONS)), step=st.sampled_from([0.0, 0.2, 0.3, 0.45, 0.6, 0.9, 1.2]))
def test_the_default_budget_is_one_deadline_for_the_whole_call_as_timeout_ms_is(monkeypatch, name, step):
    clock = Clock()
    with monkeypatch.context() as patch:
        patch.setattr(timeouts, "time", clock)
        server = SlowServer(patch, clock)
        seen = {}
        for label, kw in (("default", {}), ("timeout_ms", {"timeout_ms": BUDGET_MS})):
            db, seeds = seeded()
            server.step, server.starts, server.bounds = step, [], []
            began = clock.now
            result = outcome(OPERATIONS[name], db, seeds, kw)
            starts = list(server.starts)
            server.step = 0.0
            seen[label] = (result, len(starts), state(db))
            # no driver call starts at or past the call's deadline (the outcome read-back of a
            # write whose bound ran out has a fresh bound of its own: docs/reliability.md)
            first_bound = next((b for b in server.bounds if b is not None), None)
            assert first_bound is not None and first_bound <= began + BUDGET_MS / 1000.0 + 1e-9, (label, server.bounds)
            for at, bound in zip(starts, server.bounds, strict=True):
                assert bound is None or at < bound, (label, name, step, starts, server.bounds)
            db.disconnect()
        assert seen["default"] == seen["timeout_ms"], (name, step, seen)

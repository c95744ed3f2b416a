"""The change records' own path on the defaults (issue 27, the defaults' writes): what a
recorded write no longer builds or does again, and that its records are unchanged. Counts and
identities, never times."""

from __future__ import annotations

from typing import Any

import pytest

from astro_db import Database
from astro_db.changes import CHANGES_COLLECTION
from astro_db.changes import records as records_module
from astro_db.events import WriteEvent
from astro_db.models import User


def stored_records(db: Database) -> list[dict[str, Any]]:
    return list(db.mongo[CHANGES_COLLECTION].find({}, sort=[("rev", 1)]))


def test_the_record_hook_alone_writes_the_same_records_without_an_event(monkeypatch):
    """A write the query cache has nothing to do for (it holds nothing of the model) leaves the
    change records as the one hook with work: they are written straight from what was written,
    no ``WriteEvent`` made; with an app hook added the event is made and the records are the
    same (but for the op id and the times each write makes)."""
    events: list[str] = []
    real = WriteEvent.__init__

    def counted(self: WriteEvent, *args: Any, **kwargs: Any) -> None:
        events.append(kwargs.get("action", ""))
        real(self, *args, **kwargs)

    monkeypatch.setattr(WriteEvent, "__init__", counted)

    def writes(db: Database, name: str) -> list[dict[str, Any]]:
        user = db.create(User, {"email": f"{name}@example.com", "name": name})
        db.update(User, {"id": user.id}, {"name": f"{name} 2"})
        return [r for r in stored_records(db) if r["documentId"] == user.id]

    with Database("mongomock://localhost/rp_direct", ensure_indexes=False) as db:
        direct = writes(db, "ann")
        assert events == []
        db.executor.runtime.hooks.append(lambda event: None)
        heard = writes(db, "bob")
        assert events == ["create", "update"]

    def shape(record: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in record.items() if k not in ("_id", "documentId", "time", "t", "doc")}
        kept["doc"] = sorted(record.get("doc", {}))
        return kept

    assert [shape(r) for r in direct] == [shape(r) for r in heard]
    assert [r["action"] for r in direct] == ["create", "update"] and [r["rev"] for r in direct] == [0, 1]
    assert direct[1]["fields"] == ["name"] and direct[1]["doc"]["name"] == "ann 2"


def test_a_records_field_names_are_worked_out_once_per_write_shape(monkeypatch):
    """``ChangeLog.build`` keeps the sorted names of a write's fields per field tuple: a second
    update of the same fields sorts nothing, and the records list the same names."""
    sorts: list[Any] = []
    real_sorted = sorted

    def counting(values: Any, *args: Any, **kwargs: Any) -> Any:
        sorts.append(values)
        return real_sorted(values, *args, **kwargs)

    with Database("mongomock://localhost/rp_names", ensure_indexes=False) as db:
        user = db.create(User, {"email": "cy@example.com", "name": "Cy"})
        log = db.executor.runtime.changes
        monkeypatch.setattr("builtins.sorted", counting)
        db.update(User, {"id": user.id}, {"name": "Cy 2"})
        first = len(sorts)
        db.update(User, {"id": user.id}, {"name": "Cy 3"})
        assert len(sorts) == first  # the names of ("name", ...) kept from the first update
        monkeypatch.setattr("builtins.sorted", real_sorted)
        kept = [names for fields, names in log._names.items() if "name" in fields and "createdAt" not in fields]
        assert kept == [["name", "updatedAt"]] or kept == [["name"]]
        updates = [r for r in stored_records(db) if r["action"] == "update"]
        assert [r["fields"] for r in updates] == [kept[0], kept[0]]


@pytest.mark.parametrize("ordered", [False, True])
def test_make_records_lists_the_names_sorted_whether_given_sorted_or_not(ordered):
    names = ["a", "b"] if ordered else ["b", "a"]
    [record] = records_module.make_records(model="User", collection="users", action="update",
                                           changes=[("x", 1, None, None)], actor=None, request_id=None, fields=names,
                                           audit=True, journal=False, op="op", ordered=ordered)
    assert record["fields"] == ["a", "b"] and record["fields"] is not names
    assert record["_id"] == records_module.record_id("users", "x", 1, "op")

"""The service's maps and sets of document ids are keyed by ``query.order.identity`` (the
server's equality of ``_id`` values), not Python's: ``True`` and ``1`` are two documents, ``1``
and ``1.0`` one, and an embedded-document ``_id`` (a compound key) is an id like any other.

Neither test backend can show this end to end (mongomock-ng and nx-27017 match ``{_id: true}``
against ``1``; neither takes an embedded-document ``_id`` in a filter: the real-MongoDB tests in
``tests/service/test_primary_keys.py``), so the server's answers are given here as MongoDB gives
them and the service's reading of them is checked."""

from __future__ import annotations

from typing import Any

from astro_db.changes import last_revisions
from astro_db.changes import log as change_log
from astro_db.query.order import identity


class Answers:
    """A database whose every collection answers ``find``/``find_one`` with fixed documents (what
    MongoDB answered the query the service sent)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.asked: list[Any] = []

    def __getitem__(self, name: str) -> Answers:
        return self

    def find(self, filt: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.asked.append(filt)
        return list(self.docs)

    def find_one(self, filt: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self.asked.append(filt)
        return self.docs[0] if self.docs else None


def test_last_revisions_keys_ids_as_the_server_tells_them_apart() -> None:
    compound = {"user": 1, "day": 2}
    database = Answers([{"documentId": 1, "rev": 2}, {"documentId": compound, "rev": 5}])
    last = last_revisions(database, "Keyed", [True, 1.0, {"user": 1, "day": 2.0}])  # type: ignore[arg-type]
    assert last.get(identity(True)) is None  # True never lived: not _id 1's revision
    assert last[identity(1.0)] == 2 and last[identity({"user": 1.0, "day": 2})] == 5
    single = last_revisions(Answers([{"documentId": compound, "rev": 5}]), "Keyed", [compound])  # type: ignore[arg-type]
    assert single == {identity(compound): 5}


def test_a_rebuild_finds_the_records_of_compound_and_bool_ids() -> None:
    recorded = Answers([{"documentId": {"user": 1, "day": 2}, "rev": 0}, {"documentId": 1, "rev": 3}])
    batch = [{"_id": {"user": 1, "day": 2.0}, "_rev": 0}, {"_id": True, "_rev": 3}, {"_id": 1, "_rev": 3}]
    have = change_log._revisions_recorded(recorded, "Keyed", batch)  # type: ignore[arg-type]
    assert (identity({"user": 1, "day": 2}), 0) in have and (identity(1), 3) in have
    assert (identity(True), 3) not in have  # _id true has no record: reconcile rebuilds its record


def test_settling_a_late_record_reads_its_documents_revision_by_the_servers_equality() -> None:
    late = [({"_id": "keyed/x/1/update", "coll": "keyed", "documentId": {"user": 1, "day": 2}, "rev": 1,
              "action": "update", "doc": {"title": "b"}}, change_log.INSERT),
            ({"_id": "keyed/true/1/update", "coll": "keyed", "documentId": True, "rev": 1, "action": "update",
              "doc": {"title": "t"}}, change_log.INSERT)]
    # the documents now: the compound one still at revision 1 (its _id read back as stored), _id 1 at 1
    settled = change_log._settle(Answers([{"_id": {"user": 1.0, "day": 2}, "_rev": 1}, {"_id": 1, "_rev": 1}]), late)  # type: ignore[arg-type]
    kept = {str(record["documentId"]): "doc" in record for record, _ in settled}
    assert kept == {"{'user': 1, 'day': 2}": True, "True": False}  # True's document is not _id 1's

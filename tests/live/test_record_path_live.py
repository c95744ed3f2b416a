"""An update's change record on a live server (issue 27, the defaults' writes): the record's
post-image is the document the ``findAndModify`` returned, which is exactly the stored document,
whatever listens (the records alone, an app's hook, an app's command listener); without the
journal it has none. (Embedding the reply's raw BSON in the record
instead of the decoded document was built and measured in that round and not kept:
docs/performance.md, "The defaults' writes".)"""

from __future__ import annotations

from typing import Any

import bson
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from astro_db import Database
from astro_db.changes import CHANGES_COLLECTION
from astro_db.changes import log as change_log
from astro_db.models import User

RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True)


def sent_records(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """Every batch of records handed to the driver's insert (``changes.log._insert``)."""
    seen: list[list[dict[str, Any]]] = []
    real = change_log._insert

    def spy(coll: Any, records: list[dict[str, Any]], session: Any) -> None:
        seen.append(list(records))
        real(coll, records, session)

    monkeypatch.setattr(change_log, "_insert", spy)
    return seen


def stored_bytes(db: Database, collection: str, doc_id: Any) -> bytes:
    return db.mongo.get_collection(collection, codec_options=RAW).find_one({"_id": doc_id}).raw


def test_an_updates_record_holds_the_post_image_the_server_returned(live_url, monkeypatch):
    with Database(live_url) as db:
        user = db.create(User, {"email": "ann@raw.test", "name": "Ann"})
        sent = sent_records(monkeypatch)
        updated = db.update(User, {"id": user.id}, {"name": "Bea"})
        [[record]] = sent
        assert type(record["doc"]) is dict
        assert bson.encode(record["doc"]) == stored_bytes(db, "users", user.id)  # exactly the stored document
        assert updated.name == "Bea" and updated == db.find_one(User, {"id": user.id})
        stored = db.mongo[CHANGES_COLLECTION].find_one({"_id": record["_id"]})
        assert stored["doc"] == db.mongo["users"].find_one({"_id": user.id})
        assert (stored["action"], stored["rev"], stored["fields"]) == ("update", 1, ["name"])


def test_every_update_of_a_model_records_the_stored_document(live_url, monkeypatch):
    with Database(live_url) as db:
        user = db.create(User, {"email": "fay@raw.test", "name": "Fay"})
        sent = sent_records(monkeypatch)
        for n in range(3):
            db.update(User, {"id": user.id}, {"name": f"Fay {n}"})
        assert [type(batch[0]["doc"]) for batch in sent] == [dict, dict, dict]
        assert bson.encode(sent[-1][0]["doc"]) == stored_bytes(db, "users", user.id)
        assert [r["rev"] for r in db.mongo[CHANGES_COLLECTION].find({"documentId": user.id}, sort=[("rev", 1)])] == [
            0, 1, 2, 3]


def test_with_an_app_hook_the_hook_and_the_record_see_the_same_post_image(live_url, monkeypatch):
    with Database(live_url) as db:
        images: list[Any] = []
        db.executor.runtime.hooks.append(lambda event: images.extend(c.image for c in event.changes))
        user = db.create(User, {"email": "bo@raw.test", "name": "Bo"})
        sent = sent_records(monkeypatch)
        db.update(User, {"id": user.id}, {"name": "Di"})
        [[record]] = sent
        assert type(images[-1]) is dict and images[-1] == record["doc"]
        assert bson.encode(record["doc"]) == stored_bytes(db, "users", user.id)


def test_without_the_journal_the_record_has_no_post_image(live_url, monkeypatch):
    with Database(live_url, journal=False) as db:
        user = db.create(User, {"email": "cy@raw.test", "name": "Cy"})
        sent = sent_records(monkeypatch)
        assert db.update(User, {"id": user.id}, {"name": "Ed"}).name == "Ed"
        [[record]] = sent
        assert "doc" not in record and record["audit"] is True


def test_an_apps_command_listener_is_shown_the_records_post_image_as_a_document(live_url, monkeypatch):
    """An app's command listener is shown every command astro_db sends, the record's insert
    too: its ``doc`` is the stored document."""
    from pymongo import monitoring

    class Inserts(monitoring.CommandListener):
        def __init__(self) -> None:
            self.docs: list[Any] = []

        def started(self, event: Any) -> None:
            if event.command_name == "insert" and event.command.get("insert") == CHANGES_COLLECTION:
                self.docs.extend(d.get("doc") for d in event.command["documents"])

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    listener = Inserts()
    with Database(live_url, event_listeners=[listener]) as db:
        user = db.create(User, {"email": "gil@raw.test", "name": "Gil"})
        db.update(User, {"id": user.id}, {"name": "Gal"})
        assert [type(doc) for doc in listener.docs] == [dict]
        assert bson.encode(listener.docs[0]) == stored_bytes(db, "users", user.id)

"""An update's change record on a live server (issue 27, the defaults' writes): the post-image
the ``findAndModify`` returned is embedded in the record as the server's own BSON, not decoded
and encoded again, and the record holds exactly what it held before: the stored document."""

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
from astro_db.ops import writes

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


def test_an_updates_record_embeds_the_post_image_the_server_returned(live_url, monkeypatch):
    with Database(live_url) as db:
        user = db.create(User, {"email": "ann@raw.test", "name": "Ann"})
        sent = sent_records(monkeypatch)
        updated = db.update(User, {"id": user.id}, {"name": "Bea"})
        [[record]] = sent
        assert type(record["doc"]) is RawBSONDocument  # the reply's bytes, embedded as they are
        assert record["doc"].raw == stored_bytes(db, "users", user.id)  # exactly the stored document
        assert updated.name == "Bea" and updated == db.find_one(User, {"id": user.id})  # the caller's, decoded once
        stored = db.mongo[CHANGES_COLLECTION].find_one({"_id": record["_id"]})
        assert stored["doc"] == db.mongo["users"].find_one({"_id": user.id})
        assert (stored["action"], stored["rev"], stored["fields"]) == ("update", 1, ["name"])


def test_a_model_of_post_images_in_the_window_keeps_reading_them_raw(live_url, monkeypatch):
    monkeypatch.setattr(writes, "_RAW_IMAGE_MIN", 16)  # a User's post-image is in the window here
    with Database(live_url) as db:
        user = db.create(User, {"email": "eve@raw.test", "name": "Eve"})
        sent = sent_records(monkeypatch)
        db.update(User, {"id": user.id}, {"name": "Eva"})
        handle = db.executor.runtime.image_handles["users"]
        assert db.update(User, {"id": user.id}, {"name": "Ava"}, returning=False) is True
        assert db.executor.runtime.image_handles["users"] is handle  # the raw handle made once
        assert [type(batch[0]["doc"]) for batch in sent] == [RawBSONDocument, RawBSONDocument]
        assert sent[-1][0]["doc"].raw == stored_bytes(db, "users", user.id)


@pytest.mark.parametrize("window", ["small", "large"])
def test_a_model_whose_post_images_are_outside_the_window_reads_dicts_until_its_next_try(live_url, monkeypatch, window):
    """A post-image under ``_RAW_IMAGE_MIN`` bytes, or of ``_RAW_IMAGE_MAX`` and more, costs less
    decoded and encoded again: the model's next updates read dicts, and one in
    ``_RAW_IMAGE_RESAMPLE`` tries raw again."""
    monkeypatch.setattr(writes, "_RAW_IMAGE_RESAMPLE", 2)
    if window == "large":
        monkeypatch.setattr(writes, "_RAW_IMAGE_MIN", 16)
        monkeypatch.setattr(writes, "_RAW_IMAGE_MAX", 32)  # a User's post-image counts as large here
    with Database(live_url) as db:
        user = db.create(User, {"email": f"fay-{window}@raw.test", "name": "Fay"})
        sent = sent_records(monkeypatch)
        for n in range(5):
            db.update(User, {"id": user.id}, {"name": f"Fay {n}"})
        assert [type(batch[0]["doc"]) for batch in sent] == [RawBSONDocument, dict, dict, RawBSONDocument, dict]
        assert bson.encode(sent[-1][0]["doc"]) == stored_bytes(db, "users", user.id)  # the same bytes either way
        assert [r["rev"] for r in db.mongo[CHANGES_COLLECTION].find({"documentId": user.id}, sort=[("rev", 1)])] == [
            0, 1, 2, 3, 4, 5]


def test_with_an_app_hook_the_images_are_dicts_and_the_record_the_same(live_url, monkeypatch):
    with Database(live_url) as db:
        images: list[Any] = []
        db.executor.runtime.hooks.append(lambda event: images.extend(c.image for c in event.changes))
        user = db.create(User, {"email": "bo@raw.test", "name": "Bo"})
        sent = sent_records(monkeypatch)
        db.update(User, {"id": user.id}, {"name": "Di"})
        [[record]] = sent
        assert type(images[-1]) is dict and type(record["doc"]) is dict
        assert bson.encode(record["doc"]) == stored_bytes(db, "users", user.id)
        assert "users" not in db.executor.runtime.image_handles


def test_without_the_journal_nothing_is_read_back_raw(live_url, monkeypatch):
    with Database(live_url, journal=False) as db:
        user = db.create(User, {"email": "cy@raw.test", "name": "Cy"})
        sent = sent_records(monkeypatch)
        assert db.update(User, {"id": user.id}, {"name": "Ed"}).name == "Ed"
        [[record]] = sent
        assert "doc" not in record and record["audit"] is True
        assert "users" not in db.executor.runtime.image_handles


def test_with_a_command_listener_of_the_apps_the_record_it_is_shown_holds_a_dict(live_url, monkeypatch):
    """An app's command listener is shown every command astro_db sends: with one registered, no
    post-image is read back raw, so the record's ``doc`` it sees is the dict it always was."""
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
        assert db.executor.runtime.raw_images is False
        user = db.create(User, {"email": "gil@raw.test", "name": "Gil"})
        db.update(User, {"id": user.id}, {"name": "Gal"})
        assert [type(doc) for doc in listener.docs] == [dict]
        assert bson.encode(listener.docs[0]) == stored_bytes(db, "users", user.id)
    with Database(live_url) as db:
        assert db.executor.runtime.raw_images is True  # a server, the journal on, no listener of the app's

"""``db.update(..., returning=False)`` on the wire (nx-27017): what the ``findAndModify`` asks back.

With the hooks off (records off, no app hook) and no cache holding the model, no document is
asked back at all: an ``update`` command is sent (tests/service/test_update_command.py). With
the audit trail alone, or a cache holding the model, the ``findAndModify`` carries the narrow
projection (``hooks.STAMP``: ``_id``, revision, op id, ``updatedAt``) and the reply holds
nothing else; with the journal on (the default) or an app's hook it carries none, as
``returning=True`` never does. Two Databases on one server share the process's local bus: a
write without post-images drops, in the other one's cache too, what it may have changed, and
keeps what it cannot have.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo import monitoring

from astro_db import Database
from astro_db.ops.steps.hooks import STAMP


class FindAndModify(monitoring.CommandListener):
    """The ``fields`` (projection) of each findAndModify sent, and the keys of each reply's value."""

    def __init__(self) -> None:
        self.fields: list[Any] = []
        self.replied: list[set[str] | None] = []
        self.updates = 0  # ``update`` commands sent

    def started(self, event: Any) -> None:
        if event.command_name == "findAndModify":
            self.fields.append(event.command.get("fields"))
        elif event.command_name == "update":
            self.updates += 1

    def succeeded(self, event: Any) -> None:
        if event.command_name == "findAndModify":
            value = event.reply.get("value")
            self.replied.append(set(value) if value is not None else None)

    def failed(self, event: Any) -> None:
        pass


OPTIONS = {"hooks off": {"audit": False, "journal": False}, "audit only": {"journal": False}, "default": {}}


@pytest.mark.parametrize("records", list(OPTIONS))
def test_the_find_and_modify_carries_the_narrow_projection_unless_a_hook_needs_the_image(live_url, records):
    seen = FindAndModify()
    with Database(live_url, event_listeners=[seen], **OPTIONS[records]) as db:
        user = db.create("User", {"email": "w@example.com", "name": "W"})
        assert db.update("User", {"id": user.id}, {"name": "X"}, returning=False) is True
        assert db.update("User", {"email": "nobody@example.com"}, {"name": "X"}, returning=False) is False
        db.update("User", {"id": user.id}, {"name": "Y"})  # returning=True: the whole post-image, as before
        stamp = dict(STAMP)
        if records == "default":  # the journal's records carry the post-image
            assert seen.fields == [None, None, None]
            assert seen.replied[0] is not None and {"email", "name"} <= seen.replied[0]
        elif records == "hooks off":  # nobody needs anything back: two update commands, no document on the wire
            assert seen.fields == [None] and seen.updates == 2
        else:
            assert seen.fields == [stamp, stamp, None]
            assert seen.replied[0] == set(STAMP)  # the document's own fields never cross the wire
            assert seen.replied[1] is None
        assert db.find_one("User", {"id": user.id}).name == "Y"
        if records != "hooks off":
            assert [(e["action"], e["revision"]) for e in db.audit_trail("User", user.id)] == [
                ("create", 0), ("update", 1), ("update", 2)]


def test_an_app_hook_makes_it_read_the_post_image_and_gets_it(live_url):
    seen, heard = FindAndModify(), []
    with Database(live_url, event_listeners=[seen], audit=False, journal=False) as db:
        db.executor.runtime.hooks.append(lambda event: heard.append(event.documents))
        user = db.create("User", {"email": "h@example.com", "name": "H"})
        heard.clear()
        assert db.update("User", {"id": user.id}, {"name": "I"}, returning=False) is True
        assert seen.fields == [None] and seen.updates == 0
        [(image,)] = heard
        assert image["name"] == "I" and image["email"] == "h@example.com"


def test_hooks_off_a_cache_holding_the_model_makes_it_a_find_and_modify_of_the_stamp(live_url):
    """The records off: an ``update`` command while no cache of the process holds the model, the
    narrow ``findAndModify`` while one does (the write is judged by its id), and no stale read."""
    seen = FindAndModify()
    with Database(live_url, event_listeners=[seen], audit=False, journal=False) as db:
        user = db.create("User", {"email": f"c{uuid.uuid4().hex[:6]}@example.com", "name": "C"})
        assert db.update("User", {"id": user.id}, {"name": "D"}, returning=False) is True
        assert (seen.updates, seen.fields) == (1, [])
        assert db.find_one("User", {"id": user.id}, cache=True).name == "D"  # the cache holds User now
        assert db.update("User", {"id": user.id}, {"name": "E"}, returning=False) is True
        assert (seen.updates, seen.fields) == (1, [dict(STAMP)])
        assert db.find_one("User", {"id": user.id}, cache=True).name == "E"
        db.executor.runtime.cache.clear()
        assert db.update("User", {"id": user.id}, {"name": "F"}, returning=False) is True
        assert (seen.updates, seen.fields) == (2, [dict(STAMP)])
        assert db.find_one("User", {"id": user.id}, cache=True).name == "F"


def test_a_write_without_post_images_is_judged_by_its_fields_in_another_databases_cache(live_url):
    options: dict[str, Any] = {"audit": False, "journal": False, "cache_models": ("User",)}
    with Database(live_url, **options) as writer, Database(live_url, **options) as reader:
        rt_w, rt_r = writer.executor.runtime, reader.executor.runtime
        assert rt_w.cache.peers is rt_r.cache.peers  # one LocalBus: the same server's data
        a = writer.create("User", {"email": f"a{uuid.uuid4().hex[:6]}@example.com", "name": "A"})
        b = writer.create("User", {"email": f"b{uuid.uuid4().hex[:6]}@example.com", "name": "B"})
        reads = {
            "a by id": ("find_one", {"id": a.id}),
            "b by id": ("find_one", {"id": b.id}),
            "b by email": ("find_one", {"email": b.email}),
            "by name": ("find", {"name": "A"}),
        }
        for db in (writer, reader):
            for call, filt in reads.values():
                getattr(db, call)("User", filt, lean=True)
        assert writer.update("User", {"id": a.id}, {"name": "Z"}, returning=False) is True
        for db in (writer, reader):
            kept = {}
            for what, (call, filt) in reads.items():
                hits = db.executor.runtime.cache.stats()["hits"]
                answer = getattr(db, call)("User", filt, lean=True)
                assert answer == getattr(db, call)("User", filt, lean=True, cache=False)  # never stale
                kept[what] = db.executor.runtime.cache.stats()["hits"] == hits + 1
            assert kept == {"a by id": False, "b by id": True, "b by email": True, "by name": False}, db

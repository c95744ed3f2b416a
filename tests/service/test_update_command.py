"""``db.update(..., returning=False)`` sent as a plain ``update`` command when nothing needs the stamp.

Must hold: with the change records off, only the runtime's own write hooks, outside a transaction
and no cache that could hear of the write holding anything of the model
(``steps.hooks.stampless``), the update is an ``update`` command (``update_one``), answered by
its matched count; whenever records, a hook, a cache holding the model or a transaction need the
stamp, a ``findAndModify`` as before. On that path every guarantee of an update holds: guards,
``expected_revision`` (its compare-and-set and the own-write check), list changes by
compare-and-set, duplicate keys named by their fields, a lost reply read back by the op id
(replayed only when idempotent). A cache that begins to hold the model while the write is under
way (another caller's read, driven deterministically inside the spied ``update_one``, in a
thread of its own) keeps no stale answer: the after-write step asks again after the write, and
a write of unknown ids drops the model's entries in every cache of the process.
Spied at the gateway's collection, on both backends; the wire is checked with a command listener
in tests/live/test_update_returning_live.py.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from spies import spy_updates

from astro_db import Database
from astro_db.errors import ConflictError, DuplicateKeyError, ValidationError
from astro_db.ops.steps.hooks import STAMP

from .conftest import insight_data

HOOKS_OFF = {"audit": False, "journal": False}


spy = spy_updates


def _url(db: Database) -> str:
    url = db.config.url
    return f"mongomock://localhost/c{uuid.uuid4().hex[:8]}" if url.startswith("mongomock://") else url


@pytest.fixture
def off(db):
    """A Database with the change records off, on each backend in turn."""
    database = Database(_url(db), server_selection_timeout_ms=5000, allow_plaintext_sensitive=True, **HOOKS_OFF)
    database.connect()
    database.executor.runtime.retry.sleep = lambda s: None
    yield database
    database.disconnect()


def _user(db: Database, name: str = "Ann") -> Any:
    return db.create("User", {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "name": name})


def test_hooks_off_sends_an_update_command_and_answers_from_its_matched_count(off):
    user = _user(off)
    watched = spy(off, "User")
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert off.update("User", {"email": "nobody@example.com"}, {"name": "Bea"}, returning=False) is False
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True  # matched, nothing new
    assert watched.sent == ["update", "update", "update"]
    stored = off.find_one("User", {"id": user.id}, lean=True)
    assert stored["name"] == "Bea" and stored["_rev"] == 2 and stored["_op"] is not None  # revision and op id stamped
    assert off.update("User", {"id": user.id}, {"name": "Cy"}).name == "Cy"  # returning=True: as before
    assert watched.sent[-1] == ("findAndModify", None)


def test_what_needs_the_stamp_gets_a_find_and_modify(off, db):
    """A cache holding the model, an app's hook, the audit trail, a transaction."""
    user = _user(off)
    watched = spy(off, "User")
    off.find_one("User", {"id": user.id}, cache=True)  # the cache holds User: the write is judged by its id
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert watched.sent == [("findAndModify", STAMP)]
    assert off.find_one("User", {"id": user.id}, cache=True).name == "Bea"
    off.executor.runtime.cache.clear()
    heard: list[Any] = []
    off.executor.runtime.hooks.append(heard.append)
    assert off.update("User", {"id": user.id}, {"name": "Cy"}, returning=False) is True
    assert watched.sent[-1] == ("findAndModify", None) and heard[0].document_ids == (user.id,)
    off.executor.runtime.hooks.remove(heard.append)
    with Database(_url(db), server_selection_timeout_ms=5000, allow_plaintext_sensitive=True, journal=False) as audited:
        other = _user(audited)
        seen = spy(audited, "User")
        assert audited.update("User", {"id": other.id}, {"name": "Bo"}, returning=False) is True
        assert seen.sent == [("findAndModify", STAMP)]
    from astro_db.errors import TransactionNotSupportedError

    try:
        with off.transaction() as tx:
            assert off.update("User", {"id": user.id}, {"name": "Tx"}, returning=False, transaction=tx) is True
    except TransactionNotSupportedError:
        return
    assert watched.sent[-1] == ("findAndModify", STAMP)


def test_a_cache_that_begins_to_hold_the_model_during_the_write_keeps_no_stale_answer(off):
    """Another caller reads the document through the cache after the decision and before the
    write lands (its entry holds the pre-image): the after-write step finds the model held and
    announces the write with no ids, so the entry is dropped; entries of other models stay."""
    user = _user(off)
    day = off.create("PlanetaryInsight", insight_data(user.id))
    cache = off.executor.runtime.cache
    stored: list[Any] = []

    def other_caller() -> None:  # a second caller, in a thread of its own, run to its end before the write goes out
        worker = threading.Thread(target=lambda: stored.append(off.find_one("User", {"id": user.id}, cache=True).name))
        worker.start()
        worker.join()
        off.find_one("PlanetaryInsight", {"id": day.id}, cache=True)

    watched = spy(off, "User", before_update=other_caller)
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert watched.sent == ["update"] and stored == ["Ann"]  # the other caller cached the pre-image
    hits = cache.stats()["hits"]
    assert off.find_one("User", {"id": user.id}, cache=True).name == "Bea"  # never the stale "Ann"
    assert cache.stats()["hits"] == hits  # its entry was dropped: a miss
    off.find_one("PlanetaryInsight", {"id": day.id}, cache=True)
    assert cache.stats()["hits"] == hits + 1  # another model's entry is kept


def test_a_cache_of_another_database_that_begins_to_hold_the_model_is_told_too(off):
    if off.config.url.startswith("mongomock://"):
        pytest.skip("two embedded Databases share no data, nor a bus")
    reader = Database(off.config.url, server_selection_timeout_ms=5000, allow_plaintext_sensitive=True, **HOOKS_OFF)
    reader.connect()
    try:
        assert reader.executor.runtime.cache.peers is off.executor.runtime.cache.peers  # one LocalBus
        user = _user(off)
        watched = spy(off, "User", before_update=lambda: reader.find_one("User", {"id": user.id}, cache=True))
        assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
        assert watched.sent == ["update"]
        assert reader.find_one("User", {"id": user.id}, cache=True).name == "Bea"
        assert reader.find_one("User", {"id": user.id}, cache=True).name == "Bea"  # a fresh entry, held again
        assert off.update("User", {"id": user.id}, {"name": "Cy"}, returning=False) is True
        assert watched.sent[-1] == ("findAndModify", STAMP)  # the reader's cache holds User: judged by its id
        assert reader.find_one("User", {"id": user.id}, cache=True).name == "Cy"
    finally:
        reader.disconnect()


def test_guards_expected_revision_lists_and_duplicate_keys_on_the_update_command(off):
    user = _user(off)
    day = off.create("PlanetaryInsight", insight_data(user.id, energyLevel=98))
    watched = spy(off, "PlanetaryInsight")
    with pytest.raises(ValidationError, match="outside the field's range"):
        off.update("PlanetaryInsight", {"id": day.id}, {"$inc": {"energyLevel": 5}}, returning=False)
    assert watched.sent == ["update"] and off.find_one("PlanetaryInsight", {"id": day.id}).energy_level == 98
    assert off.update("PlanetaryInsight", {"id": day.id}, {"$inc": {"energyLevel": 1}}, returning=False) is True
    assert off.update("PlanetaryInsight", {"id": day.id}, {"$push": {"recommendations": "Walk"}}, returning=False) is True
    assert watched.sent[-1] == ("findAndModify", None)  # a list change: read, validated whole, compare-and-set
    found = off.find_one("PlanetaryInsight", {"id": day.id})
    assert found.energy_level == 99 and found.recommendations == ["Rest", "Walk"]

    users = spy(off, "User")
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, expected_revision=0, returning=False) is True
    with pytest.raises(ConflictError) as caught:
        off.update("User", {"id": user.id}, {"name": "Cy"}, expected_revision=0, returning=False)
    assert caught.value.current_revision == 1
    assert off.update("User", {"email": "nobody@example.com"}, {"name": "Cy"}, expected_revision=0,
                      returning=False) is False
    assert users.sent == ["update"] * 3
    other = _user(off, "Other")
    with pytest.raises(DuplicateKeyError) as dup:
        off.update("User", {"id": other.id}, {"email": user.email}, returning=False)
    assert "email" in dup.value.fields
    assert off.find_one("User", {"id": other.id}).email == other.email


def test_a_lost_reply_on_the_update_command(off):
    """A ``$set`` (idempotent) is replayed by the run step; at an expected revision the replay
    misses and finds its own op id; an ``$inc`` is never replayed: read back by its op id."""
    user = _user(off)
    watched = spy(off, "User", lose=1)
    assert off.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert watched.sent == ["update", "update"]
    watched.lose = 1
    assert off.update("User", {"id": user.id}, {"name": "Cy"}, expected_revision=2, returning=False) is True
    assert off.find_one("User", {"id": user.id}, lean=True)["_rev"] == 3
    day = off.create("PlanetaryInsight", insight_data(user.id))
    days = spy(off, "PlanetaryInsight", lose=1)
    assert off.update("PlanetaryInsight", {"id": day.id}, {"$inc": {"energyLevel": 5}}, returning=False) is True
    assert days.sent == ["update"]  # never replayed
    assert off.find_one("PlanetaryInsight", {"id": day.id}).energy_level == 55


def test_update_many_is_untouched(off):
    a, b = _user(off, "A"), _user(off, "B")
    watched = spy(off, "User")
    assert off.update_many("User", {"id": {"$in": [a.id, b.id]}}, {"status": "suspended"}) == 2
    assert "update" not in watched.sent  # update_many is its own command (not spied): no update_one


@pytest.mark.parametrize("returning", [True, False])
def test_a_replayed_update_whose_first_attempt_landed_and_no_longer_matches_is_its_own_write(off, returning):
    """The run step replays an idempotent ``$set`` whose reply was lost; if the first attempt
    landed and the update moved the document out of the filter, the replay matches nothing: the
    call still answers the write it made (found by its op id), and the cache hears of it."""
    user = _user(off)
    off.find_one("User", {"id": user.id}, cache=True)  # an entry that must not survive the write
    watched = spy(off, "User", lose=1)
    answer = off.update("User", {"id": user.id, "name": "Ann"}, {"name": "Bea"}, returning=returning)
    assert len(watched.sent) == 2  # replayed once
    assert (answer.name == "Bea") if returning else (answer is True)
    assert off.find_one("User", {"id": user.id}, cache=True).name == "Bea"
    assert off.find_one("User", {"id": user.id}, lean=True)["_rev"] == 1

"""Client-made ObjectIds (astro_db.ids): the ObjectId specification's layout, never repeated in a
process, distinct from PyMongo's own generator's and from a forked child's."""

from __future__ import annotations

import datetime as _dt
import os
import sys

import pytest
from bson import ObjectId

from astro_db import ids
from astro_db.changes import new_op_id


def test_an_id_is_now_this_processs_random_value_and_the_next_count(monkeypatch):
    monkeypatch.setattr(ids, "_time", lambda: 1_700_000_000.9)
    first, second = ids.new_id(), ids.new_id()
    assert type(first) is ObjectId and first.generation_time == _dt.datetime.fromtimestamp(1_700_000_000, _dt.timezone.utc)
    assert first.binary[4:9] == second.binary[4:9] == ids._random  # the process's 5 random bytes
    step = int.from_bytes(second.binary[9:], "big") - int.from_bytes(first.binary[9:], "big")
    assert step % 0x1000000 == 1  # the next count (3 bytes, wrapping)


def test_ids_never_repeat_and_differ_from_pymongos_own(monkeypatch):
    monkeypatch.setattr(ids, "_time", lambda: 1_700_000_000.0)  # one second: only the counter tells them apart
    made = [ids.new_id() for _ in range(20_000)] + ids.new_ids(20_000) + [new_op_id() for _ in range(1000)]
    assert len(set(made)) == len(made)
    assert ObjectId().binary[4:9] != ids._random  # PyMongo's generator has a random value of its own


def test_a_batch_is_consecutive_counts_under_one_clock_read(monkeypatch):
    reads = []
    monkeypatch.setattr(ids, "_time", lambda: reads.append(1) or 1_700_000_000.0)
    batch = ids.new_ids(5)
    assert len(reads) == 1 and len(set(batch)) == 5
    counts = [int.from_bytes(oid.binary[9:], "big") for oid in batch]
    assert all((b - a) % 0x1000000 == 1 for a, b in zip(counts, counts[1:]))
    assert ids.new_ids(0) == []


def test_the_counter_wraps_at_three_bytes(monkeypatch):
    import itertools

    monkeypatch.setattr(ids, "_counter", itertools.count(0xFFFFFF))
    assert [oid.binary[9:] for oid in (ids.new_id(), ids.new_id())] == [b"\xff\xff\xff", b"\x00\x00\x00"]


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs fork")
def test_a_forked_child_draws_its_own_random_value():
    parent = ids.new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        try:
            os.write(write, ids.new_id().binary)
        finally:
            os._exit(0)
    os.close(write)
    child = ObjectId(os.read(read, 12))
    os.close(read)
    os.waitpid(pid, 0)
    assert child.binary[4:9] != parent.binary[4:9]  # reseeded after the fork (os.register_at_fork)
    assert ids.new_id().binary[4:9] == parent.binary[4:9]  # the parent's own value is kept


def test_a_create_and_its_op_id_come_from_the_cheap_generator(monkeypatch):
    """The structural change: a create makes its ``_id`` and its op id with ``ids.new_id``, not
    ``bson.ObjectId()`` (which asks the system for the process id each time)."""
    from astro_db import Database

    made: list[ObjectId] = []
    real = ids.new_id
    monkeypatch.setattr("astro_db.ops.writes.new_id", lambda: made.append(real()) or made[-1])
    monkeypatch.setattr("astro_db.ops.writes.new_op_id", lambda: made.append(real()) or made[-1])
    assert new_op_id is ids.new_id  # the op id is the same generator, called directly
    db = Database("mongomock://localhost/ids", ensure_indexes=False, audit=False, journal=False).connect()
    try:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        assert user.id == made[0] and len(made) == 2  # the document's _id, then the write's op id
        batches: list[list[ObjectId]] = []
        monkeypatch.setattr("astro_db.ops.steps.compile.new_ids",
                            lambda n: batches.append(ids.new_ids(n)) or batches[-1])
        result = db.create_many("User", [{"email": f"u{n}@example.com", "name": "U"} for n in range(3)]
                                + [{"_id": ObjectId("65f0c0ffee0000000000abcd"), "email": "c@example.com", "name": "C"}])
        assert len(batches) == 1 and len(batches[0]) == 4  # the batch's ids at once
        assert result.ids == [*batches[0][:3], ObjectId("65f0c0ffee0000000000abcd")]
        assert len(made) == 2 + 1  # the create's two, then the batch's op id
    finally:
        db.disconnect()

"""``BinaryField`` values keep their subtype through every write and read on the server
(nx-27017): the same check as the embedded backend's (``tests/binary_kit.py``), where PyMongo
decodes subtype 0 as ``bytes`` and subtype 4 as a ``uuid.UUID``. (nx-27017 0.8.1 failed any
command holding plain bytes beside a Binary of another subtype, a replace or a ``findAndModify``
returning the new document: "Object of type bytes is not JSON serializable"; patched by
``tests/nx_launcher.py``, Bug 7.)"""

from __future__ import annotations

import uuid

from binary_kit import NODE_BUFFERS, NODE_UUIDS, Scan, binary, check_binary_round_trips, contents
from bson import Binary
from fuzzing import examples
from hypothesis import HealthCheck, example, given, settings

from astro_db import Database


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(first=contents, second=contents, value=binary)
@example(first=NODE_BUFFERS, second=NODE_UUIDS, value=Binary(b"\x01", 5))
def test_binary_fields_keep_their_subtype_through_every_write_and_read_on_the_server(live_url, first, second, value):
    with Database(live_url, models=[Scan]) as db:
        check_binary_round_trips(db, first, second, value)


def test_upsert_many_of_the_same_binary_data_changes_nothing_on_the_server(live_url):
    """PyMongo reads subtype 0 as ``bytes`` and subtype 4 as a ``uuid.UUID``: before, the
    comparison took them for other values than the ``Binary`` sent, and every upsert of a
    document holding binary data, plain ``bytes`` included, was an update."""
    with Database(live_url, models=[Scan]) as db:
        owner = db.create("User", {"email": "up@example.com", "name": "Up"})
        for data in (b"plain", Binary.from_uuid(uuid.UUID(int=7)), uuid.UUID(int=8), Binary(b"x", 0x80)):
            item = {"userId": owner.id, "slug": repr(data)[:40], "data": data, "blobs": [data], "part": {"blob": data}}
            assert db.upsert_many(Scan, [item], on=("userId", "slug")).inserted == 1
            again = db.upsert_many(Scan, [item], on=("userId", "slug"))
            assert (again.unchanged, again.updated) == (1, 0), (data, again)

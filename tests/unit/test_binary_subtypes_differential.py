"""``BinaryField`` values keep their subtype through every write and read (``tests/binary_kit.py``,
the embedded backend's half; ``tests/live/test_binary_subtypes_live.py`` is the server's)."""

from __future__ import annotations

import itertools

from binary_kit import NODE_BUFFERS, NODE_UUIDS, Scan, binary, check_binary_round_trips, contents
from bson import Binary
from fuzzing import examples
from hypothesis import HealthCheck, example, given, settings

from astro_db import Database

_runs = itertools.count()


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=contents, second=contents, value=binary)
@example(first=NODE_BUFFERS, second=NODE_UUIDS, value=Binary(b"\x01", 5))
def test_binary_fields_keep_their_subtype_through_every_write_and_read(first, second, value):
    with Database(f"mongomock://localhost/binary_{next(_runs)}", models=[Scan], audit=False) as db:
        check_binary_round_trips(db, first, second, value)

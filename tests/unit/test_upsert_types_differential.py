"""``upsert_many`` against the stored bytes: "unchanged" only when the stored document already
holds exactly the item's content, as BSON (type and, in an embedded document, key order
included), and after the call the stored value is exactly the item's.

Before, the comparison was Python's ``==``: a stored ``{"flag": 1}`` upserted as
``{"flag": True}`` (or ``1.0``, or ``{"b": 2, "a": 1}`` over ``{"a": 1, "b": 2}``) was reported
"unchanged" and left as it was, so the caller's value did not come back as written, and a query
for ``{"extra.flag": True}`` did not find the document. The oracle is the server: the BSON the
embedded backend (and nx-27017, ``tests/live``) hands back for the document."""

from __future__ import annotations

import datetime as dt
import itertools

import bson
from bson import Decimal128, Int64, ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongoengine.fields import DictField

from astro_db import Database
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField

UTC = dt.timezone.utc
_runs = itertools.count()


class FreeNote(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    slug = TextField(required=True, max_length=40)
    extra = DictField()

    meta = {"collection": "upsertTypesNotes", "owner": "user_id",
            "indexes": [{"fields": ["user_id", "slug"], "unique": True, "name": "userId_1_slug_1"}]}


def _bytes(value):
    return bson.encode({"v": value})


# values Python's == confuses with one another (True == 1 == 1.0 == Int64(1), 0.0 == -0.0), a
# few others, and containers of them; keys shaped like the service's own fields too
scalars = st.one_of(
    st.sampled_from([True, False, 0, 1, 0.0, -0.0, 1.0, Int64(0), Int64(1), Decimal128("1"), 2**31, Int64(2**31),
                     float(2**31), None, "", "1", "true"]),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, width=64),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    st.text(max_size=4),
)
keys = st.one_of(st.sampled_from(["a", "b", "c", "_id", "_rev", "_op", "__v", "createdAt"]), st.text("xyz", min_size=1, max_size=2))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
                      max_leaves=6)
contents = st.dictionaries(keys, values, max_size=4)


def _twist(value, draw):
    """``value`` with some of its scalars and key orders changed into what Python calls equal."""
    if isinstance(value, dict):
        items = [(k, _twist(v, draw)) for k, v in value.items()]
        if draw(st.booleans()):
            items.reverse()
        return dict(items)
    if isinstance(value, list):
        return [_twist(v, draw) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not draw(st.booleans()):
        return value
    number = float(value)
    alike: list = [number, -number]
    if number.is_integer() and abs(number) < 2**63:
        alike += [int(number), Int64(int(number))]
    if number in (0, 1):
        alike.append(bool(number))
    return draw(st.sampled_from(alike))


@st.composite
def histories(draw):
    first = draw(contents)
    then = [draw(st.one_of(st.just(first), st.builds(lambda: None).map(lambda _: _twist(first, draw)), contents))
            for _ in range(draw(st.integers(1, 3)))]
    return first, then


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_an_upsert_leaves_exactly_the_items_content_and_says_unchanged_only_when_it_was(history):
    first, then = history
    with Database(f"mongomock://localhost/upsert_types_{next(_runs)}", models=[FreeNote]) as db:
        owner = ObjectId()
        db.mongo["users"].insert_one({"_id": owner, "email": "ann@example.com", "name": "Ann"})
        created = db.create(FreeNote, {"userId": owner, "slug": "n", "extra": first})
        stored = db.mongo["upsertTypesNotes"].find_one({"_id": created.id})
        assert _bytes(stored["extra"]) == _bytes(first)  # a create stores it exactly
        for content in then:
            before = _bytes(db.mongo["upsertTypesNotes"].find_one({"_id": created.id})["extra"])
            result = db.upsert_many(FreeNote, [{"userId": owner, "slug": "n", "extra": content}], on=("userId", "slug"))
            assert not result.failed and not result.inserted
            after = db.mongo["upsertTypesNotes"].find_one({"_id": created.id})
            assert _bytes(after["extra"]) == _bytes(content)  # exactly the item's value, type and order included
            unchanged = before == _bytes(content)
            assert (result.unchanged, result.updated) == ((1, 0) if unchanged else (0, 1))


def test_values_python_calls_equal_are_told_apart_by_upsert_many():
    with Database("mongomock://localhost/upsert_types_cases", models=[FreeNote]) as db:
        owner = ObjectId()
        db.mongo["users"].insert_one({"_id": owner, "email": "bob@example.com", "name": "Bob"})
        for n, (stored, written) in enumerate([({"flag": 1}, {"flag": True}), ({"n": 1}, {"n": 1.0}),
                                               ({"n": 0.0}, {"n": -0.0}), ({"n": 5}, {"n": Int64(5)}),
                                               ({"x": [1, 0]}, {"x": [True, False]}),
                                               ({"d": {"a": 1, "b": 2}}, {"d": {"b": 2, "a": 1}})]):
            db.create(FreeNote, {"userId": owner, "slug": f"s{n}", "extra": stored})
            result = db.upsert_many(FreeNote, [{"userId": owner, "slug": f"s{n}", "extra": written}], on=("userId", "slug"))
            assert (result.updated, result.unchanged) == (1, 0), (stored, written)
            assert _bytes(db.mongo["upsertTypesNotes"].find_one({"slug": f"s{n}"})["extra"]) == _bytes(written)
        assert db.mongo["upsertTypesNotes"].count_documents({"extra.flag": True}) == 1
        again = db.upsert_many(FreeNote, [{"userId": owner, "slug": "s0", "extra": {"flag": True}}], on=("userId", "slug"))
        assert (again.updated, again.unchanged) == (0, 1)  # the same content again: no change, no revision

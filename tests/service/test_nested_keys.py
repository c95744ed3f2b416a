"""An app model's index declared without a name, and ``upsert_many`` keyed by a field of an
embedded document, on both backends.

Before: a model declaring ``{"fields": ["profile.handle"], "unique": True}`` (MongoEngine gives
no name unless asked) could not connect: the index sync failed with ``KeyError: 'name'``. With a
name, ``upsert_many(on="profile.handle")`` refused every item as missing its key, which each
held (the key was read as a top-level ``"profile.handle"``).
"""

from __future__ import annotations

import uuid
from typing import Any

import mongoengine as me
import pytest

from astro_db import Database, errors
from astro_db.indexes import declared_indexes, default_name
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField


class Profile(me.EmbeddedDocument):
    handle = me.StringField()
    bio = me.StringField()


class Card(AstroDocument):
    """Unique on a field of an embedded document, the index unnamed."""

    profile = me.EmbeddedDocumentField(Profile)
    title = TextField()
    meta = {"collection": "cards", "indexes": [{"fields": ["profile.handle"], "unique": True}]}


class Badge(me.EmbeddedDocument):
    code = me.StringField()


class Shelf(AstroDocument):
    """Unique indexes on a list and on a field of a list of embedded documents: multikey."""

    tags = me.ListField(me.StringField())
    badges = me.ListField(me.EmbeddedDocumentField(Badge))
    meta = {"collection": "shelves", "indexes": [{"fields": ["tags"], "unique": True},
                                                 {"fields": ["badges.code"], "unique": True}]}


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def db(request: Any) -> Any:
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if request.param == "embedded"
           else request.getfixturevalue("live_url"))
    database = Database(url, models=[Card, Shelf], server_selection_timeout_ms=5000).connect()
    yield database
    database.disconnect()


def test_an_index_declared_without_a_name_is_synced_under_mongodbs_default_name(db: Any) -> None:
    info = db.executor.runtime.registry.resolve("Card")
    assert [spec["name"] for spec in declared_indexes(info)] == ["profile.handle_1"]
    on_server = {tuple(map(tuple, index["key"])): index for index in db.mongo["cards"].index_information().values()}
    assert on_server[(("profile.handle", 1),)]["unique"] is True  # named so on MongoDB (nx-27017 names its own)
    [again] = [row for row in db.sync_indexes() if row["model"] == "Card"]
    assert (again["created"], again["existing"], again["failed"]) == ([], ["profile.handle_1"], {})
    db.create(Card, {"profile": {"handle": "ann"}, "title": "a"})
    with pytest.raises(errors.DuplicateKeyError):
        db.create(Card, {"profile": {"handle": "ann"}, "title": "b"})


def test_the_default_name_is_mongodbs() -> None:
    assert default_name([("userId", 1), ("date", -1)]) == "userId_1_date_-1"
    assert default_name([("profile.handle", 1)]) == "profile.handle_1"
    assert default_name([("title", "text")]) == "title_text"


def test_upsert_many_keys_on_a_field_of_an_embedded_document(db: Any) -> None:
    first = db.upsert_many(Card, [{"profile": {"handle": "ann", "bio": "x"}, "title": "a"},
                                  {"profile": {"handle": "bob"}, "title": "b"}], on="profile.handle")
    assert (first.inserted, first.failed) == (2, [])
    again = db.upsert_many(Card, [{"profile": {"handle": "ann", "bio": "y"}, "title": "a"},
                                  {"profile": {"handle": "bob"}, "title": "b"},
                                  {"profile": {"handle": "cy"}, "title": "c"},
                                  {"profile": {"bio": "no handle"}, "title": "d"},
                                  {"title": "no profile"}], on="profile.handle")
    assert (again.updated_ids, again.unchanged_ids) == (first.ids[:1], first.ids[1:])
    assert again.inserted == 1 and [index for index, _ in again.failed] == [3, 4]
    assert all("profile.handle" in error.errors for _, error in again.failed)
    assert db.find_one(Card, {"profile.handle": "ann"}).profile.bio == "y"
    assert db.count(Card, {}) == 3
    twice = db.upsert_many(Card, [{"profile": {"handle": "dee"}, "title": "1"},
                                  {"profile": {"handle": "dee"}, "title": "2"}], on="profile.handle")
    assert [index for index, _ in twice.failed] == [0, 1] and db.count(Card, {}) == 3


@pytest.mark.parametrize("on", ["tags", "badges.code"])
def test_a_key_on_or_inside_a_list_is_refused(db: Any, on: str) -> None:
    """A multikey index holds one key per item: a document would have several keys."""
    with pytest.raises(errors.QueryError, match="inside, a list"):
        db.upsert_many(Shelf, [{"tags": ["a"], "badges": [{"code": "x"}]}], on=on)
    assert db.count(Shelf, {}) == 0

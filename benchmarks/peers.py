"""The MongoEngine peer: plain MongoEngine documents for the same collections and stored names.

What an application would write with MongoEngine alone: the same fields and validation rules
(lengths, ranges, choices, a valid email) on its own ``mongoengine.connect`` alias, with no
astro_db code. Timestamps and the version key are set when the documents are built.
"""

from __future__ import annotations

from typing import Any

import mongoengine
from bson import ObjectId
from mongoengine import (
    DateTimeField,
    Document,
    EmailField,
    IntField,
    ListField,
    ObjectIdField,
    StringField,
)
from workloads import insight_input, user_input, utcnow

__all__ = ["ALIAS", "connect", "disconnect", "PeerUser", "PeerInsight", "peer_user", "peer_insight", "peer_document"]

ALIAS = "astro_bench_mongoengine"
STATUSES = ("active", "inactive", "suspended", "deleted")
_META: dict[str, Any] = {"db_alias": ALIAS, "strict": False, "auto_create_index": False}


class PeerUser(Document):
    email = EmailField(required=True)
    name = StringField(required=True, min_length=1, max_length=100)
    status = StringField(choices=STATUSES, default="active")
    last_active = DateTimeField(db_field="lastActive")
    created_at = DateTimeField(db_field="createdAt")
    updated_at = DateTimeField(db_field="updatedAt")
    version = IntField(db_field="__v", min_value=0, default=0)

    meta = {**_META, "collection": "users"}


class PeerInsight(Document):
    user_id = ObjectIdField(db_field="userId", required=True)
    date = DateTimeField(required=True)
    energy_level = IntField(db_field="energyLevel", min_value=0, max_value=100, required=True)
    recommendations = ListField(StringField(min_length=1, max_length=500), required=True)
    summary = StringField(max_length=2000)
    expires_at = DateTimeField(db_field="expiresAt")
    created_at = DateTimeField(db_field="createdAt")
    updated_at = DateTimeField(db_field="updatedAt")
    version = IntField(db_field="__v", min_value=0, default=0)

    meta = {**_META, "collection": "planetaryInsights"}


def connect(url: str, **options: Any) -> None:
    """MongoEngine's own client (``tz_aware`` as the other sides) under ``ALIAS``."""
    mongoengine.connect(alias=ALIAS, host=url, tz_aware=True, uuidRepresentation="standard", **options)


def disconnect() -> None:
    mongoengine.disconnect(alias=ALIAS)


def peer_user(n: int, tag: str, status: str = "active") -> PeerUser:
    user: PeerUser = peer_document(PeerUser, user_input(n, tag, status))
    return user


def peer_insight(user_id: ObjectId, n: int) -> PeerInsight:
    insight: PeerInsight = peer_document(PeerInsight, insight_input(user_id, n))
    return insight


def peer_document(cls: type[Document], data: dict[str, Any]) -> Any:
    """A MongoEngine document built from an input dict, as an application would (timed)."""
    now = utcnow()
    return cls(**data, created_at=now, updated_at=now)

"""``User`` (collection ``users``): an account of the astrology app."""

from __future__ import annotations

from .base import AstroDocument
from .fields import ChoiceField, EmailField, TextField, UTCDateTimeField

__all__ = ["User", "USER_STATUSES"]

USER_STATUSES = ("active", "inactive", "suspended", "deleted")


class User(AstroDocument):
    """A person: a unique email (one canonical spelling: NFKC, lower-cased), a display name and a status."""

    # personal data (docs/security.md, "Personal fields"): encrypted with a key configured; the
    # email keeps a blind index (``emailIndex``) for login and uniqueness
    email = EmailField(required=True, sensitive=True)
    name = TextField(required=True, min_length=1, max_length=100, mask="name", sensitive=True)
    status = ChoiceField(USER_STATUSES, default="active")
    last_active = UTCDateTimeField(db_field="lastActive")

    repr_fields = ("email", "status")

    meta = {
        "collection": "users",
        # the declaration (astro_db.registry.Declaration): these documents are the users; writers
        # never delete an account (an admin's decision); a user with status "deleted" is gone
        "owner": "_id",
        "permissions": {
            "reader": ["read"],
            "writer": ["read", "create", "update"],
            "admin": ["read", "create", "update", "delete", "delete_all", "audit", "rotate_key"],
        },
        "deleted_when": {"status": "deleted"},
        # login and uniqueness: equality on the email goes to its blind index ``emailIndex``
        "queryable": ["email"],
        # Not sharded: small, and its unique email must stay enforceable (docs/scaling.md).
        "shard": None,
        "indexes": [
            # without a key (development) the email is stored in clear and ``email_1`` keeps it
            # unique; with one, ``emailIndex_1`` (indexes.py, from meta["queryable"]) does
            {"fields": ["email"], "unique": True, "name": "email_1"},
            {"fields": ["status"], "name": "status_1"},
            {"fields": ["last_active"], "name": "lastActive_1"},
            {"fields": ["status", "-last_active"], "name": "status_1_lastActive_-1"},
        ],
    }

"""An app's own model on astro_db: ``JournalEntry``, registered with ``Database(models=[...])``.

A journal entry belongs to a user (``meta["owner"]``, whose id must name a ``User``:
``meta["references"]``), its text is encrypted at rest (``sensitive=True``), its mood is
encrypted too but queryable by equality (``meta["queryable"]``), it has indexes that
``sync_indexes`` creates, and its roles are declared (readers read, writers write, admins also
delete everything). It gets what the four built-in models get: validation, roles and the
``self`` scope, encryption, the query cache, change records, backup and restore.

Runs on the embedded in-memory backend by default; set MONGODB_URL (and an encryption key) to
run it on a server:
    python examples/app_models.py
    MONGODB_URL=mongodb://localhost:27017/journal ASTRO_DB_ENCRYPTION_KEY=... python examples/app_models.py
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from typing import Any

from astro_db import Database, backup
from astro_db.models import AstroDocument
from astro_db.models.fields import ChoiceField, TextField, UserRefField, UTCDateTimeField

MOODS = ("calm", "restless", "joyful", "low")


class JournalEntry(AstroDocument):
    """A user's private journal entry: the text is encrypted, the mood queryable."""

    user_id = UserRefField(db_field="userId", required=True)
    title = TextField(required=True, min_length=1, max_length=120)
    text = TextField(max_length=10_000, sensitive=True)  # stored as ciphertext, read back as text
    mood = ChoiceField(MOODS, sensitive=True)  # encrypted deterministically: meta["queryable"]
    written_at = UTCDateTimeField(db_field="writtenAt")

    repr_fields = ("user_id", "title")

    meta = {
        "collection": "journalEntries",
        "indexes": [
            {"fields": ["user_id", "-written_at"], "name": "userId_1_writtenAt_-1"},
            {"fields": ["mood"], "name": "mood_1"},
        ],
        "owner": "user_id",  # the self scope and delete_user_cascade follow this field
        "references": {"user_id": "User"},  # check_references=True refuses an unknown user
        "queryable": ["mood"],
        "permissions": {  # what each role may do; a role left out may do nothing
            "reader": ["read"],
            "writer": ["read", "create", "update", "delete"],
            "admin": ["read", "create", "update", "delete", "delete_all", "audit", "rotate_key"],
        },
    }


def open_database(url: str | None = None, **options: Any) -> Database:
    """A Database serving the four built-in models and ``JournalEntry``."""
    return Database(url, models=[JournalEntry], **options)


def main() -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    report: dict[str, Any] = {}
    options: dict[str, Any] = {"encryption_key": os.environ.get("ASTRO_DB_ENCRYPTION_KEY")}
    with open_database(os.environ.get("MONGODB_URL"), **options) as db:
        ann = db.create("User", {"email": f"ann-{run}@example.com", "name": "Ann"})
        bo = db.create("User", {"email": f"bo-{run}@example.com", "name": "Bo"})
        entry = db.create(JournalEntry, {"userId": ann.id, "title": "Full moon", "text": "Slept badly.",
                                         "mood": "restless"})
        db.create(JournalEntry, {"userId": bo.id, "title": "Monday", "text": "Fine.", "mood": "calm"})
        db.update(JournalEntry, {"id": entry.id}, {"mood": "calm"})
        report["found"] = [e.title for e in db.find(JournalEntry, {"mood": "calm"}, sort="title")]

        # an end user sees only her own entries, and cannot write one for someone else
        as_ann = db.as_actor(str(ann.id), "self")
        report["ann_sees"] = [e.title for e in as_ann.find(JournalEntry, {})]

        # backup and restore, like any built-in model
        with tempfile.TemporaryDirectory() as repo:
            backup.backup(db, repo)
            report["backed_up"] = backup.list_sets(repo)[-1]["documents"].get("journalEntries")

        report["deleted"] = db.delete_user_cascade(ann.id)
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))

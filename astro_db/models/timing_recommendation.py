"""``TimingRecommendation`` (collection ``timingRecommendations``): when to do an activity."""

from __future__ import annotations

from mongoengine import EmbeddedDocumentField

from .base import AstroDocument
from .embedded import Risk, TimingWindow, ordered_windows
from .fields import RuleListField, TextField, UserRefField

__all__ = ["TimingRecommendation"]


class TimingRecommendation(AstroDocument):
    """Scored time windows (sorted, not overlapping) for an activity, with its risks."""

    user_id = UserRefField(db_field="userId", required=True)
    activity = TextField(required=True, min_length=1, max_length=100)
    windows = RuleListField(EmbeddedDocumentField(TimingWindow), rule=ordered_windows)
    risks = RuleListField(EmbeddedDocumentField(Risk))

    meta = {
        "collection": "timingRecommendations",
        "shard": {"userId": "hashed"},  # astro_db.sharding; not MongoEngine's shard_key
        "indexes": [
            {"fields": ["user_id"], "name": "userId_1"},
            {"fields": ["activity"], "name": "activity_1"},
            {"fields": ["windows.start"], "name": "windows.start_1"},
            {"fields": ["user_id", "activity", "windows.start"],
             "name": "userId_1_activity_1_windows.start_1"},
        ],
    }

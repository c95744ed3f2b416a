"""``TimingRecommendation`` (collection ``timingRecommendations``): when to do an activity."""

from __future__ import annotations

from .base import AstroDocument
from .embedded import Risk, TimingWindow, ordered_windows
from .fields import EmbeddedDocumentField, RuleListField, TextField, UserRefField

__all__ = ["TimingRecommendation", "MAX_WINDOWS", "MAX_RISKS"]

MAX_WINDOWS = 1000  # a year of daily windows, and then some
MAX_RISKS = 100


class TimingRecommendation(AstroDocument):
    """Scored time windows (sorted, not overlapping) for an activity, with its risks."""

    user_id = UserRefField(db_field="userId", required=True)
    activity = TextField(required=True, min_length=1, max_length=100)
    # the caps keep every document far below MongoDB's 16 MB limit (and the embedded backend,
    # which has no such limit, from accepting what a server would refuse)
    windows = RuleListField(EmbeddedDocumentField(TimingWindow), max_length=MAX_WINDOWS, rule=ordered_windows)
    risks = RuleListField(EmbeddedDocumentField(Risk), max_length=MAX_RISKS)

    repr_fields = ("user_id", "activity")

    meta = {
        "collection": "timingRecommendations",
        "owner": "user_id",  # astro_db.registry.Declaration: owned by a user, whose id must exist
        "references": {"user_id": "User"},
        "shard": {"userId": "hashed"},  # astro_db.sharding; not MongoEngine's shard_key
        "indexes": [
            {"fields": ["user_id"], "name": "userId_1"},
            {"fields": ["activity"], "name": "activity_1"},
            {"fields": ["windows.start"], "name": "windows.start_1"},
            {"fields": ["user_id", "activity", "windows.start"],
             "name": "userId_1_activity_1_windows.start_1"},
        ],
    }

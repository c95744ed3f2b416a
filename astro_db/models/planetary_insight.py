"""``PlanetaryInsight`` (collection ``planetaryInsights``): a user's reading for one day."""

from __future__ import annotations

from .base import AstroDocument
from .fields import (
    NumberField,
    RuleListField,
    TextField,
    UserRefField,
    UTCDateTimeField,
)

__all__ = ["PlanetaryInsight"]


class PlanetaryInsight(AstroDocument):
    """Energy level 0-100, 1-20 recommendations and a summary; expires via a TTL index."""

    user_id = UserRefField(db_field="userId", required=True)
    date = UTCDateTimeField(required=True)
    energy_level = NumberField(db_field="energyLevel", min_value=0, max_value=100, required=True)
    # the reading's texts are about the person: encrypted with a key configured (docs/security.md)
    recommendations = RuleListField(TextField(min_length=1, max_length=500, sensitive=True),
                                    min_length=1, max_length=20, required=True)
    summary = TextField(max_length=2000, sensitive=True)
    expires_at = UTCDateTimeField(db_field="expiresAt")

    repr_fields = ("user_id", "date", "energy_level")

    meta = {
        "collection": "planetaryInsights",
        "owner": "user_id",  # astro_db.registry.Declaration: owned by a user, whose id must exist
        "references": {"user_id": "User"},
        "shard": {"userId": "hashed"},  # astro_db.sharding; not MongoEngine's shard_key
        "indexes": [
            {"fields": ["user_id"], "name": "userId_1"},
            {"fields": ["date"], "name": "date_1"},
            {"fields": ["energy_level"], "name": "energyLevel_1"},
            {"fields": ["user_id", "date"], "unique": True, "name": "userId_1_date_1"},
            {"fields": ["$summary", "$recommendations"], "name": "summary_text_recommendations_text"},
            {"fields": ["expires_at"], "expireAfterSeconds": 0, "name": "expiresAt_1"},
        ],
    }

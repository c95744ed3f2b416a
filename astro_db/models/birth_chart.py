"""``BirthChart`` (collection ``birthCharts``): a user's natal chart."""

from __future__ import annotations

from .base import AstroDocument
from .embedded import BirthData, Position, unique_bodies
from .fields import ChoiceField, EmbeddedDocumentField, RuleListField, UserRefField

__all__ = ["BirthChart", "HOUSE_SYSTEMS"]

HOUSE_SYSTEMS = ("placidus", "koch", "whole-sign", "equal", "porphyry", "regiomontanus", "campanus")


class BirthChart(AstroDocument):
    """Birth data, the computed positions (each body once) and the house system used."""

    user_id = UserRefField(db_field="userId", required=True)
    birth_data = EmbeddedDocumentField(BirthData, db_field="birthData", required=True)
    positions = RuleListField(EmbeddedDocumentField(Position), rule=unique_bodies)
    house_system = ChoiceField(HOUSE_SYSTEMS, db_field="houseSystem", default="placidus")

    repr_fields = ("user_id", "house_system")

    meta = {
        "collection": "birthCharts",
        # the declaration (astro_db.registry.Declaration): owned by a user, whose id must exist; the
        # birth place is queryable by equality (its coordinates stay in clear for the 2dsphere index)
        "owner": "user_id",
        "references": {"user_id": "User"},
        "queryable": ["birth_data.location.name"],
        "shard": {"userId": "hashed"},  # astro_db.sharding; not MongoEngine's shard_key
        "indexes": [
            {"fields": ["user_id"], "name": "userId_1"},
            {"fields": ["birth_data.date"], "name": "birthData.date_1"},
            {"fields": ["(birth_data.location.coordinates"],
             "name": "birthData.location.coordinates_2dsphere"},
        ],
    }

"""The astro_db models: MongoEngine documents over the Node service's collections.

``MODELS`` maps each class name to its class. ``codec`` validates, serialises and hydrates
documents without MongoEngine's slow paths; ``paths`` resolves field names in any spelling.
"""

from __future__ import annotations

from .base import AstroDocument
from .birth_chart import BirthChart
from .planetary_insight import PlanetaryInsight
from .timing_recommendation import TimingRecommendation
from .user import User

__all__ = ["AstroDocument", "BirthChart", "MODELS", "PlanetaryInsight", "TimingRecommendation", "User"]

MODELS = {cls.__name__: cls for cls in (User, BirthChart, PlanetaryInsight, TimingRecommendation)}

"""paths.resolve: any spelling of a field path → its stored dotted path and field."""

from __future__ import annotations

import pytest

from astro_db.errors import QueryError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.fields import NumberField, TextField, UTCDateTimeField
from astro_db.models.paths import resolve


@pytest.mark.parametrize("model,name,stored", [
    (PlanetaryInsight, "energy_level", "energyLevel"),
    (PlanetaryInsight, "energyLevel", "energyLevel"),
    (PlanetaryInsight, "recommendations.0", "recommendations.0"),
    (BirthChart, "birth_data.location.name", "birthData.location.name"),
    (BirthChart, "birthData.location.name", "birthData.location.name"),
    (BirthChart, "birth_data.date", "birthData.date"),
    (BirthChart, "positions.0.degree", "positions.0.degree"),
    (BirthChart, "positions.$.degree", "positions.$.degree"),
    (BirthChart, "positions.$[].house", "positions.$[].house"),
    (BirthChart, "positions.$[p].house", "positions.$[p].house"),
    (BirthChart, "positions.id", "positions._id"),
    (BirthChart, "house_system", "houseSystem"),
    (TimingRecommendation, "windows.start", "windows.start"),
    (User, "id", "_id"),
    (User, "_id", "_id"),
    (User, "last_active", "lastActive"),
    (User, "__v", "__v"),
    (User, "version", "__v"),
    (User, "created_at", "createdAt"),
])
def test_resolve_gives_the_stored_path(model, name, stored):
    assert resolve(model, name).stored == stored


def test_resolve_returns_the_field_at_the_end_of_the_path():
    assert isinstance(resolve(PlanetaryInsight, "energy_level").field, NumberField)
    assert isinstance(resolve(TimingRecommendation, "windows.start").field, UTCDateTimeField)
    assert isinstance(resolve(PlanetaryInsight, "recommendations.$").field, TextField)


@pytest.mark.parametrize("model,name", [
    (BirthChart, "x"),
    (BirthChart, "birthData.planet"),
    (PlanetaryInsight, "energyLevel.value"),
    (BirthChart, "positions.foo"),
    (User, "email.0"),
    (User, ""),
])
def test_resolve_rejects_unknown_fields_with_a_query_error(model, name):
    with pytest.raises(QueryError):
        resolve(model, name)


def test_unknown_field_message_lists_the_known_fields():
    with pytest.raises(QueryError) as caught:
        resolve(BirthChart, "x")
    assert str(caught.value).startswith("unknown field 'x' on BirthChart; known fields: ")
    assert "birthData" in str(caught.value) and "houseSystem" in str(caught.value)


def test_resolve_is_cached():
    assert resolve(User, "last_active") is resolve(User, "last_active")

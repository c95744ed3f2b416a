"""The create path's size rule (``astro_db.ops.sizes``): settled once per model, free for a
model whose fields are all bounded, and measuring only what has no bound."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mongoengine import fields as me

from astro_db.models import AstroDocument, BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.fields import RuleListField, TextField
from astro_db.ops import sizes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from large_model import LARGE, Scan  # noqa: E402

Listed: Any = type("SizesListed", (AstroDocument,), {
    "tags": RuleListField(TextField(max_length=10)), "meta": {"collection": "sizesListed"}})
Wide: Any = type("SizesWide", (AstroDocument,), {
    **{f"f{i}": TextField(max_length=12_000) for i in range(200)}, "meta": {"collection": "sizesWide"}})
Unbounded: Any = type("SizesUnbounded", (AstroDocument,), {
    "note": TextField(), "extra": me.DictField(), "meta": {"collection": "sizesUnbounded"}})


class Watched(dict):  # type: ignore[type-arg]
    """A document that counts every look at its values."""

    looks = 0

    def __contains__(self, key: object) -> bool:
        Watched.looks += 1
        return super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        Watched.looks += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("model", [User, PlanetaryInsight, TimingRecommendation])
def test_a_model_whose_fields_are_all_bounded_is_never_measured(model: Any) -> None:
    """Small creates do not pay: the answer comes from the model's bound, no value is read."""
    Watched.looks = 0
    assert sizes.large(model, [Watched(_id=1, anything="x" * 10)]) is False
    bound, measured = sizes._RULES[model]
    assert measured == () and bound <= sizes.LARGE_DOCUMENT // 2
    assert Watched.looks == 0


def test_the_rule_is_settled_once_per_model() -> None:
    sizes.large(BirthChart, [{}])
    rule = sizes._RULES[BirthChart]
    sizes.large(BirthChart, [{}])
    assert sizes._RULES[BirthChart] is rule
    assert [name for name, _ in rule[1]] == ["birthData", "positions"]  # no bound: measured


def test_only_the_unbounded_fields_are_measured() -> None:
    small = {"_id": 1, "title": "t", "data": b"x" * 100}
    big = {"_id": 2, "title": "t", "data": b"x" * LARGE}
    assert sizes.large(Scan, [small]) is False
    assert sizes.large(Scan, [big]) is True
    assert [name for name, _ in sizes._RULES[Scan][1]] == ["data"]


def test_a_list_of_bounded_items_is_measured_by_its_length_alone() -> None:
    class Untouchable:
        def __getattribute__(self, name: str) -> Any:
            raise AssertionError("an item was looked at")

    items = [Untouchable()] * 10
    assert sizes.large(Listed, [{"tags": items}]) is False
    assert sizes.large(Listed, [{"tags": [Untouchable()] * 100_000}]) is True


def test_unbounded_text_and_dicts_are_measured_through() -> None:
    assert sizes.large(Unbounded, [{"note": "n" * 10, "extra": {"a": ["b" * 10]}}]) is False
    assert sizes.large(Unbounded, [{"note": "n", "extra": {"a": [{"b": "c" * sizes.LARGE_DOCUMENT}]}}]) is True
    assert sizes.large(Unbounded, [{"note": "n" * sizes.LARGE_DOCUMENT}]) is True


def test_measured_text_counts_its_utf8_bytes_not_its_characters() -> None:
    """A third of the threshold in characters: ASCII is small, the same count of three-byte
    characters (2 MiB and more in UTF-8) is large, four-byte ones too, and a lone surrogate
    (which BSON refuses later) is counted, not raised on."""
    third = sizes.LARGE_DOCUMENT // 3 + 1024
    assert sizes.large(Unbounded, [{"note": "a" * third}]) is False
    assert sizes.large(Unbounded, [{"note": "\u4e2d" * third}]) is True
    assert sizes.large(Unbounded, [{"extra": {"k": ["\U0001f600" * (sizes.LARGE_DOCUMENT // 4 + 1024)]}}]) is True
    assert sizes.large(Unbounded, [{"note": "\ud800" * 10}]) is False


def test_a_model_whose_bounds_could_pass_the_threshold_measures_its_largest_fields() -> None:
    """200 text fields of up to 12,000 characters (2.4 MB together): the largest are measured until
    what is left is bounded by half the threshold."""
    bound, measured = sizes._RULES.get(Wide) or sizes._rule(Wide)
    assert bound <= sizes.LARGE_DOCUMENT // 2 and 0 < len(measured) < 200
    short = {f"f{i}": "s" for i in range(200)}
    assert sizes.large(Wide, [short]) is False
    assert sizes.large(Wide, [{name: "l" * 12_000 for name, _ in measured}]) is True


def test_the_documents_of_a_batch_count_together() -> None:
    half = {"data": b"h" * (sizes.LARGE_DOCUMENT // 2 + 1024)}
    assert sizes.large(Scan, [half]) is False
    assert sizes.large(Scan, [half, half]) is True

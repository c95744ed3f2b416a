"""Page tokens of a sort by a personal field carry none of its values.

A page token travels further than the page it follows (URLs, access logs, browser history), and
its body was only base64: a page of users sorted by e-mail handed out the last user's address
(and name) to whoever read the token, birth charts sorted by their birth data the birth place
and date. Without an encryption key those fields are stored in clear and may be sort keys; a
field that is only masked (``mask="email"``: hidden from logs and ``to_dict(masked=True)``) was
carried the same way. Now such a token's body is encrypted under the token key (AES-SIV):
Hypothesis draws users and charts, pages through them by personal sort keys, and checks that
no token's bytes hold a personal value while paging still gives exactly what one sorted
``find`` gives (the server is the oracle, as in ``test_pages_differential.py``)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongoengine import fields as me
from pages_kit import chart_database, sorted_ids, total

from astro_db import Database
from astro_db.errors import QueryError
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField

UTC = dt.timezone.utc


def _raw(token: str) -> bytes:
    """A token's bytes, as whoever holds it reads them."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _tokens(db: Database, model: str, order: Any, limit: int, size: int, **options: Any) -> tuple[list[Any], list[str]]:
    """Every page in turn: the ids it gave and the tokens it handed out."""
    got, tokens, token = [], [], None
    for _ in range(size + 2):
        page = db.page(model, {}, sort=order, limit=limit, after=token, lean=True, **options)
        got += [d["_id"] for d in page.items]
        token = page.next
        if token is None:
            return got, tokens
        tokens.append(token)
    raise AssertionError("pages do not end")


# local parts and names that tie often (the tie-break pages too), long enough to be found
local = st.sampled_from(["alice.wonder", "bob.builder", "carol.singer", "dave.diver"])
person = st.tuples(local, st.sampled_from(["example.com", "mail.test"]), st.sampled_from(["Zelda", "Yannick", "Xenia"]))
def _by_personal(order: list[tuple[str, int]]) -> bool:
    """A personal key decides: it comes before ``id`` (what follows the id never decides)."""
    keys = [k for k, _ in order]
    return any(k in ("email", "name") for k in keys[: keys.index("id") if "id" in keys else len(keys)])


user_sort = st.lists(st.tuples(st.sampled_from(["email", "name", "createdAt", "id"]), st.sampled_from([1, -1])),
                     min_size=1, max_size=3, unique_by=lambda pair: pair[0]).filter(_by_personal)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.lists(person, max_size=9, unique_by=lambda p: (p[0], p[1])), order=user_sort, limit=st.integers(1, 3))
def test_users_paged_by_email_or_name_hand_out_no_address_or_name(people, order, limit):
    with Database(f"mongomock://localhost/ptok{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        for name_part, domain, name in people:
            db.create("User", {"email": f"{name_part}@{domain}", "name": name})
        stored = [("_id" if k == "id" else k, d) for k, d in total(order)]
        expected = [d["_id"] for d in db.mongo["users"].find({}, sort=stored)]
        got, tokens = _tokens(db, "User", order, limit, len(people))
        assert got == expected
        for token in tokens:
            raw = _raw(token)
            for name_part, _domain, name in people:
                assert name_part.encode() not in raw and name.encode() not in raw, "a personal value in a token"


chart = st.fixed_dictionaries({"date": st.sampled_from([dt.datetime(1990, 5, d, 6, 30, tzinfo=UTC) for d in (1, 2)]),
                               "timezone": st.sampled_from(["UTC", "Europe/Paris"])},
                              optional={"location": st.fixed_dictionaries(
                                  {"name": st.sampled_from(["Trondheim", "Valparaiso"])})})
chart_sort = st.lists(st.tuples(st.sampled_from(["birthData", "birthData.date", "birthData.location.name",
                                                 "birthData.location", "birthData.timezone"]),
                                st.sampled_from([1, -1])), min_size=1, max_size=2,
                      unique_by=lambda pair: pair[0]).filter(lambda order: order[0][0] != "birthData.timezone")


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(chart, max_size=8), order=chart_sort, limit=st.integers(1, 3))
def test_charts_paged_by_birth_data_hand_out_no_birth_place_or_date(docs, order, limit):
    """``birthData`` holds the birth date and place (personal), ``birthData.location`` the place:
    a sort by the field holding them carries them as much as a sort by them."""
    with chart_database("ptokc", docs) as db:
        expected = sorted_ids(db.mongo["birthCharts"], order)
        got, tokens = _tokens(db, "BirthChart", order, limit, len(docs))
        assert got == expected
        millis = {int(doc["date"].timestamp() * 1000).to_bytes(8, "little", signed=True) for doc in docs}
        for token in tokens:
            raw = _raw(token)
            assert b"Trondheim" not in raw and b"Valparaiso" not in raw, "a birth place in a token"
            assert not any(m in raw for m in millis), "a birth date in a token"


# an app's model: an address that is only masked (not declared sensitive: stored in clear with a
# key too) and a nickname masked as a name
Contact: Any = type("Contact", (AstroDocument,), {
    "address": me.EmailField(mask="email"), "nickname": TextField(max_length=40, mask="name"),
    "rank": me.IntField(), "meta": {"collection": "contacts"}})


@pytest.mark.parametrize("key", ["address", "nickname"])
def test_a_field_only_masked_is_personal_in_a_token_too(key):
    with Database("mongomock://localhost/ptokmask", models=[Contact], audit=False, journal=False,
                  ensure_indexes=False) as db:
        for n in range(4):
            db.create("Contact", {"address": f"secret{n}@example.com", "nickname": f"Hidden{n}", "rank": n})
        first = db.page("Contact", {}, sort=key, limit=1)
        assert b"secret" not in _raw(first.next) and b"Hidden" not in _raw(first.next)
        rest = db.page("Contact", {}, sort=key, limit=5, after=first.next)
        assert [c.rank for c in [*first.items, *rest.items]] == [0, 1, 2, 3]
        # a field no model declares personal: readable as before (its values are what the page shows)
        plain = db.page("Contact", {}, sort="rank", limit=1)
        assert b"secret" not in _raw(plain.next)


def test_a_sealed_token_altered_or_replayed_elsewhere_is_refused():
    with Database("mongomock://localhost/ptoktamper", audit=False, journal=False, ensure_indexes=False) as db:
        for n in range(3):
            db.create("User", {"email": f"u{n}@example.com", "name": f"U{n}"})
        token = db.page("User", {}, sort="email", limit=1).next
        raw = bytearray(_raw(token))
        for at in (0, len(raw) // 2, len(raw) - 1):
            bad = bytearray(raw)
            bad[at] ^= 1
            forged = base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
            with pytest.raises(QueryError, match="invalid page token"):
                db.page("User", {}, sort="email", limit=1, after=forged)
        for other in ({"sort": "-email"}, {"sort": "name"}):
            with pytest.raises(QueryError, match="invalid page token"):
                db.page("User", {}, limit=1, after=token, **other)
        with pytest.raises(QueryError, match="invalid page token"):
            db.as_actor("bi", roles=["reader"]).page("User", {}, sort="email", limit=1, after=token)
        assert len(db.page("User", {}, sort="email", limit=5, after=token).items) == 2


def test_a_page_repr_and_the_slow_log_show_no_address_and_no_token(caplog):
    with Database("mongomock://localhost/ptokrepr", audit=False, journal=False, ensure_indexes=False,
                  slow_query_ms=0) as db:
        for n in range(3):
            db.create("User", {"email": f"hidden{n}@example.com", "name": f"Hidden{n}"})
        with caplog.at_level(logging.DEBUG, logger="astro_db"):
            first = db.page("User", {}, sort="email", limit=1, lean=True)
            second = db.page("User", {}, sort="email", limit=1, after=first.next, lean=True)
        for page in (first, second):
            assert "hidden" not in repr(page) and page.next not in repr(page)
        assert "hidden" not in caplog.text and "Hidden" not in caplog.text

"""Reading large results: ``iter_find`` (streaming, batch by batch) and ``page`` (keyset pages with
tamper-proof tokens), on both backends."""

from __future__ import annotations

import base64

import pytest
from pymongo import monitoring

from astro_db import Database, Page, errors
from astro_db.errors import AstroDBError, PermissionDeniedError, QueryError
from astro_db.models import PlanetaryInsight, User
from astro_db.security.crypto import new_key

from .conftest import insight_data


def _users(db, n, names=5):
    result = db.create_many("User", [{"email": f"u{i:03d}@example.com", "name": f"Name {i % names}"} for i in range(n)])
    assert not result.failed
    return result


# --- iter_find -------------------------------------------------------------------------------


def test_iter_find_streams_every_match_as_instances_or_dicts(db):
    _users(db, 23)
    streamed = db.iter_find(User, {"name": "Name 1"}, sort="email", batch_size=2)
    emails = [u.email for u in streamed]
    assert emails == [u.email for u in db.find(User, {"name": "Name 1"}, sort="email")]
    assert len(emails) == 5
    lean = list(db.iter_find("User", {}, lean=True, sort="-email", limit=4))
    assert [d["email"] for d in lean] == ["u022@example.com", "u021@example.com", "u020@example.com", "u019@example.com"]
    assert all(isinstance(d, dict) and "_id" in d for d in lean)


def test_iter_find_checks_everything_before_returning(db):
    with pytest.raises(QueryError):
        db.iter_find("User", {"$where": "1"})  # refused at the call, not at the first next()
    with pytest.raises(QueryError):
        db.iter_find("User", {}, batch_size=0)
    with pytest.raises(TypeError, match="cache"):
        db.iter_find("User", {}, cache=True)  # a stream never goes through the query cache


def test_iter_find_scopes_a_self_actor_and_opens_nothing_it_should_not(db):
    users = _users(db, 4)
    me = users[2]
    for u in users:
        db.create("PlanetaryInsight", insight_data(u.id))
    mine = list(db.as_actor(str(me.id), ["self"]).iter_find(PlanetaryInsight, {}))
    assert [str(i.user_id) for i in mine] == [str(me.id)]


def test_iter_find_can_be_closed_early(db):
    _users(db, 12)
    stream = db.iter_find("User", {}, batch_size=3)
    first = next(stream)
    assert first.email
    stream.close()  # the cursor is closed with it
    with pytest.raises(StopIteration):
        next(stream)


# --- page ------------------------------------------------------------------------------------


def test_pages_cover_every_document_exactly_once_in_order(db):
    _users(db, 37, names=4)  # many ties on name: _id breaks them
    seen, page = [], db.page(User, {}, sort=[("name", 1)], limit=5)
    assert isinstance(page, Page) and len(page.items) == 5
    while True:
        seen.extend(page.items)
        if page.next is None:
            break
        page = db.page(User, {}, sort=[("name", 1)], limit=5, after=page.next)
    assert len(seen) == 37 and len({u.id for u in seen}) == 37
    expected = db.find(User, {}, sort=[("name", 1), ("_id", 1)])
    assert [u.id for u in seen] == [u.id for u in expected]


def test_pages_descending_with_a_filter_and_lean(db):
    _users(db, 20, names=2)
    out, token = [], None
    while True:
        page = db.page("User", {"name": "Name 0"}, sort="-email", limit=3, after=token, lean=True)
        out += [d["email"] for d in page.items]
        token = page.next
        if token is None:
            break
    assert out == sorted((f"u{i:03d}@example.com" for i in range(0, 20, 2)), reverse=True)


def test_a_last_page_that_is_exactly_full_says_there_is_no_next(db):
    _users(db, 6)
    first = db.page("User", {}, limit=3)
    second = db.page("User", {}, limit=3, after=first.next)
    assert len(second.items) == 3 and second.next is None


def test_null_and_missing_sort_values_are_paged_like_the_server_orders_them(db):
    if db.test_backend == "nx":
        pytest.skip("nx-27017 sorts a missing value after present ones; MongoDB (and the embedded backend) first")
    users = _users(db, 6)
    for u in users[:3]:
        db.update("User", {"id": u.id}, {"lastActive": "2026-01-01T00:00:00Z"})
    for direction in (1, -1):
        got, token = [], None
        while True:
            page = db.page("User", {}, sort=[("lastActive", direction)], limit=2, after=token)
            got += [u.id for u in page.items]
            token = page.next
            if token is None:
                break
        assert sorted(got) == sorted(u.id for u in users) and len(got) == 6, direction


def test_a_token_is_tamper_proof_and_bound_to_its_query_sort_and_actor(db):
    users = _users(db, 10)
    token = db.page("User", {}, sort="name", limit=3).next
    assert token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-2] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (forged, token[:-3], "not a token!", "A" * 40):
        with pytest.raises(QueryError, match="page token"):
            db.page("User", {}, sort="name", limit=3, after=bad)
    with pytest.raises(QueryError, match="another query"):
        db.page("User", {"name": "Name 1"}, sort="name", limit=3, after=token)  # another filter
    with pytest.raises(QueryError, match="another query"):
        db.page("User", {}, sort="-name", limit=3, after=token)  # another sort
    with pytest.raises(QueryError, match="another query"):
        db.as_actor(str(users[0].id), ["self"]).page("User", {}, sort="name", limit=3, after=token)  # another actor
    with pytest.raises(QueryError, match="page token"):
        db.page("User", {}, sort="name", limit=3, after=12345)
    assert db.page("User", {}, sort="name", limit=5, after=token).items  # the limit may change between pages


def test_bad_page_arguments_are_clear_errors(db):
    for limit in (0, -1, 10_001, 2.5, True, "3", None):
        with pytest.raises(QueryError, match="limit"):
            db.page("User", {}, limit=limit)
    with pytest.raises(QueryError):
        db.page("User", {}, sort=[("nope", 1)], limit=2)
    with pytest.raises(QueryError, match="sort keys"):
        db.page("User", {}, sort="name", projection={"name": 0}, limit=2)
    keyed = Database(db.config.replace(encryption_key=new_key())).connect()  # with a key: ciphertext has no order
    try:
        with pytest.raises(QueryError, match="encrypted"):
            keyed.page("BirthChart", {}, sort="birthData.location.name", limit=2)
    finally:
        keyed.disconnect()
    assert db.page("User", {}, sort="name", limit=2) is not None  # without one, in clear: it runs
    with pytest.raises(TypeError):
        db.page("User", {})  # limit is required


def test_a_page_by_a_list_is_refused_and_one_position_of_it_is_paged(db):
    # the server sorts a list by its smallest item (ascending) or its largest (descending), while
    # "after the last one" compares the list whole and item by item: descending by the largest,
    # after ["a", "z"] comes ["b"], which {"$lt": ["a", "z"]} and {"$lt": <each item>} both miss
    user = db.create("User", {"email": "lists@example.com", "name": "Lists"})
    for day, items in enumerate((["b", "z"], ["c"], ["a", "y"])):
        db.create(PlanetaryInsight, insight_data(user.id, day, recommendations=items))
    for sort in ("recommendations", "-recommendations", [("date", 1), ("recommendations", -1)]):
        with pytest.raises(QueryError, match="holds a list"):
            db.page(PlanetaryInsight, {}, sort=sort, limit=1)
    with pytest.raises(QueryError, match="holds a list"):
        db.page("BirthChart", {}, sort="positions.degree", limit=1)  # through a list of documents
    if db.test_backend == "nx":
        return  # nx-27017 does not sort by a list position (["b"] first); MongoDB and the embedded backend do
    seen, page = [], db.page(PlanetaryInsight, {}, sort="recommendations.0", limit=1)
    for _ in range(5):  # bounded: a page whose start does not move on would repeat for ever
        seen.extend(i.recommendations[0] for i in page.items)
        if page.next is None:
            break
        page = db.page(PlanetaryInsight, {}, sort="recommendations.0", limit=1, after=page.next)
    assert seen == ["a", "b", "c"] and page.next is None


def test_a_page_with_a_projection_carries_its_sort_keys(db):
    _users(db, 5)
    page = db.page("User", {}, sort="name", projection=["email"], limit=2, lean=True)
    assert set(page.items[0]) >= {"email", "name", "_id"}
    assert db.page("User", {}, sort="name", projection=["email"], limit=2, lean=True, after=page.next).items


def test_page_sends_no_skip_and_seeks_by_the_sort_keys(db):
    """What makes page 1,000 cost what page 1 does: the server gets a condition on the sort keys
    and ``limit + 1``, never a ``skip``."""
    if db.test_backend == "embedded":
        pytest.skip("the embedded backend publishes no driver commands")
    _users(db, 12)
    seen: list[dict] = []

    class Spy(monitoring.CommandListener):
        def started(self, event):
            if event.command_name == "find":
                seen.append(event.command.to_dict() if hasattr(event.command, "to_dict") else dict(event.command))

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    from astro_db import Database

    spied = Database(db.config, event_listeners=[Spy()]).connect()
    try:
        first = spied.page("User", {}, sort="name", limit=4)
        spied.page("User", {}, sort="name", limit=4, after=first.next)
    finally:
        spied.disconnect()
    assert len(seen) == 2 and all("skip" not in cmd and cmd["limit"] == 5 for cmd in seen)
    assert seen[1]["filter"]["$and"][0] == {"name": {"$gte": first.items[-1].name}}  # a range on the sort key: a seek


def test_a_stream_that_loses_its_server_mid_way_raises_a_translated_error_without_retrying(db, request):
    """A later batch is never retried: the server has moved the cursor on. Here the server dies
    between two batches."""
    if db.test_backend != "nx":
        pytest.skip("kills the session's nx-27017 server")
    live_server = request.getfixturevalue("live_server")
    _users(db, 9)
    finds, get_mores = [], []

    class Spy(monitoring.CommandListener):
        def started(self, event):
            if event.command_name == "getMore":
                get_mores.append(event.request_id)
            if event.command_name == "find":
                finds.append(event.request_id)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    from astro_db import Database

    spied = Database(db.config.replace(server_selection_timeout_ms=1000, retry_attempts=3), event_listeners=[Spy()]).connect()
    try:
        stream = spied.iter_find("User", {}, batch_size=2)
        [next(stream), next(stream)]  # the first batch
        assert len(finds) == 1
        live_server.kill()
        with pytest.raises(AstroDBError) as info:
            list(stream)
        assert not isinstance(info.value, PermissionDeniedError)
        assert len(get_mores) <= 1 and len(finds) == 1  # no retry, and no new find behind the caller's back
    finally:
        spied.disconnect()
        live_server.start()


def test_reading_on_translates_driver_errors_and_counts_them_on_the_breaker(db):
    """The run step's ``read_on`` (every batch after the first): a driver error becomes an
    ``astro_db`` error and a breaker failure, with no retry."""
    import pymongo.errors as pm

    from astro_db.ops.steps import run

    rt = db.executor.runtime
    info = db.executor.model("User")
    calls = []

    class LostCursor:
        def __next__(self):
            calls.append(1)
            raise pm.AutoReconnect("connection lost mid-stream")

    failures = rt.breaker.stats()["consecutive_failures"] if hasattr(rt.breaker, "stats") else None
    with pytest.raises(AstroDBError):
        run.read_on(rt, info, "iter_find", LostCursor())
    assert calls == [1]
    if failures is not None:
        assert rt.breaker.stats()["consecutive_failures"] == failures + 1

    class Done:
        def __next__(self):
            raise StopIteration

    assert run.read_on(rt, info, "iter_find", Done()) is run.END


def test_a_limit_or_skip_no_bson_integer_holds_is_a_query_error_before_anything_is_sent(db):
    """2**63 and above reached the driver, which cannot encode them: on a server an AstroDBError
    ("failed unexpectedly: OverflowError") from inside the call; now a QueryError, as -1 is."""
    for options in ({"limit": 2**63}, {"skip": 2**64}, {"batch_size": 2**63}):
        with pytest.raises(errors.QueryError, match="must be a whole number"):
            db.iter_find("PlanetaryInsight", {}, **options)
        with pytest.raises(errors.QueryError, match="must be a whole number"):
            db.find("PlanetaryInsight", {}, **options)

"""Read routing: ``read_preference=`` on every read reaches PyMongo, stays off transactions, keys the cache.

What reaches the wire is checked against an in-process fake mongos (``tests/fake_mongos.py``):
PyMongo sends ``$readPreference`` to a router but never to a standalone server (nx-27017, a lone
mongod), so a standalone cannot show it. The embedded backend checks the ``with_options`` call.
"""

from __future__ import annotations

import pytest
from fake_mongos import FakeMongos

from astro_db import Database, DatabaseConfig
from astro_db.driver.routing import ANALYTICS, ReadPreference
from astro_db.errors import ConfigError, QueryError, TransactionError

READS = {
    "find": lambda db, **kw: db.find("PlanetaryInsight", {"energyLevel": 5}, **kw),
    "find_one": lambda db, **kw: db.find_one("PlanetaryInsight", {"energyLevel": 5}, **kw),
    "count": lambda db, **kw: db.count("PlanetaryInsight", {"energyLevel": 5}, **kw),
    "aggregate": lambda db, **kw: db.aggregate("PlanetaryInsight", [{"$match": {"energyLevel": 5}}], **kw),
}
WIRE_NAME = {"find": "find", "find_one": "find", "count": "aggregate", "aggregate": "aggregate"}


@pytest.fixture(scope="module")
def fake_mongos():
    with FakeMongos() as server:
        yield server


@pytest.fixture
def mongos(fake_mongos):
    fake_mongos.clear()
    return fake_mongos


def _db(url: str, **overrides) -> Database:
    options = dict(server_selection_timeout_ms=3000, connect_attempts=1, ensure_indexes=False, audit=False, journal=False)
    options.update(overrides)
    return Database(url, **options).connect()


@pytest.fixture
def embedded():
    with Database("mongomock://localhost/routing", ensure_indexes=False) as db:
        yield db


# --- what reaches the wire ------------------------------------------------------------------

@pytest.mark.parametrize("form", list(READS))
@pytest.mark.parametrize("mode", ["primaryPreferred", "secondary", "secondaryPreferred", "nearest"])
def test_every_read_form_sends_its_read_preference_to_a_mongos(mongos, form, mode):
    db = _db(mongos.url("astro"))
    try:
        READS[form](db, read_preference=mode)
    finally:
        db.disconnect()
    (command,) = mongos.reads()
    assert next(iter(command)) == WIRE_NAME[form]
    assert command["$readPreference"] == {"mode": mode}


@pytest.mark.parametrize("form", list(READS))
def test_tag_sets_and_max_staleness_reach_the_wire(mongos, form):
    pref = {"mode": "nearest", "tag_sets": [{"dc": "east", "use": "reports"}, {}], "max_staleness_s": 120}
    db = _db(mongos.url("astro"))
    try:
        READS[form](db, read_preference=pref)
        READS[form](db, read_preference=ReadPreference("secondary", ({"dc": "west"},)))
    finally:
        db.disconnect()
    first, second = (c["$readPreference"] for c in mongos.reads())
    assert first == {"mode": "nearest", "tags": [{"dc": "east", "use": "reports"}, {}], "maxStalenessSeconds": 120}
    assert second == {"mode": "secondary", "tags": [{"dc": "west"}]}


@pytest.mark.parametrize("form", list(READS))
def test_primary_sends_no_read_preference(mongos, form):
    db = _db(mongos.url("astro"))
    try:
        READS[form](db)
        READS[form](db, read_preference="primary")
    finally:
        db.disconnect()
    assert [c.get("$readPreference") for c in mongos.reads()] == [None, None]


def test_the_configured_default_applies_and_a_call_overrides_it(mongos):
    db = _db(mongos.url("astro"), read_preference="secondaryPreferred", read_preference_tags=[{"dc": "east"}],
             max_staleness_s=90)
    try:
        db.find("User", {"status": "active"})  # (not by name: a personal field, refused by value without a key)
        db.find("User", {"status": "active"}, read_preference="primary")
    finally:
        db.disconnect()
    default, primary = mongos.reads()
    assert default["$readPreference"] == {"mode": "secondaryPreferred", "tags": [{"dc": "east"}], "maxStalenessSeconds": 90}
    assert "$readPreference" not in primary


# --- PyMongo's with_options, on the embedded backend -----------------------------------------

def test_routed_collections_come_from_with_options_and_are_built_once(embedded, monkeypatch):
    import mongomock_ng.collection as mc

    calls = []
    original = mc.Collection.with_options

    def spy(self, *args, **kwargs):
        calls.append((self.name, kwargs.get("read_preference")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mc.Collection, "with_options", spy)
    for form in READS:
        READS[form](embedded, read_preference="secondary")
        READS[form](embedded, read_preference="secondary")
    READS["find"](embedded, read_preference={"mode": "nearest", "tag_sets": [{"dc": "east"}]})
    READS["find"](embedded)  # the default: the collection as it is
    assert [(name, pref.mongos_mode, pref.tag_sets) for name, pref in calls] == [
        ("planetaryInsights", "secondary", [{}]),
        ("planetaryInsights", "nearest", [{"dc": "east"}]),
    ]


def test_routed_reads_return_the_same_documents_on_the_embedded_backend(embedded):
    embedded.create("User", {"email": "ann@example.com", "name": "Ann"})
    for mode in ("primary", "secondary", "nearest"):
        assert [u.name for u in embedded.find("User", {}, read_preference=mode)] == ["Ann"]
        assert embedded.count("User", {}, read_preference=mode) == 1


# --- transactions ----------------------------------------------------------------------------

@pytest.mark.parametrize("form", list(READS))
@pytest.mark.parametrize("mode", ["secondary", "secondaryPreferred", "nearest", {"mode": "primaryPreferred"}])
def test_reads_in_a_transaction_refuse_a_non_primary_preference(embedded, form, mode):
    with embedded.transaction() as tx:
        with pytest.raises(TransactionError, match="reads inside a transaction go to the primary"):
            READS[form](embedded, read_preference=mode, transaction=tx)
        READS[form](embedded, read_preference="primary", transaction=tx)  # allowed, and the tx goes on
        READS[form](embedded, transaction=tx)
    assert embedded.metrics()["operations"]["PlanetaryInsight"][form]["count"] == 2  # the refused read never ran


def test_a_transaction_cannot_be_opened_off_the_primary(embedded):
    with pytest.raises(TransactionError, match="transactions read from the primary"):
        embedded.start_transaction(read_preference="secondary")


# --- the query cache -------------------------------------------------------------------------

def test_the_query_cache_keys_each_read_preference_apart(embedded):
    embedded.create("User", {"email": "ann@example.com", "name": "Ann"})
    for mode in (None, "primary", "secondary", "secondary", {"mode": "secondary", "tag_sets": [{"dc": "east"}]}):
        embedded.find("User", {"name": "Ann"}, cache=True, read_preference=mode)
    stats = embedded.metrics()["cache"]
    # None and "primary" are the same route (the default); "secondary" twice hits once.
    assert (stats["misses"], stats["hits"], stats["entries"]) == (3, 2, 3)


def test_a_write_invalidates_the_entries_of_every_read_preference(embedded):
    embedded.create("User", {"email": "ann@example.com", "name": "Ann"})
    assert embedded.count("User", {}, cache=True, read_preference="secondary") == 1
    embedded.create("User", {"email": "bob@example.com", "name": "Bob"})
    assert embedded.count("User", {}, cache=True, read_preference="secondary") == 2


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("tertiary", "mode must be one of primary, primaryPreferred"),
    (42, "must be a mode name"),
    ({"tag_sets": [{"dc": "east"}]}, "takes 'mode' [(]required[)]"),  # no backslash: mutmut selects tests by id
    ({"mode": "secondary", "stale": 1}, "takes 'mode'"),
    ({"mode": "secondary", "max_staleness_s": 10}, ">= 90"),
    ({"mode": "secondary", "max_staleness_s": True}, ">= 90"),
    ({"mode": "secondary", "tag_sets": [{"dc": 1}]}, "dicts of strings"),
    ({"mode": "primary", "tag_sets": [{"dc": "east"}]}, "'primary' takes no tag_sets"),
])
def test_a_bad_read_preference_is_a_query_error_before_any_io(embedded, value, message):
    with pytest.raises(QueryError, match=message):
        embedded.find("User", {}, read_preference=value)
    assert "User" not in embedded.metrics()["operations"]


def test_read_preference_text_form_is_stable():
    pref = ReadPreference.of({"mode": "nearest", "tag_sets": [{"use": "r", "dc": "e"}, {}], "max_staleness_s": 100})
    assert pref.key == "nearest[dc=e,use=r;]~100" == str(pref)
    assert ReadPreference.of("secondaryPreferred") == ReadPreference(ANALYTICS)
    assert ReadPreference.of(pref) is pref


@pytest.mark.parametrize("options, key", [
    ({"max_staleness_s": 120}, "max_staleness_s"),
    ({"read_preference_tags": [{"dc": "east"}]}, "read_preference_tags"),
    ({"read_preference": "secondary", "read_preference_tags": [{"dc": 1}]}, "read_preference_tags"),
    ({"read_preference": "secondary", "max_staleness_s": 30}, "max_staleness_s"),
    ({"read_preference": "farthest"}, "read_preference"),
])
def test_config_rejects_inconsistent_routing(options, key):
    with pytest.raises(ConfigError) as info:
        DatabaseConfig(**options)
    assert info.value.key == key


def test_config_routing_passes_to_the_client():
    cfg = DatabaseConfig(url="mongodb://h1,h2/astro", replica_set="rs0", read_preference="secondaryPreferred",
                         read_preference_tags=[{"dc": "east"}, {}], max_staleness_s=120)
    opts = cfg.client_options()
    assert (opts["readPreference"], opts["readPreferenceTags"], opts["maxStalenessSeconds"], opts["replicaSet"]) == (
        "secondaryPreferred", ["dc:east", ""], 120, "rs0")


# --- analytics helpers -----------------------------------------------------------------------

def test_the_daily_insights_report_reads_from_a_secondary_unless_it_just_wrote(embedded, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "daily_insights.py"
    spec = importlib.util.spec_from_file_location("daily_insights_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    seen = []
    original = embedded.aggregate
    monkeypatch.setattr(embedded, "aggregate", lambda *a, **kw: seen.append(kw.get("read_preference")) or original(*a, **kw))
    written = example.main(["--users", "2", "--days", "3", "--start", "2024-03-01", "--json"], db=embedded)
    reported = example.main(["--users", "2", "--days", "3", "--start", "2024-03-01", "--json", "--report-only"], db=embedded)
    assert seen == ["primary", ANALYTICS]
    assert reported["users"] == written["users"] and reported["created"] == 0

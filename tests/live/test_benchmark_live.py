"""The benchmark's sides on a real server (nx-27017, or ASTRO_DB_TEST_URI: the mongodb row).

Each side has a client of its own (raw PyMongo's with no listeners), every variant starts from
the seeded collection and does its work, and the benchmark's database is dropped afterwards.
No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pymongo
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import peers  # noqa: E402
from sides import Seed, open_sides  # noqa: E402
from suite import PAIRS, Sizes, check_commands, operations  # noqa: E402

SIZES = Sizes(seed=12, users=6, calls=3, many=4, hot=2)


def test_the_sides_share_one_seeded_database_on_clients_of_their_own(live_server):
    url = live_server.url("unused")
    with open_sides(url, Seed.build(SIZES.users, SIZES.seed)) as sides:
        name = sides.raw.name
        raw_client = sides.raw.client
        assert raw_client.options.event_listeners == []  # no astro_db monitor on the raw side
        clients = {id(raw_client), id(sides.default.mongo.client), id(sides.hooks_off.mongo.client),
                   id(peers.PeerUser._get_db().client)}
        assert len(clients) == 4
        assert sides.stores == [sides.raw]  # one server database: every side sees the same data
        for operation in operations(SIZES, sides).values():
            for variant in operation.variants:
                variant.setup()
                assert sides.raw["users"].count_documents({}) == SIZES.users, (operation.name, variant.label)
                assert sides.raw["planetaryInsights"].count_documents({}) == SIZES.seed, (operation.name, variant.label)
                for i in range(operation.calls):
                    variant.op(i)
                variant.check()
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    try:
        assert name not in client.list_database_names()
    finally:
        client.close()


@pytest.mark.parametrize("many", [4, 20])  # create_many: one bulkWrite up to 16 documents, two inserts above
def test_the_raw_side_sending_astro_dbs_commands_sends_what_astro_db_sends(live_server, many):
    sizes = Sizes(seed=12, users=6, calls=3, many=many, hot=2)
    with open_sides(live_server.url("unused"), Seed.build(sizes.users, sizes.seed)) as sides:
        assert sides.wire.client.options.event_listeners == []  # a plain client of its own
        assert sides.wire.client is not sides.raw.client and sides.wire.client.write_concern.document == {"w": "majority"}
        rows = check_commands(sizes, sides)
        assert [what for what, _, _ in rows] == [f"{key}, {side} / {same}" for key, side, same in PAIRS]
        assert [problems for _, _, problems in rows] == [[], [], [], []]
        assert [sent for _, sent, _ in rows] == ["bulkWrite x1", "bulkWrite x1" if many <= 16 else "insert x2",
                                                 "findAndModify x1, insert x1", "findAndModify x1"]
        assert sides.raw["users"].count_documents({}) == sizes.users  # the check leaves the seeded sizes
        assert sides.raw["planetaryInsights"].count_documents({}) == sizes.seed


def test_the_equivalence_check_warns_when_the_raw_side_sends_other_commands(live_server, monkeypatch):
    import wire

    sizes = Sizes(seed=12, users=6, calls=3, many=4, hot=2)
    monkeypatch.setattr(wire, "ONE_COMMAND_BATCH", 0)  # the raw side's create_many: two inserts, astro_db's one bulkWrite
    with open_sides(live_server.url("unused"), Seed.build(sizes.users, sizes.seed)) as sides:
        rows = {what.split(",")[0]: problems for what, _, problems in check_commands(sizes, sides)}
    assert rows["create_many"] == ["commands: astro_db sent bulkWrite x1; raw sent insert x2"]
    assert rows["create"] == []


def test_the_run_prints_the_check_and_the_same_commands_table(live_server):
    """``run.py --tiny`` on the session's server: every pair's check says "same commands", and the
    same-commands table has a row per pair (figures, never asserted)."""
    import os
    import subprocess

    run = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    env = dict(os.environ, ASTRO_DB_TEST_URI=live_server.url("unused"))
    done = subprocess.run([sys.executable, str(run), "--tiny", "--backend", "uri", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    checked = [line.strip() for line in lines if "same commands (" in line or "WARNING" in line]
    assert checked == [f"{key}, {side} / {same}: same commands ({sent})" for (key, side, same), sent in zip(
        PAIRS, ["bulkWrite x1", "insert x2", "findAndModify x1, insert x1", "findAndModify x1"], strict=True)]
    header = next(n for n, line in enumerate(lines) if line.startswith("operation") and "wall vs same commands" in line)
    assert [" ".join(line.split()[:3]) for line in lines[header + 1:header + 5]] == [
        "create x10 astro_db", "create_many 30 astro_db", "update x10 astro_db", "update x10 astro_db"]


@pytest.mark.benchmark
def test_the_growth_table_prints_a_row_per_collection_size():
    import subprocess

    growth = Path(__file__).resolve().parents[2] / "benchmarks" / "growth.py"
    done = subprocess.run([sys.executable, str(growth), "--sizes", "30,60", "--calls", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert rows == ["30", "60"]

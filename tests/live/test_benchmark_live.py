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
from suite import Sizes, operations  # noqa: E402

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


@pytest.mark.benchmark
def test_the_growth_table_prints_a_row_per_collection_size():
    import subprocess

    growth = Path(__file__).resolve().parents[2] / "benchmarks" / "growth.py"
    done = subprocess.run([sys.executable, str(growth), "--sizes", "30,60", "--calls", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert rows == ["30", "60"]

"""The four sides of the benchmark, each on a client of its own, and the data they share.

raw PyMongo     ``pymongo.MongoClient(url, tz_aware=True)``: no listeners, no astro_db code.
astro_db        ``Database(url)``: the default configuration (audit trail, change journal,
                monitoring listeners, all on).
hooks off       ``Database(url, audit=False, journal=False)``.
same commands   ``pymongo.MongoClient(url, tz_aware=True, w="majority")``: no listeners, no astro_db
                code; sends the commands astro_db sends (``wire``), with its write concern.
MongoEngine     ``mongoengine.connect`` under an alias of its own (``peers``).

On a server every side sees the same database. The embedded backend (mongomock-ng) gives each
client a store of its own, so each side's collections are seeded alike instead.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import peers
import pymongo
from bson import ObjectId
from workloads import stored_insight, stored_user

from astro_db import Database

__all__ = ["NEW_STATUS", "Seed", "Sides", "open_sides"]

NEW_STATUS = "suspended"  # users created by the benchmark; the seeded ones are "active"


@dataclass(frozen=True)
class Seed:
    """The documents every side's collections hold before each variant runs."""

    users: list[dict[str, Any]]
    insights: list[dict[str, Any]]
    owner: ObjectId  # userId of every seeded insight: what the find rows read
    newcomer: ObjectId  # userId of the insights create_many adds (deleted before each variant)

    @classmethod
    def build(cls, users: int, insights: int) -> Seed:
        owner = ObjectId()
        return cls([stored_user(n, "seed") for n in range(users)],
                   [stored_insight(owner, n) for n in range(insights)], owner, ObjectId())

    @property
    def insight_ids(self) -> list[ObjectId]:
        return [d["_id"] for d in self.insights]


@dataclass
class Sides:
    """The clients of one run; ``stores`` are raw handles on every distinct data set."""

    raw: Any  # a PyMongo Database
    default: Database
    hooks_off: Database
    stores: list[Any]  # PyMongo (or mongomock-ng) Databases to seed and reset, one per store
    seed: Seed
    wire: Any = None  # a PyMongo Database on a plain client of its own: raw PyMongo sending astro_db's commands
    url: str | None = None  # the database's URL (None: the embedded backend): the equivalence check's clients

    def reset(self) -> None:
        """Every store back to the seeded size: what a previous variant added is deleted."""
        for store in self.stores:
            store["users"].delete_many({"status": NEW_STATUS})
            store["planetaryInsights"].delete_many({"userId": self.seed.newcomer})

    def plant(self) -> None:
        """Insert the seed into every store (once, before any timing)."""
        for store in self.stores:
            store["users"].insert_many([dict(d) for d in self.seed.users], ordered=False)
            for start in range(0, len(self.seed.insights), 5_000):
                store["planetaryInsights"].insert_many([dict(d) for d in self.seed.insights[start:start + 5_000]],
                                                       ordered=False)


def _with_db(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{name}" + (f"?{query}" if sep else "")


@contextlib.contextmanager
def open_sides(server_url: str | None, seed: Seed) -> Iterator[Sides]:
    """Connect every side to a fresh database (``server_url`` None: the embedded backend), seed
    it, and drop it afterwards."""
    name = f"astro_bench_{uuid.uuid4().hex[:8]}"
    if server_url is None:
        import mongomock_ng

        raw_client: Any = mongomock_ng.MongoClient(tz_aware=True)
        wire_client: Any = mongomock_ng.MongoClient(tz_aware=True)
        url = f"mongomock://localhost/{name}"
        peers.connect(f"mongodb://localhost/{name}", mongo_client_class=mongomock_ng.MongoClient)
    else:
        url = _with_db(server_url, name)
        raw_client = pymongo.MongoClient(url, tz_aware=True)
        wire_client = pymongo.MongoClient(url, tz_aware=True, w="majority")  # astro_db's write concern
        peers.connect(url)
    default = Database(url, allow_plaintext_sensitive=True, connect_attempts=1).connect()  # no key: as before encryption
    hooks_off = Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=False, journal=False,
                         ensure_indexes=False).connect()
    raw, wire = raw_client[name], wire_client[name]
    stores = [raw] if server_url else [raw, default.mongo, hooks_off.mongo, peers.PeerUser._get_db(), wire]
    sides = Sides(raw, default, hooks_off, stores, seed, wire, url if server_url else None)
    try:
        sides.plant()
        yield sides
    finally:
        default.close()
        hooks_off.close()
        peers.disconnect()
        if server_url is not None:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                raw_client.drop_database(name)
        raw_client.close()
        wire_client.close()

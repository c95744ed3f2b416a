"""Read routing: which replica-set member a read goes to (``read_preference=`` on every read).

A read preference is a mode (``primary``, ``primaryPreferred``, ``secondary``,
``secondaryPreferred``, ``nearest``), optional tag sets (``[{"dc": "east"}, {}]``: the first set
that matches a member wins, ``{}`` matches any) and an optional bound on how stale a secondary
may be (``max_staleness_s``, at least 90, MongoDB's minimum). ``DatabaseConfig`` gives the
default; each read may name another, as a mode string, a dict or a ``ReadPreference``.

The routed collection is ``collection.with_options(read_preference=...)``, built once per
collection and preference (PyMongo then sends ``$readPreference`` to a mongos or picks a member
of a replica set; to a standalone server it sends nothing, since there is nowhere else to go).
Reads inside a transaction always go to the primary: asking otherwise is a ``TransactionError``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo import read_preferences as rp

from ..config import TopologyConfig
from ..errors import QueryError, TransactionError

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeTransaction
    from .gateway import Collection

__all__ = ["ReadPreference", "ReadRouter", "MODES", "ANALYTICS"]

MODES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
#: What reporting and analytics reads should use: a secondary when there is one, so long
#: aggregations never compete with the application's writes on the primary.
ANALYTICS = "secondaryPreferred"
MIN_STALENESS_S = 90
_CLASSES = {
    "primary": rp.Primary,
    "primaryPreferred": rp.PrimaryPreferred,
    "secondary": rp.Secondary,
    "secondaryPreferred": rp.SecondaryPreferred,
    "nearest": rp.Nearest,
}
_DICT_KEYS = {"mode", "tag_sets", "tags", "max_staleness_s", "maxStalenessSeconds"}


@dataclass(frozen=True)
class ReadPreference:
    """Where a read may go: ``ReadPreference("secondary", tag_sets=({"dc": "east"},), max_staleness_s=120)``."""

    mode: str = "primary"
    tag_sets: tuple[Mapping[str, str], ...] = ()
    max_staleness_s: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise QueryError(f"read_preference mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        tags = self.tag_sets
        if isinstance(tags, Mapping):
            tags = (tags,)
        if not isinstance(tags, (tuple, list)) or not all(
            isinstance(t, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in t.items()) for t in tags
        ):
            raise QueryError(f"read_preference tag_sets must be a list of {{name: value}} dicts of strings, got {self.tag_sets!r}")
        object.__setattr__(self, "tag_sets", tuple(dict(t) for t in tags))
        staleness = self.max_staleness_s
        if staleness is not None and (isinstance(staleness, bool) or not isinstance(staleness, int) or staleness < MIN_STALENESS_S):
            raise QueryError(f"read_preference max_staleness_s must be a whole number of seconds >= {MIN_STALENESS_S} "
                             f"(MongoDB's minimum), got {staleness!r}")
        if self.mode == "primary" and (self.tag_sets or staleness is not None):
            raise QueryError("read_preference 'primary' takes no tag_sets or max_staleness_s: the primary is one member")

    @classmethod
    def of(cls, value: Any) -> ReadPreference:
        """A ``ReadPreference`` from a mode string, a dict (``mode``, ``tag_sets``, ``max_staleness_s``) or itself."""
        if isinstance(value, ReadPreference):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = set(value) - _DICT_KEYS
            if unknown or "mode" not in value:
                raise QueryError(f"a read_preference dict takes 'mode' (required), 'tag_sets' and 'max_staleness_s'; "
                                 f"got keys {sorted(value)}")
            tags = value.get("tag_sets", value.get("tags", ()))
            return cls(value["mode"], tags, value.get("max_staleness_s", value.get("maxStalenessSeconds")))
        raise QueryError(f"read_preference must be a mode name ({', '.join(MODES)}), a dict or a ReadPreference, "
                         f"got {type(value).__name__}")

    @classmethod
    def from_config(cls, config: TopologyConfig) -> ReadPreference:
        """The configured default (``read_preference``, ``read_preference_tags``, ``max_staleness_s``)."""
        try:
            return cls(config.read_preference, tuple(config.read_preference_tags), config.max_staleness_s)
        except QueryError as exc:  # DatabaseConfig validates these; this is a second line
            from ..errors import ConfigError

            raise ConfigError(str(exc), key="read_preference") from exc

    @classmethod
    def from_pymongo(cls, mode: Any) -> ReadPreference:
        """The ``ReadPreference`` of a PyMongo read preference (what a collection reads with)."""
        name = getattr(mode, "mongos_mode", None) or "primary"
        tags = tuple(t for t in (getattr(mode, "tag_sets", None) or ()) if t) if name != "primary" else ()
        staleness = getattr(mode, "max_staleness", -1)
        return cls(name, tags, None if name == "primary" or staleness in (-1, None) else int(staleness))

    @property
    def key(self) -> str:
        """A stable text form: the query cache keys reads by it (``secondary[dc=east;]~120``)."""
        text = self.mode
        if self.tag_sets:
            text += "[" + ";".join(",".join(f"{k}={v}" for k, v in sorted(t.items())) for t in self.tag_sets) + "]"
        if self.max_staleness_s is not None:
            text += f"~{self.max_staleness_s}"
        return text

    def to_pymongo(self) -> rp._ServerMode:
        """The PyMongo read preference object."""
        if self.mode == "primary":
            return rp.Primary()
        tags = [dict(t) for t in self.tag_sets] or None
        staleness = -1 if self.max_staleness_s is None else self.max_staleness_s
        mode: rp._ServerMode = _CLASSES[self.mode](tag_sets=tags, max_staleness=staleness)
        return mode

    def __str__(self) -> str:
        return self.key


class ReadRouter:
    """Routes the reads of one Database: parses per-call preferences and caches the derived
    collections (``with_options`` builds a new Collection, which costs microseconds per read)."""

    def __init__(self, config: TopologyConfig) -> None:
        self.default = ReadPreference.from_config(config)
        self._lock = threading.Lock()
        self._built: dict[tuple[int, str, str], tuple[Collection, Collection]] = {}
        self._base: dict[int, tuple[Collection, ReadPreference, str]] = {}  # id -> (collection, its preference, key)

    def route(self, collection: Collection, read_preference: Any, transaction: MaybeTransaction = None,
              ) -> tuple[Collection, str]:
        """``(collection to read from, the preference's cache key)`` for one read.

        ``None`` means the client's default (``DatabaseConfig.read_preference``, or the URL's).
        Inside a transaction only ``primary`` is accepted: its session reads from the primary."""
        if read_preference is None:  # nearly every read: the collection as it is, and its preference's key
            hit = self._base.get(id(collection))
            if hit is not None and hit[0] is collection:
                return collection, hit[2]
            return collection, self._default_of(collection).key
        pref = ReadPreference.of(read_preference)
        if transaction is not None:
            if pref.mode != "primary":
                raise TransactionError(
                    f"reads inside a transaction go to the primary; read_preference={pref.key!r} is not allowed "
                    f"in {transaction!r} (drop read_preference=, or read outside the transaction)")
            return collection, pref.key
        if pref == self._default_of(collection):
            return collection, pref.key
        return self._derived(collection, pref), pref.key

    def _default_of(self, collection: Collection) -> ReadPreference:
        """What ``collection`` reads with already (remembered per collection object)."""
        hit = self._base.get(id(collection))
        if hit is not None and hit[0] is collection:
            return hit[1]
        pref = ReadPreference.from_pymongo(getattr(collection, "read_preference", None))  # a test proxy may lack it
        with self._lock:
            if len(self._base) > 256:
                self._base.clear()
            self._base[id(collection)] = (collection, pref, pref.key)
        return pref

    def _derived(self, collection: Collection, pref: ReadPreference) -> Collection:
        # Keyed by the base collection object too, so a reconnect (new client) never reuses an old one.
        key = (id(collection), collection.name, pref.key)
        hit = self._built.get(key)
        if hit is not None and hit[0] is collection:
            return hit[1]
        derived = collection.with_options(read_preference=pref.to_pymongo())
        with self._lock:
            if len(self._built) > 256:  # a leak guard: preferences are few, reconnects rare
                self._built.clear()
            self._built[key] = (collection, derived)
        return derived

"""Topology: what kind of deployment a Database talks to, for ``health()`` and ``metrics()``.

Read from the driver's topology description, which its heartbeats (``hello`` every
``heartbeatFrequencyMS``, 10 s by default) keep current, so it costs no round trip:

- ``type``: ``embedded``, ``standalone``, ``replica_set``, ``sharded`` (mongos routers, which
  answer ``hello`` with ``msg: "isdbgrid"``), ``load_balanced`` or ``unknown`` (not connected,
  or no server answered yet);
- for a replica set: its name, the primary, the secondaries (and arbiters / other members) with
  their round-trip time and replication lag;
- for a sharded cluster: the mongos routers the client uses.

Lag is the server-selection spec's staleness without its heartbeat term: how far a secondary's
last write trails the primary's, as of their last heartbeats (with no primary, how far it trails
the most recent secondary). Servers that do not report ``lastWrite`` (before MongoDB 3.4) show
``None``. ``replSetGetStatus`` would give optimes too, but needs the clusterMonitor role and a
round trip; the heartbeats are enough to decide whether a secondary is fit to read from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..ops.runtime import Runtime

__all__ = ["describe_topology"]

_TYPES = {
    "Single": None,  # decided by the one server's type
    "ReplicaSetWithPrimary": "replica_set",
    "ReplicaSetNoPrimary": "replica_set",
    "Sharded": "sharded",
    "LoadBalanced": "load_balanced",
    "Unknown": "unknown",
}
_SERVER_TYPES = {
    "Standalone": "standalone",
    "Mongos": "sharded",
    "RSPrimary": "replica_set",
    "RSSecondary": "replica_set",
    "RSArbiter": "replica_set",
    "RSOther": "replica_set",
    "RSGhost": "replica_set",
    "LoadBalancer": "load_balanced",
    "Unknown": "unknown",
}


def describe_topology(rt: Runtime) -> dict[str, Any]:
    """The deployment of a Database's runtime (``db.executor.runtime``), as a JSON-ready dict; never raises."""
    if not rt.capabilities.topology:
        return {"type": "embedded", "note": "in-process mongomock-ng backend: one node, no replication"}
    client = rt.connection._client
    if client is None:
        return {"type": "unknown", "note": "not connected"}
    try:
        return describe(client.topology_description)
    except Exception as exc:  # a report, not an operation: say what went wrong instead of raising
        return {"type": "unknown", "note": f"topology unavailable: {type(exc).__name__}"}


def describe(td: Any) -> dict[str, Any]:
    """Describe a PyMongo ``TopologyDescription``."""
    servers = list(td.server_descriptions().values())
    kind = _TYPES.get(td.topology_type_name, "unknown")
    if kind is None:  # Single: a direct connection (or a single seed) to one server
        kind = _SERVER_TYPES.get(servers[0].server_type_name, "unknown") if servers else "unknown"
    out: dict[str, Any] = {"type": kind, "topology_type": td.topology_type_name}
    if kind == "replica_set":
        out.update(_replica_set(td, servers))
    elif kind == "sharded":
        out["mongos"] = [_member(s) for s in servers if s.server_type_name == "Mongos"]
    elif kind == "standalone":
        out["server"] = _member(servers[0])
    return out


def _replica_set(td: Any, servers: list[Any]) -> dict[str, Any]:
    primary = next((s for s in servers if s.server_type_name == "RSPrimary"), None)
    secondaries = [s for s in servers if s.server_type_name == "RSSecondary"]
    newest = max((s for s in secondaries if s.last_write_date is not None), key=lambda s: s.last_write_date, default=None)
    name = td.replica_set_name or next((s.replica_set_name for s in servers if s.replica_set_name), None)
    return {
        "replica_set": name,
        "primary": _address(primary.address) if primary else None,
        "has_primary": primary is not None,
        "secondaries": [{**_member(s), "lag_s": _lag(s, primary, newest)} for s in secondaries],
        "other_members": [
            {**_member(s), "state": s.server_type_name}
            for s in servers if s.server_type_name not in ("RSPrimary", "RSSecondary")
        ],
    }


def _lag(secondary: Any, primary: Any, newest: Any) -> float | None:
    """Seconds the secondary's last write trails the primary's (spec staleness minus heartbeat)."""
    if secondary.last_write_date is None:
        return None
    if primary is not None and primary.last_write_date is not None:
        lag: float = ((secondary.last_update_time - secondary.last_write_date)
               - (primary.last_update_time - primary.last_write_date))
    elif newest is not None:
        lag = newest.last_write_date - secondary.last_write_date
    else:
        return None
    return round(max(0.0, lag), 3)


def _member(server: Any) -> dict[str, Any]:
    rtt = server.round_trip_time
    return {
        "address": _address(server.address),
        "rtt_ms": None if rtt is None else round(rtt * 1000.0, 3),
        "tags": dict(server.tags or {}),
    }


def _address(address: Any) -> str:
    host, port = address
    return f"{host}:{port}"

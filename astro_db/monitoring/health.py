"""``db.health()``: ok / degraded / down, with the reasons and the figures behind them.

The verdict comes from a ping bounded by ``health_timeout_ms`` (a dead server answers
"down" in about that time, never an exception), the circuit breaker, pool saturation (from
PyMongo's pool events with ``command_monitoring=True``, else the run step's calls in flight), and the
error and slow-operation rates of the monitor's recent window, each against a threshold of
the config, and a replica set without a primary. The deployment (``topology``: standalone,
replica set with members and lag, mongos) is reported alongside. The figures used are
returned with it, so an operator sees why.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import TYPE_CHECKING, Any

import pymongo

from ..backends.capabilities import capabilities
from ..driver import gateway
from ..errors import translate
from .topology import describe_topology

if TYPE_CHECKING:  # pragma: no cover
    from ..config import DatabaseConfig
    from ..ops import Executor
    from ..ops.runtime import Runtime

__all__ = ["check_health", "STATUS_EXIT_CODES"]

log = logging.getLogger(__name__)

#: Exit codes of ``astro-db health`` per status.
STATUS_EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}


def check_health(ex: Executor, *, timeout_s: float | None = None) -> dict[str, Any]:
    """The health report of an executor's service (``db.health()``); never raises for an unreachable server (it says "down").

    A Database that is not connected yet is connected first (within the same time bound).
    """
    rt = ex.runtime
    cfg = rt.config.health  # the thresholds; the rest of the config is the connection's
    bound = cfg.health_timeout_ms / 1000.0 if timeout_s is None else float(timeout_s)
    latency_ms, ping_error = _ping(rt.connection, bound)
    breaker = rt.breaker.state
    pool = rt.monitor.pool_figures()
    window = rt.monitor.window()
    reasons: list[str] = []
    down = False

    if ping_error is not None:
        down = True
        reasons.append(f"ping failed: {ping_error}")
    if breaker == "open":
        down = down or ping_error is not None
        reasons.append("circuit breaker open: operations are failing fast after repeated connection failures")
    elif breaker == "half-open":
        reasons.append("circuit breaker half-open: probing the server after connection failures")
    if latency_ms is not None and latency_ms > cfg.health_latency_ms:
        reasons.append(f"ping took {latency_ms:.1f} ms (threshold {cfg.health_latency_ms:g} ms)")
    if rt.capabilities.network and pool["saturation"] >= cfg.health_pool_saturation:  # a server's pool, either source
        what = "checked out" if pool["source"] == "pool_events" else "checked out (driver calls in flight)"
        reasons.append(
            f"connection pool {pool['checked_out']}/{pool['max_size']} {what} "
            f"(saturation {pool['saturation']:.0%}, threshold {cfg.health_pool_saturation:.0%})"
        )
    if window["operations"] >= cfg.health_min_operations:
        if window["error_rate"] >= cfg.health_error_rate:
            reasons.append(
                f"error rate {window['error_rate']:.1%} over the last {window['seconds']} s "
                f"(threshold {cfg.health_error_rate:.1%})"
            )
        if window["slow_rate"] >= cfg.health_slow_rate:
            reasons.append(
                f"slow-operation rate {window['slow_rate']:.1%} over the last {window['seconds']} s "
                f"(threshold {cfg.health_slow_rate:.1%}, slow means >= {cfg.slow_query_ms:g} ms)"
            )

    bus = _cache_bus(rt)
    if bus is not None and not bus["connected"]:
        reasons.append(f"query cache bus ({bus['kind']}) not connected: caching is off, reads go to the server "
                       f"({bus['reason']})")
    topology = describe_topology(rt)
    if topology["type"] == "replica_set" and not topology["has_primary"] and ping_error is None:
        reasons.append(f"replica set {topology['replica_set']} has no primary: writes fail until one is elected")
    status = "down" if down else ("degraded" if reasons else "ok")
    if status != "ok":
        log.info("health %s: %s", status, "; ".join(reasons))
    return {
        "status": status,
        "latency_ms": latency_ms,
        "reasons": reasons,
        "backend": capabilities(rt.config).name,
        "url": rt.config.masked_url,
        "breaker": breaker,
        "topology": topology,
        "pool": pool,
        "window": window,
        "cache_bus": bus,
        "heartbeats": rt.monitor.heartbeat_figures() if rt.monitor.driver_events else None,
        "thresholds": {
            "timeout_ms": round(bound * 1000.0, 3),
            "latency_ms": cfg.health_latency_ms,
            "pool_saturation": cfg.health_pool_saturation,
            "error_rate": cfg.health_error_rate,
            "slow_rate": cfg.health_slow_rate,
            "slow_query_ms": cfg.slow_query_ms,
            "min_operations": cfg.health_min_operations,
        },
        "checked_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
    }


def _cache_bus(rt: Runtime) -> dict[str, Any] | None:
    """The query cache bus's figures, or ``None`` when the cache is off."""
    cache = getattr(rt, "cache", None)
    if cache is None or not getattr(cache, "enabled", False) or not hasattr(cache, "bus_stats"):
        return None
    figures: dict[str, Any] = cache.bus_stats()
    return figures


def _ping(connection: Any, bound_s: float) -> tuple[float | None, str | None]:
    """``(latency_ms, None)`` or ``(None, reason)``; the whole attempt is bounded by ``bound_s``."""
    try:
        if not connection.connected:
            _probe(connection.config, bound_s)  # one bounded try, not connect()'s retries
        with pymongo.timeout(bound_s):
            if not connection.connected:
                connection.connect()
            started = time.perf_counter()
            gateway.ping(connection.client)
            return round((time.perf_counter() - started) * 1000.0, 3), None
    except Exception as exc:  # a dead server is an answer here, not an error
        return None, str(translate(exc, operation="ping")).split("\n")[0][:300]


def _probe(config: DatabaseConfig, bound_s: float) -> None:
    """Ping the configured server once with a short-lived client, within ``bound_s``."""
    if not capabilities(config).network:
        return
    bound_ms = max(1, int(bound_s * 1000))
    options = config.client_options()
    selection_ms = min(bound_ms, config.timeouts.server_selection_timeout_ms)
    options.update(serverSelectionTimeoutMS=selection_ms, connectTimeoutMS=bound_ms, minPoolSize=0)
    client = pymongo.MongoClient(config.client_url, **options)
    try:
        with pymongo.timeout(selection_ms / 1000.0):  # a client-side timeout overrides server selection's
            gateway.ping(client)
    finally:
        gateway.close(client)

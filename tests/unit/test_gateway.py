"""One gateway owns the driver (docs/ARCHITECTURE.md, "One gateway"): a workload through the
public API on the embedded backend makes every driver call from ``astro_db.driver.gateway``
(the embedded backend's adapter aside)."""

from __future__ import annotations

import uuid

from driver_callers import driver_callers, workload

from astro_db import Database

from .security_data import KEY_A

#: The only modules allowed to call the driver: the gateway, and the embedded backend's adapter.
ALLOWED = {"astro_db.driver.gateway", "astro_db.backends.embedded"}


def test_every_driver_call_of_the_public_api_is_made_by_the_gateway(tmp_path):
    db = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}", encryption_key=KEY_A).connect()
    target = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}").connect()
    with driver_callers() as callers:
        workload(db, tmp_path, restore_target=target, cli_url="mongomock://localhost/gwcli")
        db.disconnect()
    outside = callers.outside(ALLOWED)
    assert outside == {}, f"{len(outside)} modules call the driver: " + "\n".join(
        f"{module}: {sorted(calls)}" for module, calls in outside.items())
    assert "astro_db.driver.gateway" in callers.modules  # the wrapping saw the calls

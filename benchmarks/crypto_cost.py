"""The client CPU cost of field encryption: MongoDB's field level encryption against the old envelopes.

    python benchmarks/crypto_cost.py [--charts 20] [--rounds 7] [--no-nx]

One run, side by side: a create, a find (lean: stored documents opened, not hydrated) and a
hydrated find of ``BirthChart`` documents, each with

- ``none``: no key (the sensitive value stored in clear: the floor);
- ``envelope``: the previous release's ``enc:v2`` AES-256-GCM string envelopes (``FieldCrypto``
  with no key vault);
- ``fle``: client-side field level encryption (libmongocrypt, ``AEAD_AES_256_CBC_HMAC_SHA_512-Random``,
  the value bound to its document, under the owner's data key from the key vault).

``birthData.location.name`` is sealed randomly in every mode (as it is once the blind index
replaces ``enc:e2`` equality), so the modes compare the same work. Figures are client CPU per
call (``time.process_time()``, which leaves out time waiting on the server), the median of
``--rounds`` rounds of ``--charts`` calls each; a find reads ``--charts`` documents. Runs on
the embedded backend and on a private nx-27017 server (tests/live/nxserver.py). Not part of the
test suite: the machine's noise makes wall-clock assertions meaningless; this prints figures.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from astro_db import Database  # noqa: E402
from astro_db.security.crypto import FieldCrypto, Keyring, new_key  # noqa: E402

KEY = new_key()
MODES = ("none", "envelope", "fle")


def chart(user_id: Any, n: int) -> dict[str, Any]:
    return {"userId": str(user_id), "birthData": {"date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
                                                  "location": {"name": f"Stratford-upon-Avon {n}", "coordinates": [-1.7, 52.19]}}}


def open_db(url: str, mode: str) -> Database:
    db = Database(url, encryption_key=None if mode == "none" else KEY, allow_plaintext_sensitive=mode == "none",
                  key_vault_namespace=f"bench_{uuid.uuid4().hex[:8]}.__keyVault").connect()
    rt = db.executor.runtime
    if mode == "envelope":
        rt.crypto = FieldCrypto(Keyring.from_config(db.config), rt.registry, allow_plaintext=False)
    crypto = rt.crypto
    crypto.fields["BirthChart"] = tuple(replace(f, deterministic=False) for f in crypto.fields["BirthChart"])  # random
    return db


def per_call(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    figures = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(calls):
            fn()
        figures.append((time.process_time() - began) / calls)
    return statistics.median(figures)


def measure_mode(db: Database, charts: int, rounds: int) -> dict[str, float]:
    user = db.create("User", {"email": f"bench{uuid.uuid4().hex[:6]}@example.com", "name": "Bench"})
    counter = iter(range(10**9))
    db.create("BirthChart", chart(user.id, -1))  # the data key exists before timing (created once per user)
    create = per_call(lambda: db.create("BirthChart", chart(user.id, next(counter))), charts, rounds)
    ids = [c.id for c in db.find("BirthChart", {"userId": user.id}, limit=charts)]
    filt = {"id": {"$in": ids}}
    lean = per_call(lambda: db.find("BirthChart", filt, lean=True), charts, rounds)
    hydrated = per_call(lambda: db.find("BirthChart", filt), charts, rounds)
    assert db.find("BirthChart", filt)[0].birth_data.location.name.startswith("Stratford")
    return {"create": create, "find": lean, "hydrated find": hydrated}


def measure(url_for: Callable[[str], str], charts: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        db = open_db(url_for(mode), mode)
        try:
            out[mode] = measure_mode(db, charts, rounds)
        finally:
            db.disconnect()
    return out


def report(backend: str, figures: dict[str, dict[str, float]], charts: int) -> None:
    print(f"\n{backend}: client CPU per call, ms (median of rounds; a find reads {charts} documents)")
    print(f"{'call':<15}" + "".join(f"{m:>12}" for m in MODES) + f"{'fle/envelope':>14}")
    for call in ("create", "find", "hydrated find"):
        row = [figures[m][call] * 1000 for m in MODES]
        print(f"{call:<15}" + "".join(f"{v:>12.3f}" for v in row) + f"{row[2] / row[1]:>13.2f}x")


def per_value(rounds: int, n: int = 500) -> None:
    """The engines alone, on the embedded backend's key vault: one seal and one open of a
    30-character place name (the data key cached, as in steady state)."""
    db = open_db("mongomock://localhost/bench_values", "fle")
    try:
        crypto = db.executor.runtime.crypto
        vault, keyring = crypto.vault, crypto.keyring
        assert vault is not None and keyring is not None
        place, alt = "Stratford-upon-Avon, England 01", "user:bench"
        sealed, envelope = vault.seal(place, "birthCharts/x/birthData.location.name", alt), \
            keyring.seal(place, "birthCharts", "birthData.location.name", False)
        rows = {
            "seal": (per_call(lambda: keyring.seal(place, "birthCharts", "birthData.location.name", False), n, rounds),
                     per_call(lambda: vault.seal(place, "birthCharts/x/birthData.location.name", alt), n, rounds)),
            "open": (per_call(lambda: keyring.open(envelope, "birthCharts", "birthData.location.name"), n, rounds),
                     per_call(lambda: vault.open(sealed, "birthCharts/x/birthData.location.name"), n, rounds)),
        }
    finally:
        db.disconnect()
    print(f"\none value: client CPU per call, µs (median of {rounds} rounds of {n})")
    print(f"{'call':<15}{'envelope':>12}{'fle':>12}{'fle/envelope':>14}")
    for call, (old, new) in rows.items():
        print(f"{call:<15}{old * 1e6:>12.1f}{new * 1e6:>12.1f}{new / old:>13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-nx", action="store_true", help="embedded backend only")
    args = parser.parse_args()
    logging.getLogger("astro_db").setLevel(logging.ERROR)  # no slow-query lines between the tables
    per_value(args.rounds)
    report("embedded", measure(lambda m: f"mongomock://localhost/bench_{m}", args.charts, args.rounds), args.charts)
    if args.no_nx:
        return
    from live.nxserver import NxServer

    server = NxServer(tempfile.mkdtemp(prefix="crypto_cost_")).start()
    try:
        report("nx-27017", measure(lambda m: server.url(f"bench_{m}_{uuid.uuid4().hex[:6]}"), args.charts, args.rounds),
               args.charts)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

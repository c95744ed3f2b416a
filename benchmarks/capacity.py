"""The capacity plan's figures, measured: ``python benchmarks/capacity.py [--users N] [--json]``.

Creates realistic documents of the four models through astro_db itself (embedded backend: the
codec, defaults, timestamps and ``__v`` the service writes), measures their BSON sizes, and
derives the tables of docs/scaling.md from the workload model below: documents and bytes per
collection, index sizes, peak read and write rates, the working set, and the shard count.
Every assumption is a named constant here, so the document's arithmetic can be re-run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
from typing import Any

import bson

from astro_db import Database

# --- workload model (docs/scaling.md "Assumptions") ------------------------------------------
DAU_SHARE = 0.30  # share of registered users active on a day
SESSIONS_PER_DAU = 3  # app opens per active user per day
READS_PER_SESSION = 4  # user by id, today's insight, birth chart, timing recommendations
WRITES_PER_SESSION = 1  # lastActive update
PEAK_HOUR_SHARE = 0.15  # share of a day's sessions in the busiest hour
INSIGHTS_PER_USER_PER_DAY = 1  # every registered user gets a daily insight (upper bound)
INSIGHT_TTL_DAYS = 90  # expiresAt = date + 90 days (examples/daily_insights.py)
INSIGHT_BATCH_HOURS = 2  # the nightly batch that writes them
TIMING_ACTIVITIES = 5  # timing recommendations kept per user (one per activity)
TIMING_REFRESH_DAYS = 7  # each refreshed weekly (an update)
CHARTS_PER_USER = 1
INDEX_ENTRY_OVERHEAD = 12  # bytes per index entry beyond the key: RecordId (~8) + page/cell overhead (~4)
TEXT_TERM_BYTES = 8 + 8  # a text index key: average term (~8 bytes) + its weight (a double)
SHARD_RAM_GB = 64  # one shard member's RAM
WT_CACHE_SHARE = 0.5  # WiredTiger cache: 50% of (RAM - 1 GB)
WORKING_SET_FILL = 0.8  # keep the working set within 80% of the cache
GB = 1e9

_STOP = {"the", "and", "for", "you", "your", "with", "that", "this", "are", "from", "today", "into", "what", "one"}


def sample_documents(db: Database) -> dict[str, dict[str, Any]]:
    """One realistic stored document per model, as astro_db writes it."""
    now = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    user = db.create("User", {"email": "alexandra.martinez1987@example.com", "name": "Alexandra Martinez",
                              "lastActive": now})
    bodies = ["Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto",
              "North Node", "Ascendant"]
    signs = ["Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo", "Libra", "Scorpio", "Sagittarius",
             "Capricorn", "Aquarius", "Pisces"]
    db.create("BirthChart", {
        "userId": user.id,
        "birthData": {"date": dt.datetime(1987, 6, 14, 8, 30, tzinfo=dt.timezone.utc), "timezone": "America/New_York",
                      "location": {"name": "Brooklyn, New York, USA",
                                   "coordinates": {"type": "Point", "coordinates": [-73.9442, 40.6782]}}},
        "positions": [{"body": b, "sign": signs[(i * 5) % 12], "degree": round(3.7 + i * 2.31, 2), "house": i % 12 + 1,
                       "retrograde": b in ("Saturn", "Pluto")} for i, b in enumerate(bodies)],
        "houseSystem": "placidus",
    })
    db.create("PlanetaryInsight", {
        "userId": user.id, "date": now, "energyLevel": 72,
        "recommendations": ["Start the conversation you have been putting off",
                            "Schedule focused work before noon while Mercury favours clarity",
                            "Take a long walk in the evening to settle restless energy"],
        "summary": ("A high-energy day: the Moon in Leo trines your natal Sun, lending confidence and warmth. "
                    "Good for pitching ideas and reconnecting with friends; avoid overcommitting after 6 pm."),
        "expiresAt": now + dt.timedelta(days=INSIGHT_TTL_DAYS),
    })
    db.create("TimingRecommendation", {
        "userId": user.id, "activity": "job interview",
        "windows": [{"start": now + dt.timedelta(hours=h), "end": now + dt.timedelta(hours=h + 2), "score": s}
                    for h, s in ((9, 88), (30, 74), (57, 66))],
        "risks": [{"level": "medium", "description": "Mercury square Saturn may slow replies; follow up in writing"},
                  {"level": "low", "description": "Evening Moon void of course: avoid signing late in the day"}],
    })
    return {info.name: db.find_one(info.name, {}, lean=True) for info in db.executor.runtime.registry}


def text_terms(doc: dict[str, Any]) -> int:
    """Distinct indexed terms of an insight's text index (summary + recommendations), approximated
    as distinct lower-cased words of 3+ letters less common stop words (MongoDB also stems)."""
    text = " ".join([doc.get("summary", "")] + list(doc.get("recommendations", [])))
    return len({w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP})


def key_bytes(doc: dict[str, Any], fields: list[str]) -> int:
    """Bytes of an index key: the BSON size of the indexed values (field names are not stored)."""
    values = {}
    for n, name in enumerate(fields):
        value: Any = doc
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else (value[0].get(part) if isinstance(value, list) and value else None)
        values[str(n)] = value
    return len(bson.encode(values)) - 5 - sum(2 + len(k) for k in values)  # values only: no doc header or names


def index_entry_bytes(docs: dict[str, dict[str, Any]], registry: Any) -> dict[str, dict[str, float]]:
    """Estimated bytes per document for each declared index, plus _id."""
    from astro_db.indexes import declared_indexes

    out: dict[str, dict[str, float]] = {}
    for info in registry:
        doc = docs[info.name]
        sizes = {"_id_": 12 + INDEX_ENTRY_OVERHEAD}
        for spec in declared_indexes(info):
            fields = [name for name, _ in spec["key"]]
            if any(kind == "text" for _, kind in spec["key"]):
                sizes[spec["name"]] = text_terms(doc) * (TEXT_TERM_BYTES + INDEX_ENTRY_OVERHEAD)
            elif any(kind == "2dsphere" for _, kind in spec["key"]):
                sizes[spec["name"]] = 8 + INDEX_ENTRY_OVERHEAD  # one S2 cell id (a 64-bit number) per point
            else:
                multi = max((len(doc.get(f.split(".")[0]) or []) for f in fields if isinstance(doc.get(f.split(".")[0]), list)), default=1)
                sizes[spec["name"]] = multi * (key_bytes(doc, fields) + INDEX_ENTRY_OVERHEAD)
        out[info.name] = sizes
    return out


def plan(users: int, docs: dict[str, dict[str, Any]], index_bytes: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The derived capacity figures for ``users`` registered users."""
    size = {name: len(bson.encode(doc)) for name, doc in docs.items()}
    per_user = {"User": 1, "BirthChart": CHARTS_PER_USER, "PlanetaryInsight": INSIGHTS_PER_USER_PER_DAY * INSIGHT_TTL_DAYS,
                "TimingRecommendation": TIMING_ACTIVITIES}
    per_user_day = {"User": 0, "BirthChart": 0, "PlanetaryInsight": INSIGHTS_PER_USER_PER_DAY, "TimingRecommendation": 0}
    collections = {}
    for name in size:
        count = users * per_user[name]
        idx = {k: v * count for k, v in index_bytes[name].items()}
        collections[name] = {"doc_bytes": size[name], "docs_per_user": per_user[name], "new_docs_per_user_day": per_user_day[name],
                             "new_bytes_per_user_day": per_user_day[name] * size[name], "documents": count,
                             "data_gb": count * size[name] / GB, "index_gb": {k: v / GB for k, v in idx.items()},
                             "index_total_gb": sum(idx.values()) / GB}
    sessions = users * DAU_SHARE * SESSIONS_PER_DAU
    peak = sessions * PEAK_HOUR_SHARE / 3600
    rates = {"sessions_per_day": sessions, "peak_reads_s": peak * READS_PER_SESSION, "peak_writes_s": peak * WRITES_PER_SESSION,
             "batch_inserts_s": users * INSIGHTS_PER_USER_PER_DAY / (INSIGHT_BATCH_HOURS * 3600),
             "timing_updates_s_avg": users * TIMING_ACTIVITIES / TIMING_REFRESH_DAYS / 86400}
    ins = collections["PlanetaryInsight"]
    dau = users * DAU_SHARE
    # Hot index pages: every index of the small collections; the insight indexes keyed by user
    # (a session reads a random user's entries); of the right-growing ones (_id, date, expiresAt)
    # only the newest day. The text and energyLevel indexes serve no request path.
    idx = ins["index_gb"]
    hot_indexes = (sum(collections[m]["index_total_gb"] for m in ("User", "BirthChart", "TimingRecommendation"))
                   + idx["userId_1"] + idx["userId_1_date_1"]
                   + (idx["_id_"] + idx["date_1"] + idx["expiresAt_1"]) / INSIGHT_TTL_DAYS)
    working = {
        "hot_indexes_gb": hot_indexes,
        "users_gb": collections["User"]["data_gb"],
        "todays_insights_gb": users * size["PlanetaryInsight"] / GB,
        "active_charts_timings_gb": dau * (size["BirthChart"] + TIMING_ACTIVITIES * size["TimingRecommendation"]) / GB,
    }
    working["total_gb"] = sum(working.values())
    cache_gb = WT_CACHE_SHARE * (SHARD_RAM_GB - 1) * WORKING_SET_FILL
    return {"users": users, "collections": collections, "rates": rates, "working_set": working,
            "usable_cache_gb_per_shard": cache_gb, "shards_for_working_set": max(1, math.ceil(working["total_gb"] / cache_gb)),
            "data_total_gb": sum(c["data_gb"] for c in collections.values()),
            "index_total_gb": sum(c["index_total_gb"] for c in collections.values())}


def render(p: dict[str, Any]) -> str:
    lines = [f"capacity for {p['users']:,} users", "",
             f"{'model':<22}{'doc B':>7}{'docs/user':>10}{'new B/user/day':>15}{'documents':>15}{'data GB':>9}{'index GB':>9}"]
    for name, c in p["collections"].items():
        lines.append(f"{name:<22}{c['doc_bytes']:>7}{c['docs_per_user']:>10}{c['new_bytes_per_user_day']:>15}"
                     f"{c['documents']:>15,}{c['data_gb']:>9.2f}{c['index_total_gb']:>9.2f}")
    lines.append(f"{'total':<22}{'':>7}{'':>10}{'':>15}{'':>15}{p['data_total_gb']:>9.2f}{p['index_total_gb']:>9.2f}")
    lines += ["", "index GB per index:"]
    for name, c in p["collections"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in c["index_gb"].items()))
    r = p["rates"]
    lines += ["", f"sessions/day {r['sessions_per_day']:,.0f}; peak reads/s {r['peak_reads_s']:,.0f}; peak writes/s "
              f"{r['peak_writes_s']:,.0f}; nightly insight inserts/s {r['batch_inserts_s']:,.0f}; "
              f"timing updates/s (avg) {r['timing_updates_s_avg']:,.1f}"]
    w = p["working_set"]
    lines += ["", "working set GB: " + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in w.items()),
              f"usable cache per {SHARD_RAM_GB} GB shard member: {p['usable_cache_gb_per_shard']:.1f} GB -> "
              f"shards for the working set: {p['shards_for_working_set']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append", help="registered users (repeatable; default 1M and 10M)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with Database("mongomock://localhost/capacity", ensure_indexes=False, audit=False, journal=False) as db:
        docs = sample_documents(db)
        index_bytes = index_entry_bytes(docs, db.executor.runtime.registry)
    plans = [plan(n, docs, index_bytes) for n in (args.users or [1_000_000, 10_000_000])]
    out = {"doc_bytes": {k: len(bson.encode(v)) for k, v in docs.items()}, "text_terms_per_insight": text_terms(docs["PlanetaryInsight"]),
           "index_bytes_per_doc": index_bytes, "plans": plans}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print("measured BSON sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in out["doc_bytes"].items())
              + f"; text terms per insight: {out['text_terms_per_insight']}")
        print("index bytes per document: " + "; ".join(
            f"{m}: " + ", ".join(f"{k} {v:.0f}" for k, v in s.items()) for m, s in index_bytes.items()))
        for p in plans:
            print()
            print(render(p))
    return out


if __name__ == "__main__":
    main()

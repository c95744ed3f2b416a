"""``benchmarks/profile_calls.py`` runs end to end on nx-27017: a smoke test, not a timing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_calls.py"
BULK_COMMAND = SCRIPT.parent / "bulk_command.py"
KINDS = ("create", "update", "update_nr", "find_one", "find_lean", "find", "find_one_user",
         "nested_create", "nested_update", "nested_update_nr", "nested_find")


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "2", "--batch", "3", "--calls", "3", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] and line.split()[0] in KINDS}


def test_it_prints_astro_db_and_raw_cpu_per_call_kind_and_the_top_functions():
    out = _run("--top", "5", "--only", "astro_db", "--kinds", "find_one,update")
    rows = _rows(out)
    assert set(rows) == {"find_one", "update"}
    for raw, astro, overhead, ratio in rows.values():
        assert float(raw) > 0 and float(astro) > 0 and ratio.endswith("x")
        assert abs(float(astro) - float(raw) - float(overhead)) < 0.2
    assert re.search(r"## find_one: top 5 by tottime matching astro_db \(3 calls; \d+ function calls per call\)", out)
    assert "astro_db/" in out.split("## find_one")[1]


def test_without_the_driver_it_prints_astro_db_s_own_cpu_for_every_kind():
    out = _run("--no-driver")
    rows = _rows(out)
    assert set(rows) == set(KINDS)
    for raw, astro, _overhead, ratio in rows.values():
        assert float(raw) < float(astro) and ratio == "-"
    assert "no driver (astro_db's own CPU)" in out


def test_the_nested_kinds_profile_the_odm_benchmarks_large_nested_model():
    out = _run("--kinds", "nested_create,nested_update,nested_update_nr,nested_find", "--top", "5", "--only", "astro_db")
    rows = _rows(out)
    assert set(rows) == {"nested_create", "nested_update", "nested_update_nr", "nested_find"}
    for raw, astro, _overhead, ratio in rows.values():
        assert float(raw) > 0 and float(astro) > 0 and ratio.endswith("x")
    create = out.split("## nested_create")[1].split("## ")[0]
    assert "models/codec.py" in create or "<astro_db codec: " in create  # encoded: by the loop or a compiled encoder
    found = out.split("## nested_find")[1]
    assert "models/hydrate.py" in found or "<astro_db hydrate: " in found  # and the one found hydrated: loop or builder


def test_tracing_cost_compares_astro_db_with_tracing_on_and_off():
    pytest.importorskip("opentelemetry.sdk.trace", reason="needs the tracing extra and opentelemetry-sdk")
    out = _run("--no-driver", "--tracing-cost", "--tracing", "sdk", "--kinds", "find_one")
    assert "tracing sdk (raw column: astro_db with tracing=False)" in out
    (off, on, overhead, ratio) = _rows(out)["find_one"]
    assert float(off) > 0 and float(on) > 0 and ratio.endswith("x")
    assert abs(float(on) - float(off) - float(overhead)) < 0.2


def test_with_records_the_writes_also_write_their_change_records():
    out = _run("--records", "--no-driver", "--kinds", "update", "--top", "60", "--only", "astro_db", "--sort", "cumulative")
    assert "# nx-27017, records on, no driver" in out
    profile = out.split("## update")[1]
    assert "changes/log.py" in profile and "hooks.py" in profile  # the record is built and inserted
    plain = _run("--no-driver", "--kinds", "update", "--top", "60", "--only", "astro_db", "--sort", "cumulative")
    assert "# nx-27017, hooks off, no driver" in plain
    # hooks off, nothing of the records runs but the check that they are off (``ChangeLog.enabled``,
    # a property: whether it makes the top 60 depends on the run's timings)
    assert [line for line in plain.split("## update")[1].splitlines()
            if ("changes/log.py" in line or "changes/records.py" in line) and "(enabled)" not in line] == []


def test_the_record_floor_prints_the_update_alone_and_with_its_record():
    script = SCRIPT.parent / "record_floor.py"
    done = subprocess.run([sys.executable, str(script), "--rounds", "2", "--calls", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.rsplit(None, 4)[0].strip(): line.rsplit(None, 4)[1:] for line in done.stdout.splitlines()
            if line.startswith("update")}
    assert set(rows) == {"update", "update + record"}
    assert rows["update"][1] == "1.00x" and rows["update"][3] == "1.00x"
    assert all(float(v.rstrip("usx")) > 0 for row in rows.values() for v in row)


def test_the_record_floor_of_a_create_many_prints_each_layout_against_the_documents_alone():
    script = SCRIPT.parent / "record_floor.py"
    done = subprocess.run([sys.executable, str(script), "--many", "30", "--pack", "8", "--rounds", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines() if line.startswith("documents")}
    assert set(rows) == {"documents", "documents + records", "documents + records packed 8",
                         "documents + records, journal off", "documents + packed 8, journal off",
                         "documents + packed 8, images as bytes", "documents + records as astro_db packs them"}
    assert " 1.00x  1.00x (1.00-1.00)" in rows["documents"]


def test_records_packed_keep_each_records_own_part_and_share_the_rest_once():
    sys.path.insert(0, str(SCRIPT.parent))
    from record_floor import packed

    records = [{"_id": f"c/{i}/0/op", "model": "M", "coll": "c", "documentId": i, "rev": 0, "action": "create",
                "t": 5, "doc": {"_id": i}} for i in range(5)]
    out = packed(records, 2)
    assert [len(p["docs"]) for p in out] == [2, 2, 1]
    assert [d["documentId"] for p in out for d in p["docs"]] == list(range(5))
    assert out[0]["_id"] == "c/0/0/op/0" and out[2]["_id"] == "c/4/0/op/4"
    assert all(p["model"] == "M" and p["action"] == "create" and "doc" not in p and "documentId" not in p for p in out)
    assert out[0]["docs"][0]["doc"] == {"_id": 0}
    bare = packed([{k: v for k, v in r.items() if k != "doc"} for r in records], 2)  # journal off: no post-images
    assert [d for p in bare for d in p["docs"]] == [{"documentId": i, "rev": 0} for i in range(5)]


def test_records_packed_with_images_as_bytes_carry_each_documents_stored_bson_once():
    sys.path.insert(0, str(SCRIPT.parent))
    import bson
    from record_floor import packed_blob, with_images

    docs = [{"_id": i, "name": f"n{i}"} for i in range(5)]
    records = [{"_id": f"c/{i}/0/op", "model": "M", "documentId": i, "rev": 0, "action": "create", "doc": docs[i]}
               for i in range(5)]
    out = packed_blob(records, 2)
    assert all("doc" not in d for p in out for d in p["docs"])  # the images are not embedded documents
    sent = with_images(docs, out, 2)
    assert [d.raw for d in sent] == [bson.encode(d) for d in docs]  # what the insert sends, encoded once
    images = b"".join(p["images"] for p in out)
    assert list(bson.decode_all(images)) == docs  # every created state is in the records, in order
    assert [len(bson.decode_all(p["images"])) for p in out] == [2, 2, 1]


def test_the_bulk_command_benchmark_prints_each_way_of_sending_a_create_and_its_record(live_url):
    """``benchmarks/bulk_command.py`` against the session's server: every side's CPU and wall per
    write (a create's four ways, a delete's two) and its ratio to ``insert_one``."""
    done = subprocess.run([sys.executable, str(BULK_COMMAND), "--rounds", "2", "--calls", "3", "--url", live_url],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = {line[:34].strip(): line[34:].split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"insert_one", "MongoClient.bulk_write", "the command sent whole", "two insert_one",
                         "delete: MongoClient.bulk_write", "delete: the command sent whole"}
    ratios = {side: [t for t in tokens if t.endswith("x")] for side, tokens in rows.items()}
    assert ratios["insert_one"] == ["1.00x", "1.00x"] and all(len(r) == 2 for r in ratios.values())
    assert all(float(tokens[0].rstrip("µs")) > 0 for tokens in rows.values())


def test_the_bulk_command_benchmark_times_a_large_document_on_the_sides_asked_for(live_url):
    """``--image BYTES`` adds that much binary data to each document (its BSON size printed over
    the table, the record holding it again); ``--sides`` runs those and ``insert_one``, the scale;
    an unknown side is refused by name."""
    base = [sys.executable, str(BULK_COMMAND), "--rounds", "1", "--calls", "2", "--url", live_url]
    done = subprocess.run([*base, "--image", "300000", "--sides", "the command sent whole,two insert_one"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    size = int(lines[0].split("a document of ")[1].split(" BSON bytes")[0].replace(",", ""))
    assert 300_000 < size < 301_000
    assert {line[:34].strip() for line in lines[2:]} == {"insert_one", "the command sent whole", "two insert_one"}
    wrong = subprocess.run([*base, "--sides", "neither"], capture_output=True, text=True, timeout=300, check=False)
    assert wrong.returncode == 2 and "unknown sides ['neither']" in wrong.stderr


def test_the_bulk_command_benchmark_times_the_ways_of_sending_an_update_and_its_record(live_url):
    """``--update``: an update's four ways (``update_one`` the scale; a default update's
    ``findAndModify`` and record; a record without the post-image after the update, or in one
    ``bulkWrite`` with it, whose reply is checked), each against ``update_one``."""
    done = subprocess.run([sys.executable, str(BULK_COMMAND), "--update", "--rounds", "1", "--calls", "3", "--url", live_url],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "vs update_one" in lines[1]
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:]}
    assert set(rows) == {"update_one", "findAndModify, then its record", "update_one, then a delta record",
                         "one command: update, delta record"}
    assert [t for t in rows["update_one"] if t.endswith("x")] == ["1.00x", "1.00x"]

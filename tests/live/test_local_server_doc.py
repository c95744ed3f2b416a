"""docs/testing.md's one-line local server ("A local server for the examples") starts nx-27017
and answers: the documented command is run as written, on a free port and a temporary directory."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pymongo

from live.nxserver import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_local_server_command_starts_a_server_the_examples_can_use(tmp_path):
    page = (ROOT / "docs" / "testing.md").read_text()
    section = page[page.index("## A local server for the examples"):]
    line = next(x for x in section.splitlines() if "tests/nx_launcher.py" in x)
    assert line.startswith("mkdir -p /tmp/astro-nx && python tests/nx_launcher.py ")
    port, data = free_port(), tmp_path / "nx"
    command = line.split("&& ", 1)[1].replace("/tmp/astro-nx", str(data)).replace("--port 27017", f"--port {port}")
    argv = shlex.split(command)
    assert argv[0] == "python" and re.search(r"--pid-file \S+/nx\.pid", command)
    data.mkdir()
    proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/astro", serverSelectionTimeoutMS=30_000)
        try:
            assert client.admin.command("ping")["ok"] == 1
        finally:
            client.close()
        assert (data / "nx.pid").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)

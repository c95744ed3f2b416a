"""benchmarks/capacity.py runs, and docs/scaling.md states the figures it measures (no drift)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _capacity():
    spec = importlib.util.spec_from_file_location("capacity_bench", ROOT / "benchmarks" / "capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scaling_doc_quotes_the_measured_figures(capsys):
    out = _capacity().main(["--json"])
    doc = (ROOT / "docs" / "scaling.md").read_text()
    for size in out["doc_bytes"].values():
        assert f"**{size:,}**" in doc  # section 1's table
    one, ten = out["plans"]
    assert f"**{one['data_total_gb']:.1f} GB**" in doc and f"**{one['index_total_gb']:.1f} GB**" in doc
    assert f"**{one['working_set']['total_gb']:.2f}**" in doc
    assert f"**{ten['working_set']['total_gb']:.2f} GB**" in doc
    assert ten["shards_for_working_set"] == 4 and "**4 shards**" in doc
    assert f"{out['text_terms_per_insight']} terms per insight" in doc

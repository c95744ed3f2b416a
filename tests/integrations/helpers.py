"""Helpers for the integration tests: importing the example scripts, quick-failing options."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DOWN_OPTIONS = {"serverSelectionTimeoutMS": 200, "connect_attempts": 1, "retry_attempts": 1, "health_timeout_ms": 300}
"""Options that make a Database pointed at the ``down_url`` fixture give up quickly."""


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    module_name = f"astro_db_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

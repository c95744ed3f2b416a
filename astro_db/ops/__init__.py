"""The operation pipeline: every call of the service runs through one executor.

``Operation`` is what a call is, ``PERMISSIONS`` what each public call needs, ``Executor``
runs operations through resolve → authorize → compile → seal → route → cache → run → hooks →
open → hydrate (``astro_db.ops.steps``). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from .executor import CreateManyResult, Executor, UpsertResult
from .operation import PERMISSIONS, Operation, permission_of
from .runtime import Runtime, make_config

__all__ = ["Executor", "Operation", "PERMISSIONS", "permission_of", "Runtime", "make_config", "CreateManyResult", "UpsertResult"]

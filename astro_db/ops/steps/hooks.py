"""Step 8, hooks: tell the write hooks about a successful write (``events.WriteEvent``).

Hooks run in order, synchronously, with the write's session: the query cache's invalidation,
then the audit trail and the change journal when configured. Inside a transaction their own
writes commit or abort with it, and the cache is invalidated only on commit.
"""

from __future__ import annotations

from ...events import WriteEvent
from ..runtime import Runtime

__all__ = ["emit"]


def emit(rt: Runtime, event: WriteEvent) -> None:
    """Run every write hook of the runtime for ``event``."""
    for hook in rt.hooks:
        hook(event)

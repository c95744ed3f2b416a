"""A command listener for the crash tests' child processes: ``KillAt(chosen)`` SIGKILLs its
process the moment the server acknowledges a command ``chosen(command_name, command)`` picked,
so the crash falls exactly between that command and the next one, never by timing.

The child scripts import it with ``tests`` on their ``sys.path`` (``CHILD_PATH``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pymongo import monitoring

CHILD_PATH = str(Path(__file__).resolve().parent)


class KillAt(monitoring.CommandListener):
    """SIGKILLs this process when the server acknowledges a command ``chosen`` picked."""

    def __init__(self, chosen: Callable[[str, Mapping[str, Any]], bool]) -> None:
        self.chosen = chosen
        self.ids: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.chosen(event.command_name, event.command):
            self.ids.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self.ids:
            os.kill(os.getpid(), signal.SIGKILL)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

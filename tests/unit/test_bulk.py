"""When a create may send its documents and records in one ``bulkWrite`` (``astro_db.ops.bulk``).

The command itself is tested against nx-27017 in ``tests/live/test_one_command_writes_live.py``.
"""

from __future__ import annotations

import pytest

from astro_db.ops import bulk


class Topology:
    """A client whose topology lists servers of the given wire versions (None: type unknown)."""

    def __init__(self, *versions: int | None) -> None:
        from types import SimpleNamespace

        servers = {f"h{i}:27017": SimpleNamespace(is_server_type_known=v is not None, max_wire_version=v)
                   for i, v in enumerate(versions)}
        self.topology_description = SimpleNamespace(server_descriptions=lambda: servers)


@pytest.mark.parametrize(("versions", "expected"), [
    ((25,), True), ((25, 25, 26), True), ((21,), False), ((25, 21), False), ((), None), ((None,), None),
    ((None, 25), True),
])
def test_the_command_is_used_only_when_every_known_server_has_it(versions, expected) -> None:
    """MongoDB 7.0 reports wire version 21; a mixed cluster mid-upgrade must not get the command;
    a client that knows no server yet decides nothing (asked again on the next create)."""
    assert bulk.supported(Topology(*versions)) is expected

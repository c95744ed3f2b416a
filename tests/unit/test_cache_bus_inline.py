"""The Redis bus's writes publish from the writing thread itself (issue 27: the cache's cost per
request under the web mix).

Must hold: while Redis answers, a write sends its announcement on the bus's publishing
connection and reads the reply itself (no other thread woken); a reply not back within
``wait_s`` is handed over with the connection to the publisher thread, which reads it (the
write stops waiting; a frozen Redis costs a write at most ``wait_s``: the bounds passed to its
reads) and sends what is still pending; two threads writing one model at once each return only
after an announcement that covers their write (one thread sends for both), or after
``wait_s``; a reply late or cut short never leaves the connection out of step (the next reply
read is the next command's), and one that never comes drops the connection and takes the bus
down; a failed publish in the writing thread is handled as before (logged, counted, the cache
dropped, the model re-published by the subscriber once it is back); a broken connection is
replaced by the publisher thread and the write announced on the new one; a child forked while
another thread of its parent had the connection publishes with its own; whatever a publish
raises in the writing thread leaves the write standing; ``close()`` takes a send handed over to
a publisher thread that does not come for it. Driven by a real
redis-server frozen with SIGSTOP, a connection killed with ``CLIENT KILL``, hooks that order
two threads, and a scripted socket: never a sleep.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import types
from typing import Any

import pytest
import redis
from bus_kit import NOTICE, count_wakes, generation, open_bus, spy_sends
from spies import poll as _poll

from astro_db.cache import redis_bus
from astro_db.cache.redis_bus import _LATE, _Wire


def test_while_redis_answers_a_write_sends_its_own_announcement_and_wakes_no_other_thread(redis_server, redis_client,
                                                                                          monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0  # about what the write does, not how long it takes
        sent = spy_sends(monkeypatch)
        wakes = count_wakes(bus)
        for n in range(2, 7):
            bus.publish("User", notice=NOTICE)
            assert not bus.unsent("User") and generation(redis_client, bus) == n  # announced when the write returns
        me = threading.current_thread().name
        assert sent == [(me, b"EVALSHA")] * 5 and wakes == []  # no hand-over, no wake-up of the publisher thread
        assert bus.stats()["late"] == 0 and bus.stats()["sent"] == 6
    finally:
        bus.close()


def test_a_frozen_redis_costs_a_write_at_most_wait_s_and_the_publisher_thread_reads_the_late_reply(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url, stall_s=60.0)  # a loaded machine must not look like a stall here
    try:
        wire = bus._publish_wire
        bounds: list[tuple[str, float]] = []  # (thread, deadline) of every reply read
        reply = _Wire.reply

        def recorded(self: Any, deadline: float) -> Any:
            bounds.append((threading.current_thread().name, deadline))
            return reply(self, deadline)

        monkeypatch.setattr(_Wire, "reply", recorded)
        given: list[float] = []
        publish_now = bus._publish_now

        def entered(model: str, number: int, deadline: float) -> None:
            given.append(deadline - time.monotonic())  # what is left of wait_s when the write starts its send
            publish_now(model, number, deadline)

        bus._publish_now = entered  # type: ignore[method-assign]
        sent = spy_sends(monkeypatch)
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)  # returns: its reply cannot come
        me = threading.current_thread().name
        assert bus.unsent("User") and bus.stats()["sent"] == 1
        assert len(given) == 1 and 0 < given[0] <= bus.wait_s
        mine = [deadline for thread, deadline in bounds if thread == me]
        assert mine and max(mine) - min(mine) == 0  # every read of the write was bounded by its one deadline
        assert sent == [(me, b"EVALSHA")]
        redis_server.thaw()
        _poll(lambda: not bus.unsent("User"))
        assert bus.stats()["late"] == 1 and bus.stats()["sent"] == 2 and bus.figures.errors == 0
        assert generation(redis_client, bus) == 2  # sent once: the publisher thread read its reply, did not send again
        assert [thread for thread, _ in bounds if thread != me][-1].startswith("astro_db-cache-publish-")
        # the connection is in step: the next write's reply is its own
        bus.wait_s = 30.0
        bus.publish("User", notice=NOTICE)
        assert not bus.unsent("User") and generation(redis_client, bus) == 3 and bus._publish_wire is wire
        with bus._send_lock:
            assert wire is not None
            assert wire.call(b"ECHO", b"next") == b"next"
        assert bus.connected
    finally:
        redis_server.thaw()
        bus.close()


def test_two_threads_writing_one_model_at_once_each_return_after_an_announcement_that_covers_their_write(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        returned: dict[str, tuple[bool, int]] = {}  # thread -> (its model still owed, generation) on return

        def write() -> None:
            bus.publish("User", notice=NOTICE)
            returned[threading.current_thread().name] = (bus.unsent("User"), generation(redis_client, bus))

        second = threading.Thread(target=write, name="B", daemon=True)

        def after_send() -> None:
            if threading.current_thread().name == "A" and not second.is_alive() and "B" not in returned:
                owed = bus._pending["User"]  # A's write: sent, its reply not read yet
                second.start()  # B writes the same model now, while A has the connection
                _poll(lambda: bus._pending.get("User") != owed)  # B's write is recorded (B then waits for the connection)

        sent = spy_sends(monkeypatch, after=after_send)
        first = threading.Thread(target=write, name="A", daemon=True)
        first.start()
        first.join(60)
        second.join(60)
        assert returned == {"A": (False, 3), "B": (False, 3)}  # each returned covered: A sent again for B
        assert sent == [("A", b"EVALSHA"), ("A", b"EVALSHA")]  # B sent nothing itself
        assert bus.stats()["late"] == 0 and bus.stats()["sent"] == 3
    finally:
        bus.close()


def test_a_write_that_cannot_get_the_connection_within_wait_s_returns_and_is_announced_after_the_late_send(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url, stall_s=60.0)
    try:
        bus.wait_s = 0.05
        returned: dict[str, bool] = {}

        def write() -> None:
            bus.publish("User", notice=NOTICE)
            returned[threading.current_thread().name] = bus.unsent("User")

        second = threading.Thread(target=write, name="B", daemon=True)

        def after_send() -> None:
            if threading.current_thread().name == "A" and "B" not in returned and not second.is_alive():
                started = bus._sending_since
                assert started is not None
                second.start()
                second.join(60)  # B gives up on the connection A holds: wait_s at most
                _poll(lambda: time.monotonic() > started + bus.wait_s)  # and A's own wait has run out too

        sent = spy_sends(monkeypatch, after=after_send)
        first = threading.Thread(target=write, name="A", daemon=True)
        redis_server.freeze()  # A's reply is late (one in the socket by then is read: not late)
        first.start()
        first.join(60)
        redis_server.thaw()
        assert returned == {"B": True, "A": True}  # neither waited past wait_s: both writes owed
        _poll(lambda: not bus.unsent("User"))
        assert generation(redis_client, bus) == 3 and bus.stats()["late"] == 1  # A's late reply read, B's write sent after it
        assert [name for name, _ in sent][:1] == ["A"] and len(sent) == 2
        assert sent[1][0].startswith("astro_db-cache-publish-") and bus.figures.errors == 0 and bus.connected
    finally:
        redis_server.thaw()
        bus.close()


def test_a_handed_over_reply_that_never_comes_drops_the_connection_and_the_subscriber_publishes_again(
        redis_server, redis_client, monkeypatch, caplog):
    bus, listener = open_bus(redis_server.url, timeout_s=0.2, stall_s=60.0)  # a send's bound: 0.4 s
    try:
        wire = bus._publish_wire
        sent = spy_sends(monkeypatch)
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)
        _poll(lambda: any("could not publish writes (TimeoutError" in r.getMessage() for r in caplog.records))
        assert not bus.connected and bus.unsent("User") and wire is not None and wire.closed
        assert ("drop_all", "publish failed: TimeoutError") in listener.calls
        redis_server.thaw()
        _poll(lambda: bus.connected)
        assert not bus.unsent("User")  # published by the subscriber before it trusted the bus again
        assert bus._publish_wire is not wire
        me = threading.current_thread().name
        assert sent[0] == (me, b"EVALSHA") and [thread for thread, _ in sent[1:]] == [bus._thread.name]  # type: ignore[union-attr]
    finally:
        redis_server.thaw()
        bus.close()


def test_a_publish_refused_in_the_writing_thread_is_logged_counted_and_sent_again_once_the_bus_is_back(
        redis_server, redis_client, monkeypatch, caplog):
    bus, listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        redis_client.set(bus.generation_prefix + "User", "not a number")  # the script's INCR fails: an error reply
        caplog.set_level(logging.INFO, logger="astro_db")
        sent = spy_sends(monkeypatch)
        bus.publish("User", notice=NOTICE)  # the write stands: nothing raised
        me = threading.current_thread().name
        assert sent[0] == (me, b"EVALSHA") and bus.figures.errors >= 1 and bus.unsent("User")
        assert ("drop_all", "publish failed: ResponseError") in listener.calls  # this process's cache dropped
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and "could not publish writes (ResponseError" in errors[0]
        redis_client.delete(bus.generation_prefix + "User")
        _poll(lambda: bus.connected and not bus.unsent("User"))  # the subscriber sent it, then trusted the bus
        assert generation(redis_client, bus) == 1
    finally:
        bus.close()


def test_a_broken_publishing_connection_is_replaced_and_the_write_announced_on_the_new_one(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        wire = bus._publish_wire
        assert wire is not None
        redis_client.client_kill(f"127.0.0.1:{wire._sock.getsockname()[1]}")  # Redis closes the publishing connection
        sent = spy_sends(monkeypatch)
        bus.publish("User", notice=NOTICE)
        assert not bus.unsent("User") and generation(redis_client, bus) == 2  # announced once, on a new connection
        assert bus._publish_wire is not wire and wire.closed and bus.figures.errors == 0 and bus.connected
        me = threading.current_thread().name
        assert sent[0] == (me, b"EVALSHA") and sent[-1][0].startswith("astro_db-cache-publish-")
    finally:
        bus.close()


def test_a_child_forked_while_another_thread_had_the_connection_publishes_with_its_own(redis_server, redis_client):
    bus, _listener = open_bus(redis_server.url)
    holder_has_it, let_go = threading.Event(), threading.Event()

    def holder() -> None:  # a write of the parent in the middle of its send
        with bus._send_lock:
            holder_has_it.set()
            let_go.wait(60)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert holder_has_it.wait(30)
    try:
        pid = os.fork()
        if pid == 0:  # the child: reports through its exit code only
            code = 1
            try:
                _ = bus.connected  # the fork is seen: a subscriber of its own
                _poll(lambda: bus.connected, timeout_s=20)  # it publishes what is pending under its own lock first
                bus.wait_s = 30.0
                bus.publish("User", notice=NOTICE)
                _poll(lambda: not bus.unsent("User"), timeout_s=20)
                code = 0 if generation(redis.Redis.from_url(redis_server.url), bus) == 2 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        let_go.set()
        thread.join(30)
        bus.close()


def test_a_write_made_while_the_subscriber_reconnects_is_announced_once_it_is_back(redis_server, redis_client):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        written = threading.Event()
        drop_all = bus._drop_all

        def hooked(reason: str, *, count: bool = True) -> None:
            drop_all(reason, count=count)
            if reason == "reconnected" and not written.is_set():  # pending published, the bus not trusted yet
                writer = threading.Thread(target=lambda: bus.publish("User", notice=NOTICE), daemon=True)
                writer.start()
                writer.join(30)  # returns at once: the bus is not connected
                written.set()

        bus._drop_all = hooked  # type: ignore[method-assign]
        bus._lose_trust("a doubt")  # the subscriber reconnects
        _poll(lambda: written.is_set() and bus.connected)
        _poll(lambda: not bus.unsent("User"))  # was owed until the next write
        assert generation(redis_client, bus) == 2
    finally:
        bus.close()


def test_a_handed_over_connection_that_breaks_is_replaced_and_the_write_announced_without_taking_the_bus_down(
        redis_server, redis_client):
    import socket

    bus, _listener = open_bus(redis_server.url, stall_s=60.0)
    try:
        wire = bus._publish_wire
        assert wire is not None
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)  # late: handed over
        assert bus.unsent("User")
        wire._sock.shutdown(socket.SHUT_RDWR)  # the connection breaks with the reply owed
        redis_server.thaw()
        _poll(lambda: not bus.unsent("User"))  # sent again on a new connection (as a broken connection's one retry)
        assert bus._publish_wire is not wire and wire.closed
        assert bus.connected and bus.figures.errors == 0 and bus.stats()["late"] == 0
    finally:
        redis_server.thaw()
        bus.close()


def test_anything_a_publish_raises_in_the_writing_thread_leaves_the_write_standing_and_takes_the_bus_down(
        redis_server, redis_client, caplog):
    bus, listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        announcement = bus._announcement
        broken = [True]

        def failing(model: str, notice: Any) -> Any:
            if broken[0]:  # once: the writing thread's
                broken[0] = False
                raise RuntimeError("a bug in the announcement")
            return announcement(model, notice)

        bus._announcement = failing  # type: ignore[method-assign]
        bus.publish("User", notice=NOTICE)  # nothing raised into the write
        assert bus.unsent("User") and ("drop_all", "publish failed: RuntimeError") in listener.calls
        assert bus.figures.errors >= 1  # the publish's (then the subscriber's, woken by the doubt)
        assert any("could not publish writes (RuntimeError" in r.getMessage() for r in caplog.records)
        _poll(lambda: bus.connected and not bus.unsent("User"))  # published by the subscriber once back
        assert generation(redis_client, bus) == 2
    finally:
        bus.close()


def test_close_takes_a_send_handed_over_to_a_publisher_thread_that_does_not_come(redis_server, redis_client):
    from astro_db.cache.redis_bus import _Signal

    bus, _listener = open_bus(redis_server.url, timeout_s=0.2, stall_s=60.0)  # close() joins a thread for 0.6 s
    wire = bus._publish_wire
    unheard = bus._wake
    bus._wake = _Signal()  # the publisher thread keeps waiting on the old one: it never comes for the send
    closing = threading.Thread(target=bus.close, daemon=True)
    try:
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)  # late: handed over, to no one
        assert bus._handed is not None and bus._send_lock.locked()
        closing.start()
        closing.join(30)
    finally:
        redis_server.thaw()
        unheard.set()  # lets the old publisher thread see the stop
    assert not closing.is_alive() and wire is not None and wire.closed and bus._handed is None
    assert not bus._send_lock.locked()


# --- the publishing connection's reads, with a scripted socket -----------------------------------

class _Socket:
    """Gives the scripted chunks, one per ``recv``; with none left, the clock passes the deadline."""

    def __init__(self, clock: list[float]) -> None:
        self.chunks: list[bytes] = []
        self.sent: list[bytes] = []
        self.clock = clock

    def settimeout(self, timeout: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        self.clock[0] += 1.0
        raise TimeoutError


def test_a_reply_cut_short_at_the_deadline_is_kept_and_the_next_reply_read_is_the_next_commands(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(redis_bus, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    wire = _Wire.__new__(_Wire)
    sock = _Socket(clock)
    wire._sock, wire._buffer, wire._timeout, wire._closed, wire.owed, wire._redis = sock, bytearray(), None, False, False, redis
    wire.request(b"EVALSHA", b"sha", b"0")
    sock.chunks = [b":1"]  # half of the reply, then nothing before the deadline
    assert wire.reply(clock[0] + 0.5) is _LATE and wire.owed and not wire.ready
    with pytest.raises(redis.ConnectionError, match="still owed"):
        wire.request(b"PING")  # never sent while a reply is owed
    assert len(sock.sent) == 1
    sock.chunks = [b"\r\n"]
    assert wire.reply(clock[0] + 0.5) == 1 and wire.ready  # the rest, read later: the whole reply
    wire.request(b"ECHO", b"x")
    sock.chunks = [b"$1\r\nx\r\n"]
    assert wire.reply(clock[0] + 0.5) == b"x"  # the next reply is the next command's
    wire.request(b"PING")
    sock.chunks = [b"+PONG\r\n+PONG\r\n"]
    with pytest.raises(redis.ConnectionError, match="more than was asked"):
        wire.reply(clock[0] + 0.5)
    assert wire.owed  # out of step: never used again (the bus closes it)

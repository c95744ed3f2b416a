"""Three edge cases of the Redis bus's publishing (docs/caching.md, the bus sections).

Must hold: a send broken by a closed connection is sent once more on a new connection and no
more, whichever thread met the break (the writing thread's own send, a reply handed over to the
publisher thread, the publisher thread's or the subscriber's own send): a retry broken too is a failed publish, the
model still pending and published by the subscriber once it is back; anything a publish raises
in the publisher thread (not only Redis's errors) is a failed publish (counted, logged without a
URL's password, caching off until the subscriber is back) and the thread lives on, its lock let
go; anything the subscriber meets (not only Redis's, socket and parse errors) makes it drop
everything and reconnect, never ends its thread; a thread ended by what no ``except Exception``
catches (``SystemExit`` raised in it) makes the bus drop everything, and the next look at the bus
starts it again (never once the bus is closed), what was owed sent; a reply already in the socket when the
deadline has passed is read (one read with a timeout of 0), not treated as late, and with none
there ``reply`` answers late without waiting. Driven by a real redis-server (frozen with
SIGSTOP, connections cut with ``CLIENT KILL`` before a chosen send), hooks in the sending
thread, a socket pair and scripted sockets: never a sleep, never a wall-clock bound.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from bus_kit import NOTICE, count_wakes, generation, open_bus, spy_sends, subscribed_bus
from live.nxserver import free_port
from spies import BusCalls
from spies import poll as _poll

from astro_db.cache import redis_bus
from astro_db.cache.redis_bus import _LATE, RedisBus, _Wire

PUBLISHER = "astro_db-cache-publish-"


def _sends(monkeypatch: Any, redis_client: Any, cut: Callable[[str], bool] | None = None,
           after: Callable[[], None] | None = None) -> list[tuple[str, bytes]]:
    """The publish scripts sent from now on (``bus_kit.spy_sends``), cut or followed as asked."""
    return spy_sends(monkeypatch, scripts_only=True, client=redis_client, cut=cut, after=after)


def _failures(bus: RedisBus, sent: list[tuple[str, bytes]], cutting: list[bool]) -> list[tuple[Any, ...]]:
    """Each failed publish as (scripts sent so far, its exception's type, User still owed, the
    thread); the first one stops the cutting (the subscriber then publishes what is owed)."""
    failures: list[tuple[Any, ...]] = []
    publish_failed = bus._publish_failed

    def recorded(exc: Exception) -> None:
        seen = (len(sent), type(exc).__name__, bus.unsent("User"), threading.current_thread().name[:23])
        cutting[0] = False
        publish_failed(exc)
        failures.append(seen)  # after the bus acted on it: a test that waits for this sees the drop too

    bus._publish_failed = recorded  # type: ignore[method-assign]
    return failures


# --- 1. one retry after a broken connection, on every path ----------------------------------

def test_a_send_broken_in_the_writing_thread_is_sent_once_more_and_a_broken_retry_leaves_it_owed(
        redis_server, redis_client, monkeypatch):
    bus, listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 5.0  # ample for the write's own send; the write does not wait for the failure
        cutting = [True]
        sent = _sends(monkeypatch, redis_client, cut=lambda thread: cutting[0])
        failures = _failures(bus, sent, cutting)
        writer = threading.Thread(target=lambda: bus.publish("User", notice=NOTICE), name="W", daemon=True)
        writer.start()
        _poll(lambda: failures)
        # the write's send broke, the publisher thread's retry on a new connection broke too: two sends, then a failure
        assert failures == [(2, "ConnectionError", True, PUBLISHER)]
        assert [thread[:23] for thread, _ in sent[:2]] == ["W", PUBLISHER]
        assert ("drop_all", "publish failed: ConnectionError") in listener.calls
        assert generation(redis_client, bus) == 1  # neither cut send ran the script
        _poll(lambda: bus.connected and not bus.unsent("User"))  # owed, then published by the subscriber once back
        assert generation(redis_client, bus) == 2 and len(sent) == 3
        writer.join(30)
    finally:
        bus.close()


def test_a_handed_over_send_whose_connection_breaks_is_sent_once_more_and_a_broken_retry_leaves_it_owed(
        redis_server, redis_client, monkeypatch):
    bus, listener = open_bus(redis_server.url, stall_s=60.0)
    try:
        wire = bus._publish_wire
        assert wire is not None
        cutting = [True]
        sent = _sends(monkeypatch, redis_client, cut=lambda thread: cutting[0] and thread.startswith(PUBLISHER))
        failures = _failures(bus, sent, cutting)
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)  # late: handed over to the publisher thread
        assert bus.unsent("User") and len(sent) == 1
        wire._sock.shutdown(socket.SHUT_RDWR)  # the connection breaks with the reply owed
        redis_server.thaw()
        _poll(lambda: failures)
        assert failures == [(2, "ConnectionError", True, PUBLISHER)]  # the write's send, one retry: no third
        assert ("drop_all", "publish failed: ConnectionError") in listener.calls
        _poll(lambda: bus.connected and not bus.unsent("User"))
        assert len(sent) == 3 and bus._publish_wire is not wire
    finally:
        redis_server.thaw()
        bus.close()


def test_the_publisher_threads_own_send_is_sent_once_more_and_a_broken_retry_leaves_it_owed(
        redis_server, redis_client, monkeypatch):
    bus, listener = open_bus(redis_server.url)
    try:
        wire = bus._publish_wire
        assert wire is not None
        wire.close()  # the write sends nothing itself (no connection ready): the publisher thread does
        bus.wait_s = 0.0
        cutting = [True]
        sent = _sends(monkeypatch, redis_client, cut=lambda thread: cutting[0])
        failures = _failures(bus, sent, cutting)
        bus.publish("User", notice=NOTICE)
        _poll(lambda: failures)
        assert failures == [(2, "ConnectionError", True, PUBLISHER)]
        assert [thread[:23] for thread, _ in sent[:2]] == [PUBLISHER, PUBLISHER]
        _poll(lambda: bus.connected and not bus.unsent("User"))
        assert generation(redis_client, bus) == 2
    finally:
        bus.close()


def test_the_subscribers_send_on_reconnecting_is_sent_once_more_and_a_broken_retry_leaves_it_owed(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        subscriber = bus._thread
        assert subscriber is not None
        cutting = [True]
        sent = _sends(monkeypatch, redis_client, cut=lambda thread: cutting[0] and thread == subscriber.name)
        failed: list[tuple[int, str, bool]] = []
        error = bus.figures.error

        def recorded(text: str) -> None:
            if cutting[0] and sent and text.startswith("subscriber:"):  # not the doubt itself: the failed flush
                failed.append((len(sent), text.split(":")[1].strip(), bus.unsent("User")))
                cutting[0] = False  # its next reconnection publishes it
            error(text)

        bus.figures.error = recorded  # type: ignore[method-assign]
        bus._send_lock.acquire()  # another thread's send under way: the write sends nothing, the publisher thread neither
        bus.publish("User", notice=NOTICE)  # owed
        bus._lose_trust("a doubt")  # the subscriber reconnects and, before it trusts the bus, sends what is owed
        bus._send_lock.release()  # to the subscriber, waiting for it (the publisher thread does not try: not connected)
        _poll(lambda: failed)
        assert failed == [(2, "ConnectionError", True)] and [thread for thread, _ in sent] == [subscriber.name] * 2
        _poll(lambda: bus.connected and not bus.unsent("User"))
        assert generation(redis_client, bus) == 2 and bus._thread is subscriber
    finally:
        bus.close()


def test_a_broken_send_whose_retry_gets_through_is_announced_once_and_the_next_break_is_retried_again(
        redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        cuts = [1]  # the next send breaks, its retry does not

        def cut(thread: str) -> bool:
            cuts[0] -= 1
            return cuts[0] >= 0

        sent = _sends(monkeypatch, redis_client, cut=cut)
        bus.publish("User", notice=NOTICE)
        _poll(lambda: not bus.unsent("User"))
        assert generation(redis_client, bus) == 2 and len(sent) == 2 and bus.figures.errors == 0 and bus.connected
        assert not bus._broken  # the retry is not owed any more: the next break has its own
        cuts[0] = 1
        bus.publish("User", notice=NOTICE)
        _poll(lambda: not bus.unsent("User"))
        assert generation(redis_client, bus) == 3 and len(sent) == 4 and bus.figures.errors == 0 and bus.connected
    finally:
        bus.close()


def test_a_write_waiting_for_its_announcement_returns_once_the_bus_loses_trust(redis_server, redis_client):
    """A write whose announcement the publisher thread is sending (the first write opens the
    connection) waits for it up to ``wait_s``; once the bus has lost trust (this process reads
    no cache until the subscriber is back) there is nothing left to wait for: it returns then."""
    bus, _ = subscribed_bus(redis_server.url, stall_s=600.0)  # no publishing connection: the publisher opens it
    try:
        bus.wait_s = 600.0  # the write would wait this long for its announcement
        redis_server.freeze()  # the publisher thread's handshake gets no answer
        writer = threading.Thread(target=lambda: bus.publish("User", notice=NOTICE), name="writer")
        writer.start()
        _poll(lambda: len(bus._announced._waiters) == 1)  # type: ignore[attr-defined]  # the write waits
        bus._lose_trust("publish failed: a test")
        writer.join(timeout=60)  # a bound against a hang (600 s before), not a timing
        assert not writer.is_alive() and bus.unsent("User")  # returned; the announcement still owed
    finally:
        redis_server.thaw()
        bus.close()
    assert not writer.is_alive()


# --- 2. the publisher and subscriber threads outlive anything a publish or a message raises --

def test_anything_the_publisher_thread_meets_is_a_failed_publish_and_the_thread_lives_on(
        redis_server, redis_client, monkeypatch, caplog):
    bus, listener = subscribed_bus(redis_server.url, stall_s=60.0)  # no publishing connection: the publisher thread sends
    try:
        publisher = bus._publisher
        assert publisher is not None
        announcement = bus._announcement
        raised: list[str] = []

        def failing(model: str, notice: Any) -> Any:
            if threading.current_thread() is publisher and not raised:
                raised.append(model)  # once, in the publisher thread: a bug, not a Redis error
                raise TypeError("a notice it cannot read (redis://:hunter2@cache:6379/0)")
            return announcement(model, notice)

        bus._announcement = failing  # type: ignore[method-assign]
        bus.publish("User", notice=NOTICE)
        _poll(lambda: raised and bus.figures.errors >= 1)
        assert ("drop_all", "publish failed: TypeError") in listener.calls  # the bus lost trust: caching off
        _poll(lambda: bus.connected and not bus.unsent("User"))  # owed, published by the subscriber once back
        assert publisher.is_alive() and bus._publisher is publisher and not bus._send_lock.locked()
        said = [r.getMessage() for r in caplog.records if "could not publish writes (TypeError" in r.getMessage()]
        assert said and all("hunter2" not in text for text in said)
        assert "hunter2" not in repr(bus.stats())
        # the next announcement the publisher thread must finish (a late reply) goes out
        sent = _sends(monkeypatch, redis_client)
        redis_server.freeze()
        bus.publish("User", notice=NOTICE)  # late: handed over
        redis_server.thaw()
        _poll(lambda: not bus.unsent("User"))
        assert bus.stats()["late"] == 1 and len(sent) == 1 and generation(redis_client, bus) == 2 and bus.connected
    finally:
        redis_server.thaw()
        bus.close()


def test_anything_the_subscriber_meets_drops_everything_and_it_reconnects_never_ending_its_thread(
        redis_server, redis_client, caplog):
    bus, listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        thread = bus._thread
        assert thread is not None
        reconnects = bus.stats()["reconnects"]
        deliver = bus._deliver_batch
        raised: list[int] = []

        def failing(batch: list[bytes]) -> None:
            if not raised:
                raised.append(len(batch))
                raise KeyError("a bug in a cache's apply (redis://:hunter2@cache:6379/0)")
            deliver(batch)

        bus._deliver_batch = failing  # type: ignore[method-assign]
        bus.publish("User", notice=NOTICE)  # its message reaches this process's subscriber: it raises
        _poll(lambda: raised and bus.stats()["reconnects"] == reconnects + 1 and bus.connected)
        assert bus._thread is thread and thread.is_alive()
        assert ("drop_all", "reconnected") in listener.calls and bus.figures.errors >= 1
        assert all("hunter2" not in r.getMessage() for r in caplog.records) and "hunter2" not in repr(bus.stats())
        received = bus.figures.received
        bus.publish("User", notice=NOTICE)
        _poll(lambda: bus.figures.received > received)  # it reads and delivers messages again
        assert generation(redis_client, bus) == 3
    finally:
        bus.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit raised on purpose
def test_a_publisher_thread_ended_by_a_base_exception_is_started_again_and_what_it_owed_goes_out(
        redis_server, redis_client, caplog):
    bus, listener = subscribed_bus(redis_server.url, stall_s=60.0)  # no publishing connection: the publisher thread sends
    try:
        publisher = bus._publisher
        assert publisher is not None
        announcement = bus._announcement

        def ending(model: str, notice: Any) -> Any:
            if threading.current_thread() is publisher:
                raise SystemExit("raised in the publisher thread")  # no ``except Exception`` catches it
            return announcement(model, notice)

        bus._announcement = ending  # type: ignore[method-assign]
        bus.publish("User", notice=NOTICE)
        _poll(lambda: not publisher.is_alive())
        assert ("drop_all", "publisher thread ended by SystemExit") in listener.calls  # caching off meanwhile
        assert not bus._send_lock.locked()
        # the next look at the bus starts the publisher again; the subscriber, reconnecting, sends what was owed
        _poll(lambda: bus.connected and not bus.unsent("User"))
        assert bus._publisher is not publisher and bus._publisher is not None and bus._publisher.is_alive()
        assert generation(redis_client, bus) == 1
        said = [r.getMessage() for r in caplog.records if "publisher thread was ended by SystemExit" in r.getMessage()]
        assert said and all("@" not in text or "***" in text for text in said)
        bus.publish("User", notice=NOTICE)  # the new publisher thread works
        _poll(lambda: not bus.unsent("User") and generation(redis_client, bus) == 2)
    finally:
        bus.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit raised on purpose
def test_a_subscriber_ended_by_a_base_exception_drops_everything_and_is_started_again(redis_server, redis_client):
    bus, listener = open_bus(redis_server.url)
    try:
        thread = bus._thread
        assert thread is not None
        deliver = bus._deliver_batch

        def ending(batch: list[bytes]) -> None:
            if threading.current_thread() is thread:
                raise SystemExit("raised in the subscriber thread")
            deliver(batch)

        bus._deliver_batch = ending  # type: ignore[method-assign]
        bus.publish("User", notice=NOTICE)  # its message reaches this process's subscriber: it ends
        _poll(lambda: not thread.is_alive())
        assert ("drop_all", "subscriber disconnected") in listener.calls or \
            ("drop_all", "subscriber thread ended by SystemExit") in listener.calls
        _poll(lambda: bus.connected)  # the look at ``connected`` started a subscriber of its own
        assert bus._thread is not thread and bus._thread is not None and bus._thread.is_alive()
        received = bus.figures.received
        bus.publish("User", notice=NOTICE)
        _poll(lambda: bus.figures.received > received)  # it reads and delivers messages again
    finally:
        bus.close()


def test_a_closed_bus_does_not_start_its_threads_again(redis_server):
    bus, _ = open_bus(redis_server.url)
    publisher, thread = bus._publisher, bus._thread
    assert publisher is not None and thread is not None
    bus.close()
    bus._revive = publisher  # as if it had ended by a BaseException as the bus closed
    assert not bus.connected
    bus.publish("User", notice=NOTICE)
    assert bus._publisher is publisher and bus._thread is thread and not publisher.is_alive() and not thread.is_alive()


def _never_subscribed(monkeypatch: Any) -> None:
    """The subscriber never gets its subscription (held until the bus closes): a process that
    writes and closes before its subscriber has subscribed."""
    subscribe = RedisBus._subscribe

    def held(self: RedisBus, wire: Any, *, reconnect: bool) -> Any:
        while not self._stop.wait(0.005):
            pass
        raise redis.ConnectionError("closed before subscribing")

    monkeypatch.setattr(RedisBus, "_subscribe", held)
    assert subscribe is not held


def test_what_a_process_wrote_before_its_subscriber_subscribed_is_announced_when_it_closes(
        redis_server, redis_client, monkeypatch):
    _never_subscribed(monkeypatch)
    bus = RedisBus(redis_server.url, f"owed{uuid.uuid4().hex[:8]}")
    bus.attach(BusCalls())
    redis_client.sadd(bus.cached_key, "User")  # another process caches User
    heard = redis_client.pubsub()
    heard.subscribe(bus.channel)
    assert heard.get_message(timeout=1.0)["type"] == "subscribe"
    bus.publish("User", notice=NOTICE)  # not connected: owed
    assert bus.unsent("User") and not bus.connected
    bus.close()
    assert not bus.unsent("User") and generation(redis_client, bus) == 1
    message = heard.get_message(timeout=1.0)
    assert message is not None and b'"m": "User"' in message["data"]  # the other processes heard it
    heard.close()


def test_what_cannot_be_announced_at_close_is_logged_without_the_password_and_close_returns(monkeypatch, caplog):
    _never_subscribed(monkeypatch)
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    bus = RedisBus(url, f"owed{uuid.uuid4().hex[:8]}")
    bus.attach(BusCalls())
    bus.publish("User", notice=NOTICE)
    bus.close()
    said = [r.getMessage() for r in caplog.records if "not announced" in r.getMessage()]
    assert said and "User" in said[0] and all("hunter2" not in text for text in said)
    assert bus.unsent("User") and not bus._send_lock.locked()


def test_what_the_bus_says_of_an_exception_never_holds_its_urls_passwords():
    """``_said`` (every log line and figure the bus writes about an exception): a password of the
    bus's URL, in its userinfo or a ``?password=`` option, as written or percent-decoded, is
    hidden wherever it appears in the message, with or without a URL around it."""
    bus = RedisBus("redis://user:s3cr%21t@127.0.0.1:1/0?password=q%26pass&db=0", "said")  # never started
    for text in ("AUTH failed: s3cr!t", "AUTH failed: s3cr%21t", "bad password q&pass", "bad password q%26pass",
                 "see redis://user:s3cr%21t@127.0.0.1:1/0?password=q%26pass"):
        said = bus._said(ValueError(text))
        assert said.startswith("ValueError: ")
        assert not any(secret in said for secret in ("s3cr!t", "s3cr%21t", "q&pass", "q%26pass")), said


def test_a_reconnecting_subscriber_never_waits_for_ever_for_the_publishing_connection(
        redis_server, redis_client, monkeypatch):
    """A subscriber that reconnects sends what is pending on the publishing connection first,
    behind any send under way; one held past every send's bounds (a thread that can no longer let
    it go) makes the reconnection fail, counted and tried again after the backoff, and once it is
    let go the subscriber reconnects: its thread never blocks for ever."""
    monkeypatch.setattr(redis_bus, "_HELD_FOR", 0.25)  # 0.5 s with the default timeout_s of 2 s
    bus, _ = open_bus(redis_server.url)
    try:
        thread, reconnects = bus._thread, bus.stats()["reconnects"]
        assert bus._send_lock.acquire(blocking=False)  # held, as by a thread that never lets it go
        try:
            redis_client.client_kill_filter(_type="pubsub")  # the subscriber's connection: it reconnects
            _poll(lambda: "held for over" in (bus.stats()["last_error"] or ""))
            assert not bus.connected and thread is not None and thread.is_alive()
        finally:
            bus._send_lock.release()
        _poll(lambda: bus.connected and bus.stats()["reconnects"] == reconnects + 1)
        assert bus._thread is thread
    finally:
        bus.close()


# --- 3. a reply already in the socket when the deadline has passed is read -----------------

class _Recorded:
    """A socket whose ``settimeout`` and ``recv`` calls are recorded."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.calls: list[tuple[Any, ...]] = []

    def settimeout(self, timeout: float | None) -> None:
        self.calls.append(("settimeout", timeout))
        self.sock.settimeout(timeout)

    def recv(self, size: int) -> bytes:
        self.calls.append(("recv",))
        data: bytes = self.sock.recv(size)
        return data

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


def _wire_on(sock: Any) -> _Wire:
    wire = _Wire.__new__(_Wire)
    wire._sock, wire._buffer, wire._timeout, wire._closed, wire.owed, wire._redis = sock, bytearray(), None, False, False, redis
    return wire


def test_a_reply_in_the_socket_past_the_deadline_is_read_without_waiting_and_none_there_is_late_at_once():
    mine, redis_end = socket.socketpair()
    try:
        sock = _Recorded(mine)
        wire = _wire_on(sock)
        wire.request(b"EVALSHA", b"sha", b"0")
        redis_end.sendall(b":1\r\n")  # the reply came in time
        assert wire.reply(time.monotonic() - 1.0) == 1 and wire.ready  # read after the deadline: not late
        assert sock.calls == [("settimeout", 0.0), ("recv",)]  # one read, with a timeout of 0
        wire.request(b"EVALSHA", b"sha", b"0")
        del sock.calls[:]
        assert wire.reply(time.monotonic() - 1.0) is _LATE and wire.owed  # nothing there: late, without waiting
        assert sock.calls == [("settimeout", 0.0), ("recv",)]
        redis_end.sendall(b":0\r")  # part of it, then the rest
        del sock.calls[:]
        assert wire.reply(time.monotonic() - 1.0) is _LATE and sock.calls == [("settimeout", 0.0), ("recv",)]
        redis_end.sendall(b"\n")
        del sock.calls[:]
        assert wire.reply(time.monotonic() + 60.0) == 0  # the next read has a timeout again: not left at 0
        assert sock.calls[0][0] == "settimeout" and sock.calls[0][1] > 0 and sock.calls[1:] == [("recv",)]
    finally:
        mine.close()
        redis_end.close()


def test_a_tls_read_with_nothing_to_give_past_the_deadline_is_late_not_a_broken_connection():
    class Tls:  # what an SSLSocket does with a timeout of 0 and no record to read
        def __init__(self) -> None:
            self.timeouts: list[float | None] = []

        def settimeout(self, timeout: float | None) -> None:
            self.timeouts.append(timeout)

        def sendall(self, data: bytes) -> None:
            pass

        def recv(self, size: int) -> bytes:
            raise ssl.SSLWantReadError("The operation did not complete (read)")

    sock = Tls()
    wire = _wire_on(sock)
    wire.request(b"EVALSHA", b"sha", b"0")
    assert wire.reply(time.monotonic() - 1.0) is _LATE and wire.owed and sock.timeouts == [0.0]


def test_a_reply_that_came_in_time_but_is_read_after_the_writes_deadline_is_not_late(redis_server, redis_client, monkeypatch):
    bus, _listener = open_bus(redis_server.url)
    try:
        bus.wait_s = 30.0
        wire = bus._publish_wire
        assert wire is not None
        me = threading.current_thread()
        skew = [0.0]
        real = time.monotonic
        monkeypatch.setattr(redis_bus, "time", types.SimpleNamespace(
            monotonic=lambda: real() + (skew[0] if threading.current_thread() is me else 0.0), time=time.time))

        def descheduled() -> None:  # in the writing thread, right after its send
            if threading.current_thread() is me:
                _poll(lambda: select.select([wire._sock], [], [], 0)[0])  # Redis's reply is in the socket
                skew[0] = 60.0  # and the writing thread runs again past its deadline

        sent = _sends(monkeypatch, redis_client, after=descheduled)
        wakes = count_wakes(bus)
        bus.publish("User", notice=NOTICE)
        assert not bus.unsent("User") and generation(redis_client, bus) == 2  # announced by the write itself
        assert bus.stats()["late"] == 0 and bus._handed is None and wakes == []  # not handed over: no wake-up
        assert sent == [(me.name, b"EVALSHA")] and bus.connected
    finally:
        bus.close()



def test_what_a_process_owes_when_it_exits_without_closing_is_announced_at_exit(redis_server, redis_client):
    """A script that ends (or a worker told to stop) without closing its Database: the writes
    it has not announced yet are sent by the exit handler, within the bus's bounds, so the other
    processes drop those entries now rather than at their TTL."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent.parent
    namespace = f"exit{uuid.uuid4().hex[:8]}"
    script = f"""
import sys
sys.path[:0] = [{str(tests)!r}, {str(tests.parent)!r}]
import redis
from bus_kit import NOTICE
from spies import BusCalls
from astro_db.cache.redis_bus import RedisBus

def held(self, wire, *, reconnect):  # the subscriber never subscribes: the write stays owed
    while not self._stop.wait(0.005):
        pass
    raise redis.ConnectionError("closed before subscribing")

RedisBus._subscribe = held
bus = RedisBus({redis_server.url!r}, {namespace!r})
listener = BusCalls()
bus.attach(listener)
bus.publish("User", notice=NOTICE)
assert bus.unsent("User") and not bus.connected
print("owed", flush=True)
"""  # and it ends without bus.close()
    probe = RedisBus(redis_server.url, namespace)  # never started: its channel and keys' names
    redis_client.sadd(probe.cached_key, "User")  # another process caches User
    heard = redis_client.pubsub()
    heard.subscribe(probe.channel)
    assert heard.get_message(timeout=1.0)["type"] == "subscribe"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "owed", done.stderr
    message = heard.get_message(timeout=5.0)
    assert message is not None and b'"m": "User"' in message["data"], message
    assert generation(redis_client, probe) == 1
    heard.close()

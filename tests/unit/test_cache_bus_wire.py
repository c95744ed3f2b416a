"""The Redis bus's own reading and sending: RESP frames parsed by the bus, every message received
in one wake-up delivered in order and checked like a lone one, the publish script sent on the
bus's own connection.

Must hold: a batch of messages is applied in the order received, the notices of one model merged
into one apply that drops at least what each would; a generation gap or an unreadable message
inside a batch drops everything at its place (what came before is applied first, what comes
after is applied after); this process's own messages count for the generations only; a frame
cut short waits for the rest; an error reply or an unexpected frame is refused. With a real
redis-server: messages that arrived while the subscriber was busy are delivered together in
its next wake-up; an idle subscriber blocks until its next health check (no polling);
``close()`` and a failed publish wake a blocking read at once; the publish script survives a
``SCRIPT FLUSH`` and a killed connection, and a publish that timed out is not sent again.
Driven by events and a held delivery, never a sleep.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from typing import Any

import pytest
from bus_kit import NOTICE
from spies import BusCalls
from spies import poll as _poll

from astro_db.cache.bus import Notice
from astro_db.cache.redis_bus import RedisBus, _Error, _frames, _message_heads


def _message(model: str, generation: int, ids: tuple[str, ...] | None = ("ab" * 16,), fields: tuple[str, ...] = ("name",),
             origin: str = "elsewhere", created: bool = False) -> bytes:
    body: dict[str, Any] = {"m": model, "o": origin, "t": 0}
    if ids is not None:
        body.update(i=list(ids), f=list(fields), c=created, d=False)
    body["g"] = generation
    return json.dumps(body).encode()


def _offline_bus() -> tuple[RedisBus, BusCalls]:
    bus = RedisBus("redis://localhost:1/0", "wire")  # never started: the delivery alone
    listener = BusCalls(detail=True)
    bus._listener = weakref.ref(listener)
    bus._keep = listener  # type: ignore[attr-defined]
    return bus, listener


# --- frames ----------------------------------------------------------------------------------

@pytest.mark.parametrize("short", [False, True], ids=["general", "message_path"])
def test_resp2_and_resp3_frames_are_read_and_a_frame_cut_short_waits_for_the_rest(short):
    wire = (b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"  # RESP3 push
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nbye\r\n"  # RESP2 array
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n"  # an empty message
            b">3\r\n$7\r\nmessage\r\n$2\r\nzz\r\n$1\r\nx\r\n"  # another channel: the general path
            b"*2\r\n$4\r\npong\r\n$3\r\nabc\r\n+PONG\r\n:1\r\n$3\r\nabc\r\n")
    options: tuple[Any, ...] = (_message_heads(b"ch"), b"ch") if short else ()
    frames, used = _frames(bytearray(wire), *options)
    assert used == len(wire)
    assert frames == [[b"message", b"ch", b"hello"], [b"message", b"ch", b"bye"], [b"message", b"ch", b""],
                      [b"message", b"zz", b"x"], [b"pong", b"abc"], b"PONG", 1, b"abc"]
    for cut in range(1, len(wire)):
        frames, used = _frames(bytearray(wire[:cut]), *options)
        assert used <= cut  # only whole frames are taken
        again, rest = _frames(bytearray(wire[used:]), *options)
        assert frames + again == _frames(bytearray(wire))[0] and used + rest == len(wire)


def test_a_malformed_message_on_the_short_path_is_refused_like_any_other():
    with pytest.raises(ValueError):
        _frames(bytearray(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabcd\r\n"), _message_heads(b"ch"), b"ch")


def test_an_error_reply_is_returned_as_one_and_an_unexpected_frame_is_refused():
    frames, _ = _frames(bytearray(b"-NOSCRIPT No matching script\r\n"))
    assert isinstance(frames[0], _Error) and frames[0].startswith(b"NOSCRIPT")
    for bad in (b"%1\r\n+a\r\n+b\r\n", b"*1\r\n*1\r\n:1\r\n", b"$3\r\nabcd\r\n", b"*x\r\n", b"?\r\n"):
        with pytest.raises(ValueError):
            _frames(bytearray(bad))


# --- batches ---------------------------------------------------------------------------------

def test_messages_received_together_are_applied_in_order_one_model_merged_into_one_apply():
    bus, listener = _offline_bus()
    bus._deliver_batch([_message("User", 1, ("01" * 16,), ("name",)), _message("Task", 1, None),
                        _message("User", 2, ("02" * 16,), ("email",), created=True)])
    assert listener.calls == [
        ("apply", "User", (bytes.fromhex("01" * 16), bytes.fromhex("02" * 16)), ("email", "name"), True, False),
        ("drop", "Task")]
    assert bus.figures.received == 3 and bus._generations == {"User": 2, "Task": 1}
    # a whole-model message merges into a drop of the model
    bus._deliver_batch([_message("User", 3), _message("User", 4, None), _message("User", 5)])
    assert listener.calls[2:] == [("drop", "User")]


def test_a_gap_inside_a_batch_drops_everything_at_its_place():
    bus, listener = _offline_bus()
    bus._deliver_batch([_message("User", 1, ("01" * 16,)), _message("User", 2, ("02" * 16,)),
                        _message("User", 4, ("04" * 16,)), _message("User", 5, ("05" * 16,))])
    first, second = (bytes.fromhex("01" * 16), bytes.fromhex("02" * 16)), (bytes.fromhex("05" * 16),)
    assert listener.calls == [("apply", "User", first, ("name",), False, False), ("drop_all", "generation gap"),
                              ("apply", "User", second, ("name",), False, False)]
    assert bus.figures.full_drops == 1


def test_an_unreadable_message_inside_a_batch_drops_everything_and_the_rest_is_applied():
    bus, listener = _offline_bus()
    bus._deliver_batch([_message("User", 1, ("01" * 16,)), b"not json", _message("User", 2, ("02" * 16,))])
    assert [call[0] for call in listener.calls] == ["apply", "drop_all", "apply"]
    assert listener.calls[1] == ("drop_all", "unreadable message") and bus.figures.errors == 1


def test_own_messages_count_for_the_generations_only():
    bus, listener = _offline_bus()
    bus._deliver_batch([_message("User", 1), _message("User", 2, origin=bus.origin), _message("User", 3, ("03" * 16,))])
    ids = tuple(sorted((bytes.fromhex("ab" * 16), bytes.fromhex("03" * 16))))
    assert listener.calls == [("apply", "User", ids, ("name",), False, False)]  # no gap: generation 2 was this process's own
    bus._deliver_batch([_message("User", 4, origin=bus.origin)])
    assert len(listener.calls) == 1 and bus._generations["User"] == 4


def test_a_repeated_or_older_generation_drops_everything_and_the_announcements_are_followed_from_it():
    """The publish script never sends a generation twice or one that goes back: such a message
    was published by someone else on the channel. Skipping it as "already applied" would let a
    forged generation far ahead make every real announcement after it look old."""
    bus, listener = _offline_bus()
    bus._deliver_batch([_message("User", 1, ("01" * 16,)), _message("User", 1, ("09" * 16,))])
    assert listener.calls == [("apply", "User", (bytes.fromhex("01" * 16),), ("name",), False, False),
                              ("drop_all", "generation back")]
    bus._deliver_batch([_message("User", 10**12, ("0a" * 16,)), _message("User", 2, ("02" * 16,)),
                        _message("User", 3, ("03" * 16,))])
    assert listener.calls[2:] == [("drop_all", "generation gap"), ("drop_all", "generation back"),
                                  ("apply", "User", (bytes.fromhex("03" * 16),), ("name",), False, False)]
    assert bus._generations["User"] == 3 and bus.figures.full_drops == 3


# --- with a real redis-server ------------------------------------------------------------------

def test_a_generation_forged_far_ahead_on_the_channel_never_hides_a_real_announcement(redis_server, redis_client):
    """Anyone who can publish on the channel sends ``User`` at generation 10^12 before a real
    write: the real announcement (generation 1) must still drop what the write changed."""
    namespace = f"forged{uuid.uuid4().hex[:8]}"
    reader, writer = RedisBus(redis_server.url, namespace), RedisBus(redis_server.url, namespace)
    listener, other = BusCalls(detail=True), BusCalls()
    try:
        reader.attach(listener)
        writer.attach(other)
        _poll(lambda: reader.connected and writer.connected)
        assert reader.watch("User") and writer.watch("User")
        del listener.calls[:]  # the drop on subscribing
        redis_client.publish(reader.channel, json.dumps({"m": "User", "g": 10**12, "o": "mallory", "t": 0}))
        # the subscriber counts a message before it acts on it: wait for the act, not the count
        _poll(lambda: reader.figures.received == 1 and len(listener.calls) >= 1)
        assert listener.calls == [("drop", "User")]  # a whole-model announcement, as it claims to be
        writer.publish("User", notice=NOTICE)
        _poll(lambda: reader.figures.received == 2 and len(listener.calls) >= 2)
        assert listener.calls[1:] == [("drop_all", "generation back")]
        writer.publish("User", notice=NOTICE)  # and the real ones are followed from there
        _poll(lambda: reader.figures.received == 3 and len(listener.calls) >= 3)
        assert listener.calls[2:] == [("apply", "User", tuple(sorted(NOTICE.ids)), ("name",), False, False)]
    finally:
        reader.close()
        writer.close()


def test_messages_that_arrived_while_the_subscriber_was_busy_are_delivered_in_one_wake_up(redis_server):
    import redis

    bus = RedisBus(redis_server.url, "drain")
    listener = BusCalls(detail=True)
    batches: list[list[bytes]] = []
    busy, go = threading.Event(), threading.Event()
    deliver = bus._deliver_batch

    def held(batch: list[bytes]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            busy.set()
            go.wait(30)  # the subscriber is busy with the first message
        deliver(batch)

    bus._deliver_batch = held  # type: ignore[method-assign]
    bus.attach(listener)
    client = redis.Redis.from_url(redis_server.url)
    try:
        _poll(lambda: bus.connected)
        client.publish(bus.channel, _message("Task", 1, None))
        assert busy.wait(30)
        for generation in range(1, 6):
            client.publish(bus.channel, _message("User", generation, (f"{generation:02d}" * 16,)))
        client.ping()  # Redis has written every message to the subscriber's socket before answering this
        go.set()
        _poll(lambda: bus.figures.received == 6 and len(listener.calls) >= 3)  # counted, then acted on
        assert [len(batch) for batch in batches] == [1, 5]
        ids = tuple(bytes.fromhex(f"{g:02d}" * 16) for g in range(1, 6))
        assert listener.calls == [("drop_all", "subscribed"), ("drop", "Task"), ("apply", "User", ids, ("name",), False, False)]
        assert bus.figures.full_drops == 0
    finally:
        go.set()
        client.close()
        bus.close()


def test_close_wakes_the_subscribers_blocking_read_at_once_and_says_nothing(redis_server, caplog):
    bus = RedisBus(redis_server.url, "close", health_check_s=600.0)  # its read would block ten minutes
    listener = BusCalls(detail=True)
    bus.attach(listener)
    _poll(lambda: bus.connected)
    thread = bus._thread
    assert thread is not None
    bus._timeout_s = 0.5  # close() joins for 3 x this: far less than the read's own timeout
    bus.close()
    assert not thread.is_alive()
    assert bus.figures.errors == 0 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_failed_publish_makes_the_subscriber_reconnect_at_once(redis_server):
    bus = RedisBus(redis_server.url, "doubt", health_check_s=600.0)  # its read would block ten minutes
    listener = BusCalls(detail=True)
    bus.attach(listener)
    try:
        _poll(lambda: bus.connected)
        bus._lose_trust("publish failed: a test")
        assert not bus.connected
        _poll(lambda: bus.connected and bus.figures.reconnects == 1, timeout_s=60)  # far less than the 600 s read
        assert ("drop_all", "reconnected") in listener.calls
    finally:
        bus.close()


def test_the_publish_script_survives_a_script_flush_and_a_killed_connection(redis_server):
    import redis

    bus = RedisBus(redis_server.url, "script")
    listener = BusCalls(detail=True)
    bus.attach(listener)
    client = redis.Redis.from_url(redis_server.url)
    try:
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        for generation in (1, 2, 3):
            if generation == 2:
                client.script_flush()  # Redis forgot the script: EVALSHA answers NOSCRIPT
            if generation == 3:
                client.client_kill_filter(_type="normal", skipme=True)  # the bus's publishing connection
            bus.publish("User", notice=Notice("User", frozenset({bytes(16)}), frozenset({"name"})))
            _poll(lambda generation=generation: int(client.get(bus.generation_prefix + "User") or 0) == generation)
        _poll(lambda: not bus.stats()["pending"])
        assert bus.stats()["sent"] == 3 and bus.figures.errors == 0
        assert bus.connected
    finally:
        client.close()
        bus.close()


def test_an_idle_subscriber_blocks_until_its_next_health_check_instead_of_polling(redis_server, monkeypatch):
    import redis

    from astro_db.cache import redis_bus

    bounds: list[tuple[bool, float]] = []  # (connected at the call, the read's timeout)
    read = redis_bus._Wire.read

    def spied(self: Any, timeout: float) -> list[Any]:
        bounds.append((bus._connected, timeout))
        return read(self, timeout)

    monkeypatch.setattr(redis_bus._Wire, "read", spied)
    bus = RedisBus(redis_server.url, "idle", health_check_s=30.0)
    listener = BusCalls(detail=True)
    bus.attach(listener)
    client = redis.Redis.from_url(redis_server.url)
    try:
        _poll(lambda: bus.connected)
        client.publish(bus.channel, _message("User", 1))
        _poll(lambda: bus.figures.received == 1)
    finally:
        client.close()
        bus.close()
    listening = [timeout for connected, timeout in bounds if connected]
    assert listening and all(timeout > 25.0 for timeout in listening)  # was 0.25 s: four wake-ups a second


def test_messages_in_the_same_read_as_the_subscribe_confirmation_are_delivered_after_it():
    class ScriptedWire:
        """A connection whose one read holds the confirmation and a message behind it."""

        closed = False

        def __init__(self) -> None:
            self.sent: list[tuple[bytes, ...]] = []

        def open(self) -> None:
            pass

        def send(self, *args: bytes) -> None:
            self.sent.append(args)

        def read(self, timeout: float) -> list[Any]:
            channel = bus.channel.encode()
            return [[b"subscribe", channel, 1], [b"message", channel, _message("User", 7, ("07" * 16,))]]

    bus, listener = _offline_bus()
    wire = ScriptedWire()
    early = bus._subscribe(wire, reconnect=False)  # type: ignore[arg-type]
    assert wire.sent == [(b"SUBSCRIBE", bus.channel.encode())] and bus._connected
    bus._stop.set()  # _listen delivers what it was handed, then sees the stop
    bus._listen(wire, early)  # type: ignore[arg-type]
    assert listener.calls == [("drop_all", "subscribed"),
                              ("apply", "User", (bytes.fromhex("07" * 16),), ("name",), False, False)]
    assert bus._generations == {"User": 7}


def test_a_publish_that_times_out_is_not_sent_again(redis_server, monkeypatch, caplog):
    from astro_db.cache import redis_bus

    calls: list[bytes] = []
    request = redis_bus._Wire.request  # every command the publishing connection sends

    def spied(self: Any, *args: bytes) -> Any:
        calls.append(args[0])
        return request(self, *args)

    monkeypatch.setattr(redis_bus._Wire, "request", spied)
    bus = RedisBus(redis_server.url, "timeout", timeout_s=0.2, wait_s=0.0)  # a call waits 0.4 s for its answer
    listener = BusCalls(detail=True)
    bus.attach(listener)
    notice = Notice("User", frozenset({bytes(16)}), frozenset({"name"}))
    try:
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        bus.publish("User", notice=notice)
        _poll(lambda: bus.stats()["sent"] == 1)  # the publishing connection is open
        assert calls == [b"EVALSHA", b"EVAL"]  # a fresh Redis does not know the script yet
        redis_server.freeze()
        bus.publish("User", notice=notice)
        _poll(lambda: any("could not publish writes (TimeoutError" in r.getMessage() for r in caplog.records))
        assert calls[2:] == [b"EVALSHA"]  # once: a frozen Redis is not asked twice (the old client retried)
        assert bus.unsent("User") and not bus.connected  # owed, and caching is off until Redis is back
    finally:
        redis_server.thaw()
        bus.close()


# --- what a write and a read cost the bus (issue 27: the cache under the web mix) -------------

def test_the_publishers_signal_wakes_its_waiter_once_per_set_and_absorbs_repeats():
    from astro_db.cache.redis_bus import _Signal

    signal = _Signal()
    assert not signal.wait(0.001) and not signal.is_set()  # nothing set: the bounded wait gives up
    signal.set()
    signal.set()  # a second set before the waiter runs: one wake-up, no error
    assert signal.is_set() and signal.wait(None)  # pending: no blocking
    assert not signal.is_set() and not signal.wait(0.001)  # consumed by the wait
    signal.set()
    signal.clear()
    assert not signal.wait(0.001)
    signal.clear()  # clearing a clear signal changes nothing
    assert not signal.wait(0.001)
    woken = threading.Event()
    entered = threading.Event()

    def waiter() -> None:
        entered.set()
        if signal.wait(None):  # blocks until the set below
            woken.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert entered.wait(30)
    signal.set()
    thread.join(30)
    assert woken.is_set() and not thread.is_alive()


def test_an_idle_publisher_thread_sleeps_until_a_write_with_no_periodic_wake_up(redis_server):
    bounds: list[float | None] = []

    class Recorded:
        """The bus's wake-up, recording the bound of every wait the publisher thread makes."""

        def __init__(self, wake: Any) -> None:
            self._wake = wake

        def wait(self, timeout: float | None = None) -> bool:
            bounds.append(timeout)
            return bool(self._wake.wait(timeout))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._wake, name)

    bus = RedisBus(redis_server.url, "quiet", health_check_s=0.05)  # the old loop woke every health check
    bus._wake = Recorded(bus._wake)  # type: ignore[assignment]
    listener = BusCalls(detail=True)
    bus.attach(listener)
    try:
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        for n in range(3):
            bus.publish("User", notice=Notice("User", frozenset({bytes([n]) * 16}), frozenset({"name"})))
            _poll(lambda n=n: bus.stats()["sent"] == n + 1)
    finally:
        bus.close()
    assert bounds and all(timeout is None for timeout in bounds)  # was the health check's 1 s: a wake-up a second


def test_a_cached_read_and_a_write_make_no_getpid_call_of_the_bus_and_a_fork_is_still_seen(redis_server, monkeypatch):
    import os
    import types

    from astro_db import Database
    from astro_db.cache import redis_bus

    calls: list[str] = []
    spy = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    spy.getpid = lambda: (calls.append(threading.current_thread().name), os.getpid())[1]
    db = Database("mongomock://localhost/getpid", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    try:
        _poll(lambda: db.executor.runtime.cache.trusted)
        user = db.create("User", {"email": "pid@example.com", "name": "P"})
        db.find_one("User", {"id": user.id})  # stored
        monkeypatch.setattr(redis_bus, "os", spy)
        mine = threading.current_thread().name
        for _ in range(20):
            assert db.find_one("User", {"id": user.id}).name == "P"  # hits: the bus's connected looked at each time
        db.update("User", {"id": user.id}, {"name": "Q"})
        assert [name for name in calls if name == mine] == []  # was one getpid per look: 40 and more
        assert db.executor.runtime.cache.stats()["hits"] == 20
        bus = db.executor.runtime.cache.bus
        monkeypatch.setattr(redis_bus, "_FORKS", [redis_bus._FORKS[0] + 1])  # what a fork's child hook does
        monkeypatch.setattr(bus, "_after_fork", lambda: calls.append("after_fork"))
        _ = bus.connected
        assert calls[-1] == "after_fork"
    finally:
        monkeypatch.undo()
        db.disconnect()


def test_the_publish_scripts_fixed_arguments_are_made_once_per_model(redis_server, monkeypatch):
    import redis

    from astro_db.cache import redis_bus

    made: list[str] = []
    keys = redis_bus.dependency_keys
    monkeypatch.setattr(redis_bus, "dependency_keys", lambda prefix, model: (made.append(model), keys(prefix, model))[1])
    bus = RedisBus(redis_server.url, "args")
    listener = BusCalls(detail=True)  # held: the bus holds it weakly
    bus.attach(listener)
    client = redis.Redis.from_url(redis_server.url)
    try:
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        for n in range(1, 4):
            for model in ("User", "PlanetaryInsight"):
                bus.publish(model, notice=Notice(model, frozenset({bytes([n]) * 16}), frozenset({"name"})))
                _poll(lambda model=model, n=n: int(client.get(bus.generation_prefix + model) or 0) == n)
        assert sorted(made) == ["PlanetaryInsight", "User"]  # was one per write: 6
        assert bus.stats()["sent"] == 3 and bus.figures.unannounced == 3  # the script did the same work
    finally:
        client.close()
        bus.close()

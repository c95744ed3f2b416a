"""Test doubles shared by the suites: a command spy for the driver, an update spy on a model's
collection handle, a collection whose first write loses its reply, and a hand-driven clock."""

from __future__ import annotations

import cProfile
import functools
import gc
import pstats
from collections.abc import Callable
from typing import Any

from pymongo import errors as pm
from pymongo import monitoring


class CommandSpy(monitoring.CommandListener):
    """Records the commands PyMongo starts (only ``names`` when given, none of ``skip``), for
    ``event_listeners=``."""

    def __init__(self, *names: str, skip: tuple[str, ...] = ()) -> None:
        self.wanted = set(names)
        self.skip = frozenset(skip)
        self.commands: list[dict] = []
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if (not self.wanted or name in self.wanted) and name not in self.skip:
            self.names.append(name)
            self.commands.append(dict(event.command))

    @property
    def sent(self) -> list[tuple[str, str]]:
        """(command name, its target: the collection for a CRUD command) of each recorded one."""
        return [(name, str(command.get(name))) for name, command in zip(self.names, self.commands)]

    def clear(self) -> None:
        self.names.clear()
        self.commands.clear()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class UpdateSpy:
    """A model's collection handle, recording each single update it sends: ``"update"`` for an
    ``update_one`` (an ``update`` command), ``("findAndModify", projection)`` for a
    ``find_one_and_update``. ``before_update`` runs just before the real ``update_one`` (another
    caller's turn); ``lose`` replies are lost after the write landed (a dropped connection)."""

    def __init__(self, real: Any, lose: int = 0, before_update: Callable[[], None] | None = None) -> None:
        self.real, self.lose, self.before_update = real, lose, before_update
        self.sent: list[Any] = []

    @property
    def projections(self) -> list[Any]:
        """The projection of each ``find_one_and_update``."""
        return [sent[1] for sent in self.sent if sent != "update"]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name not in ("find_one_and_update", "update_one"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "update_one":
                self.sent.append("update")
                if self.before_update is not None:
                    self.before_update()
            else:
                self.sent.append(("findAndModify", kwargs.get("projection")))
            result = attr(*args, **kwargs)
            if self.lose:
                self.lose -= 1
                raise pm.AutoReconnect("connection lost after the server applied the write")
            return result

        return call


def spy_updates(db: Any, model: str, **kwargs: Any) -> UpdateSpy:
    """``db``'s handle of ``model``'s collection replaced by an ``UpdateSpy`` of it (in the
    gateway, which every call of the service takes it from)."""
    rt = db.executor.runtime
    info = rt.registry.resolve(model)
    wrapped = UpdateSpy(rt.coll(info), **kwargs)
    rt.gateway.collections[info.collection] = wrapped
    return wrapped


class LostReply:
    """A model's collection whose first ``method`` call (``bulk_write`` unless told) is applied
    and then loses its reply (``AutoReconnect``); everything else is the real collection's.
    ``calls``: the calls of ``method`` seen."""

    def __init__(self, real: Any, method: str = "bulk_write") -> None:
        self.real, self.method, self.calls = real, method, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            result = attr(*args, **kwargs)
            if self.calls == 1:
                raise pm.AutoReconnect("connection lost after the server applied the write")
            return result

        return call


def lose_first_reply(db: Any, model: str, method: str = "bulk_write") -> LostReply:
    """``model``'s collection in ``db`` replaced by a ``LostReply`` of it."""
    rt = db.executor.runtime
    info = rt.registry.resolve(model)
    fake = LostReply(rt.coll(info), method)
    rt.gateway.collections[info.collection] = fake
    return fake


class BulkCommandFault:
    """Set on ``Gateway.bulk_write_command`` (the one driver call of a whole ``bulkWrite``,
    ``monkeypatch.setattr(gateway.Gateway, "bulk_write_command", fault)``): its first call runs
    the command's first ``keep`` operations (all of them when ``None``) on the server for real,
    then ``after()`` (e.g. the server is killed), then gives ``error(ops)`` instead of the reply:
    raised when it is an exception, else answered as the server's reply. Later calls go through.
    ``calls``: every call; ``fired``: whether the fault was given."""

    def __init__(self, error: Any, keep: int | None = None, after: Callable[[], Any] = lambda: None) -> None:
        from astro_db.driver import gateway

        self.real, self.error, self.keep, self.after = gateway.Gateway.bulk_write_command, error, keep, after
        self.calls = self.fired = 0

    def __get__(self, handle: Any, owner: Any = None) -> Any:  # set on the class: a method of each handle
        return functools.partial(self, handle) if handle is not None else self

    def __call__(self, handle: Any, command: dict[str, Any], session: Any = None) -> Any:
        self.calls += 1
        if self.fired:
            return self.real(handle, command, session)
        self.fired += 1
        ops = command["ops"]
        ran = ops if self.keep is None else ops[:self.keep]
        if ran:
            self.real(handle, {**command, "ops": ran}, session)
        self.after()
        answer = self.error(ops)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Clock:
    """A monotonic clock the test moves by hand (``clock.now += 5``): no sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll(check: Any, timeout_s: float = 30.0) -> Any:
    """``check()``'s first true value, asked every 5 ms; an AssertionError after ``timeout_s``
    (a condition another thread or process brings about, awaited with a bound)."""
    import threading
    import time

    deadline, pause = time.monotonic() + timeout_s, threading.Event()
    while not (value := check()):
        assert time.monotonic() < deadline, "condition never held"
        pause.wait(0.005)
    return value


class LatePublishes:
    """Holds a Redis bus's announcements until ``announce()``.

    Every write then returns unannounced, as under load when Redis's answer to the writing
    thread's own send does not come within the bus's ``wait_s`` (20 ms) and the publisher
    thread, which finishes it, is not scheduled for a while: the write leaves its announcement
    to the publisher thread at once, whose sends are held. Its process neither reads nor fills
    the shared store for the model until the announcement is sent. A test that reads right
    after a write without ``announce()`` fails every time instead of now and then."""

    def __init__(self, bus: Any) -> None:
        import threading

        self.bus = bus
        self._open = threading.Event()
        send = bus._send
        bus._publish_now = lambda model, number, deadline: bus._wake.set()  # the write's own send is late

        def held(model: str, notice: Any = None) -> None:
            if threading.current_thread().name.startswith("astro_db-cache-publish-"):
                self._open.wait(120)  # a hang guard only: announce() or release() lets it through
            send(model, notice)

        bus._send = held

    def announce(self) -> None:
        """Send what is held, wait until nothing is owed, then hold the next ones again."""
        self._open.set()
        poll(lambda: not self.bus.stats()["pending"])
        self._open.clear()

    def release(self) -> None:
        """Stop holding (before ``disconnect()``: the publisher thread must not be held)."""
        self._open.set()


_HELD: Any = None  # weakref.WeakKeyDictionary[Database, LatePublishes], made on first use


def hold_announcements(db: Any) -> Any:
    """``db`` with its bus's announcements held (``LatePublishes``) until ``announce(db)``."""
    import weakref

    global _HELD
    if _HELD is None:
        _HELD = weakref.WeakKeyDictionary()
    _HELD[db] = LatePublishes(db.executor.runtime.cache.bus)
    return db


def announce(*dbs: Any) -> None:
    """Until each one's writes are announced (its generations advanced): a Database from
    ``hold_announcements`` holds its announcements until then, as a loaded machine may."""
    for db in dbs:
        _HELD[db].announce()


def release_and_close(*dbs: Any) -> None:
    """Stop holding each one's announcements, then disconnect it."""
    for db in dbs:
        _HELD[db].release()
        db.disconnect()


def calls_in(fn: Callable[[], Any]) -> tuple[int, Any]:
    """cProfile's count of the function calls (C functions included) ``fn()`` makes, and its
    result. The cyclic garbage collector is held off meanwhile (after a collection): a collection
    inside the count runs finalizers of other tests' garbage (``__del__``, weakref callbacks),
    whose calls are not ``fn``'s and made such budgets fail now and then in a shared worker."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        try:
            result = fn()
        finally:
            profiler.disable()
    finally:
        if enabled:
            gc.enable()
    return pstats.Stats(profiler).total_calls, result  # type: ignore[attr-defined]


class BusCalls:
    """A cache as a bus sees it (``CacheListener``): records what the bus asks of it, ``("drop",
    model)``, ``("apply", model)`` (with ``detail``: the notice's ids, fields, created and deleted
    too) and ``("drop_all", reason)``."""

    def __init__(self, detail: bool = False) -> None:
        self.detail = detail
        self.calls: list[tuple[Any, ...]] = []

    def drop(self, model: str) -> int:
        self.calls.append(("drop", model))
        return 0

    def apply(self, notice: Any) -> int:
        if self.detail:
            self.calls.append(("apply", notice.model, tuple(sorted(notice.ids or ())), tuple(sorted(notice.fields)),
                               notice.created, notice.deleted))
        else:
            self.calls.append(("apply", notice.model))
        return 0

    def drop_all(self, reason: str) -> int:
        self.calls.append(("drop_all", reason))
        return 0

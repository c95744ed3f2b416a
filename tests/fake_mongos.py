"""A fake mongos: just enough of the MongoDB wire protocol to see what PyMongo sends a router.

PyMongo sends ``$readPreference`` only where it can matter: to a mongos (or a replica-set
member). To a standalone server (nx-27017, a lone mongod) it sends nothing. This in-process
server answers the handshake as a mongos (``msg: "isdbgrid"``), answers every read with an
empty cursor and records each command document it receives, so tests can assert the routing
that reached the wire without a real sharded cluster.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Any

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HELLO = {
    "ismaster": True, "isWritablePrimary": True, "helloOk": True, "msg": "isdbgrid",
    "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
    "localTime": None, "logicalSessionTimeoutMinutes": 30, "connectionId": 1,
    "minWireVersion": 0, "maxWireVersion": 21, "ok": 1.0,
}


class FakeMongos:
    """``with FakeMongos() as server: server.url("db")``; ``server.commands`` lists what arrived."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._down = False
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeMongos:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._down:
            self._server.shutdown()
            self._server.server_close()

    def down(self) -> None:
        """Go away: stop listening (a connection is refused) and drop every open connection."""
        self._down = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, dbname: str) -> str:
        host, port = self._server.server_address
        return f"mongodb://{host}:{port}/{dbname}"

    def clear(self) -> None:
        with self._lock:
            self.commands.clear()

    def reads(self) -> list[dict[str, Any]]:
        """The read commands received (find, aggregate, count), oldest first."""
        with self._lock:
            return [c for c in self.commands if next(iter(c)) in ("find", "aggregate", "count")]

    # --- protocol -------------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            if self._down:
                return
            self._sockets.append(sock)
        try:
            while True:
                header = _recv(sock, 16)
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                body = _recv(sock, length - 16)
                if opcode == OP_QUERY:
                    sock.sendall(_op_reply(request_id, self._answer(_query_doc(body))))
                elif opcode == OP_MSG:
                    sock.sendall(_op_msg(request_id, self._answer(_msg_doc(body))))
                else:
                    return
        except (ConnectionError, OSError):
            return

    def _answer(self, command: dict[str, Any]) -> dict[str, Any]:
        name = next(iter(command))
        if name.lower() in ("hello", "ismaster"):
            return HELLO
        with self._lock:
            self.commands.append(command)
        if name in ("find", "aggregate"):
            target = command[name] if isinstance(command[name], str) else "$cmd.aggregate"
            return {"cursor": {"id": bson.int64.Int64(0), "ns": f"{command.get('$db', 'test')}.{target}", "firstBatch": []}, "ok": 1.0}
        if name == "count":
            return {"n": 0, "ok": 1.0}
        return {"ok": 1.0}


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def _query_doc(body: bytes) -> dict[str, Any]:
    """The command document of an OP_QUERY (the legacy handshake)."""
    end = body.index(b"\x00", 4)  # flags, then the cstring collection name
    offset = end + 1 + 8  # numberToSkip, numberToReturn
    size = struct.unpack("<i", body[offset:offset + 4])[0]
    return bson.decode(body[offset:offset + size])


def _msg_doc(body: bytes) -> dict[str, Any]:
    """The command of an OP_MSG: the kind-0 body with kind-1 document sequences folded in."""
    flags = struct.unpack("<I", body[:4])[0]
    end = len(body) - (4 if flags & 1 else 0)
    offset, doc, sequences = 4, None, {}
    while offset < end:
        kind = body[offset]
        offset += 1
        size = struct.unpack("<i", body[offset:offset + 4])[0]
        if kind == 0:
            doc = bson.decode(body[offset:offset + size])
        else:
            section = body[offset + 4:offset + size]
            ident, _, docs = section.partition(b"\x00")
            sequences[ident.decode()] = bson.decode_all(docs)
        offset += size
    doc = dict(doc or {})
    doc.update(sequences)
    return doc


def _op_reply(response_to: int, doc: dict[str, Any]) -> bytes:
    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(_dated(doc))
    return struct.pack("<iiii", 16 + len(payload), 0, response_to, OP_REPLY) + payload


def _op_msg(response_to: int, doc: dict[str, Any]) -> bytes:
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(_dated(doc))
    return struct.pack("<iiii", 16 + len(payload), 0, response_to, OP_MSG) + payload


def _dated(doc: dict[str, Any]) -> dict[str, Any]:
    if "localTime" in doc:
        import datetime as dt

        doc = {**doc, "localTime": dt.datetime.now(dt.timezone.utc)}
    return doc

"""Streams of raw BSON documents in gzip files, with checksums and content hashes.

A data file is the gzip of concatenated BSON documents, exactly as the server returned them, so
dumping decodes nothing per document and memory stays flat. Writing records the file's SHA-256
(of the compressed bytes on disk), its document count and an order-independent content hash:
the sum modulo 2**256 of the SHA-256 of each document's BSON, so two collections holding the
same documents in any order hash alike.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from ..errors import BackupIntegrityError
from ..ids import BSON_CODEC

__all__ = ["RAW", "ContentHash", "BsonWriter", "iter_raw", "raw_bytes", "file_sha256"]

RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True, uuid_representation=BSON_CODEC.uuid_representation)
"""Codec options that make PyMongo hand back undecoded documents."""

_MOD = 2**256
_LEN = struct.Struct("<i")
_MAX_DOC = 48 * 1024 * 1024  # a BSON document is at most 16 MiB; be generous, catch garbage


class ContentHash:
    """Order-independent hash of a set of BSON documents (and how many there were)."""

    def __init__(self) -> None:
        self._total = 0
        self.count = 0

    def add(self, raw: bytes) -> None:
        self._total = (self._total + int.from_bytes(hashlib.sha256(raw).digest(), "big")) % _MOD
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self._total:064x}"

    @classmethod
    def of(cls, docs: Iterable[Any]) -> ContentHash:
        h = cls()
        for doc in docs:
            h.add(raw_bytes(doc))
        return h


def raw_bytes(doc: Any) -> bytes:
    """The BSON bytes of a document: as-is for ``RawBSONDocument``, encoded for a dict
    (the embedded backend ignores ``document_class``)."""
    if isinstance(doc, RawBSONDocument):
        return cast(bytes, doc.raw)  # the driver and our readers build them from bytes
    if isinstance(doc, (bytes, bytearray)):
        return bytes(doc)
    return bson.encode(doc, codec_options=BSON_CODEC)


class _HashingFile:
    """A write-only file wrapper that hashes what passes through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


class BsonWriter:
    """Write documents to ``path`` as gzipped BSON: ``with BsonWriter(p) as w: w.write(doc)``.

    After closing: ``count``, ``content`` (a ``ContentHash``), ``sha256`` and ``size`` (bytes
    on disk)."""

    def __init__(self, path: str | os.PathLike[str], *, level: int = 3) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "wb")
        self._hashing = _HashingFile(self._fh)
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._hashing, compresslevel=level, mtime=0)
        self.content = ContentHash()
        self.sha256 = ""
        self.size = 0

    @property
    def count(self) -> int:
        return self.content.count

    def write(self, doc: Any) -> None:
        raw = raw_bytes(doc)
        self._gz.write(raw)
        self.content.add(raw)

    def close(self) -> None:
        if self._gz.closed:
            return
        self._gz.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.sha256 = self._hashing.sha.hexdigest()
        self.size = self._hashing.size

    def __enter__(self) -> BsonWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def summary(self, root: Path) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.size, "documents": self.count, "path": self.path.relative_to(root).as_posix()}


def iter_raw(path: str | os.PathLike[str], *, shown: str | None = None) -> Iterator[bytes]:
    """Yield each document's BSON bytes from a gzipped BSON file; a damaged file raises
    ``BackupIntegrityError`` naming it."""
    name = shown or str(path)
    try:
        with gzip.open(path, "rb") as gz:
            while True:
                head = gz.read(4)
                if not head:
                    return
                if len(head) < 4:
                    raise BackupIntegrityError(f"{name}: truncated (a document's length is cut off)", path=name)
                (length,) = _LEN.unpack(head)
                if length < 5 or length > _MAX_DOC:
                    raise BackupIntegrityError(f"{name}: not BSON (a document claims {length} bytes)", path=name)
                body = gz.read(length - 4)
                if len(body) != length - 4 or body[-1:] != b"\x00":
                    raise BackupIntegrityError(f"{name}: truncated inside a document", path=name)
                yield head + body
    except FileNotFoundError as exc:
        raise BackupIntegrityError(f"{name}: missing", path=name) from exc
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise BackupIntegrityError(f"{name}: damaged gzip stream ({exc})", path=name) from exc


def file_sha256(path: str | os.PathLike[str]) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()

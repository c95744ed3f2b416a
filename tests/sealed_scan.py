"""What a copy of the data gives away: raw BSON text, and what its ciphertext opens to with the keys.

``raw_text`` is what a disk, a dump or a backup file shows to anyone (BSON decoded loosely).
``opened_text`` adds, for every field level encryption ciphertext (BSON Binary subtype 6) found
anywhere, the value it opens to under a ``Database``'s key vault and master keys, the binding to
its document not checked: what someone holding the application's keys can read of that copy. A
value whose data key is gone (shredded) opens to nothing. Used by the erasure tests of both tiers.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import bson
from bson.binary import Binary
from bson.raw_bson import RawBSONDocument

__all__ = ["raw_documents", "raw_text", "opened_text", "backup_documents", "sealed_values"]


def raw_documents(db: Any) -> Iterator[bytes]:
    """Every document of every collection of ``db``'s database, as the server's BSON bytes."""
    options = bson.CodecOptions(document_class=RawBSONDocument)
    for name in db.mongo.list_collection_names():
        for raw in db.mongo.get_collection(name, codec_options=options).find():
            # the server's bytes; the embedded backend hands out dicts whatever the codec options
            yield bytes(raw.raw) if isinstance(raw, RawBSONDocument) else bson.encode(raw)


def backup_documents(set_dir: Path) -> Iterator[bytes]:
    """Every document of every data file (``*.bson.gz``) of one backup set, as stored."""
    for path in sorted(set_dir.glob("*.bson.gz")):
        with gzip.open(path, "rb") as fh:
            data = fh.read()
        at = 0
        while at < len(data):
            size = int.from_bytes(data[at:at + 4], "little")
            yield data[at:at + size]
            at += size


def raw_text(documents: Iterable[bytes]) -> str:
    return "\n".join(doc.decode("utf-8", "replace") for doc in documents)


def sealed_values(value: Any) -> Iterator[Binary]:
    """Every Binary subtype 6 inside a decoded document (through dicts and lists, and the
    post-images a packed change record holds as BSON bytes: ``changes.records``)."""
    if isinstance(value, Binary) and value.subtype == 6:
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from sealed_values(item)
        if isinstance(value.get("documentId"), list) and isinstance(value.get("docs"), bytes):
            for image in bson.decode_all(bytes(value["docs"])):  # a packed change record's post-images
                yield from sealed_values(image)
    elif isinstance(value, list):
        for item in value:
            yield from sealed_values(item)


def opened_text(db: Any, documents: Iterable[bytes]) -> str:
    """The raw text of ``documents`` plus what each of their ciphertexts opens to under ``db``'s
    keys (nothing for one whose data key is gone). Also returns how many did not open, last line."""
    vault = db.executor.runtime.crypto.vault
    assert vault is not None, "needs field level encryption (a key configured)"
    docs = list(documents)
    out = [raw_text(docs)]
    closed = 0
    for raw in docs:
        for value in sealed_values(bson.decode(raw)):
            try:
                opened = vault._encrypter().decrypt(bson.encode({"v": value}))
            except Exception:  # its data key is not in the vault (shredded), or it is not ours
                closed += 1
                continue
            out.append(repr(bson.decode(opened)["v"]))
    out.append(f"closed={closed}")
    return "\n".join(out)

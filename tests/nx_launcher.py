"""Start the nx-27017 MongoDB wire-protocol server with its ObjectId bugs (and one more) patched.

Usage: python tests/nx_launcher.py <nx-27017 arguments...>

The live test tier (DESIGN.md §4) runs against nx-27017 (SQLite-backed, pure
Python) when no real MongoDB is configured. Pinned: nx-27017==0.8.1,
neosqlite==1.17.2. Both have an ObjectId bug that silently makes the package's
main query, ``{"userId": ObjectId(...)}``, match nothing. This script patches
both at start-up and then hands over to nx-27017's own ``main()`` (which parses
sys.argv). ``tests/live/nxserver.py:self_check`` verifies at session start that
the patches still work, so a version change fails loudly rather than silently.

The patches change nothing in the library under test: the server behaves more
like MongoDB, and the library keeps coding for MongoDB.
"""

from __future__ import annotations

from typing import Any

# --------------------------------------------------------------------------
# Bug 1 (neosqlite): equality on a non-_id field with an ObjectId matches nothing.
#
# normalize_id_query_for_db (collection/type_correction.py) turns every
# ObjectId in a query into its hex string. The two SQL WHERE builders then
# compare json_extract(data, '$.field') with that string, but an ObjectId
# field is stored as {"__neosqlite_objectid__": true, "id": "<hex>"}, so
# nothing matches (find, $match, count, update, delete).
#
# Fix: (a) keep ObjectIds as ObjectIds everywhere except under "_id"/"id",
# where the original conversion is right (the _id column holds the hex
# string); (b) make both SQL builders return "no SQL for this" when a non-_id
# condition holds an ObjectId, so neosqlite falls back to its Python matcher,
# which compares ObjectIds correctly (including array containment, $in, $eq,
# $ne). The SQL operator translator already falls back for ObjectId operands.
# --------------------------------------------------------------------------
import neosqlite.collection.query_helper as _qh_pkg
import neosqlite.collection.query_helper._sql_query_builder as _sqb
import neosqlite.collection.sql_translator_unified as _sqlu
import neosqlite.collection.type_correction as _tc
from neosqlite.objectid import ObjectId as _NeoObjectId

_orig_normalize = _tc.normalize_id_query_for_db


def _keep_oids(value: Any) -> Any:
    if isinstance(value, dict):
        return _normalize_id_query_for_db(value)
    if isinstance(value, list):
        return [_keep_oids(item) for item in value]
    return value


def _normalize_id_query_for_db(query: Any) -> Any:
    """Original behaviour under "_id"/"id"; ObjectIds kept everywhere else."""
    if not isinstance(query, dict):
        return query
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key in ("_id", "id"):
            out.update(_orig_normalize({key: value}))  # may rename id -> _id
        else:
            out[key] = _keep_oids(value)
    return out


# Modules that did `from ..type_correction import normalize_id_query_for_db`
# hold their own reference: patch each of them, not just the origin.
# (neosqlite.gridfs.gridfs_bucket also imports it; GridFS filtering uses its own
# code path, so it keeps the original.)
for _mod in (_tc, _qh_pkg, _sqb):
    assert hasattr(_mod, "normalize_id_query_for_db"), _mod.__name__
    _mod.normalize_id_query_for_db = _normalize_id_query_for_db


def _has_oid(value: Any) -> bool:
    if isinstance(value, _NeoObjectId):
        return True
    if isinstance(value, dict):
        return any(_has_oid(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_oid(v) for v in value)
    return False


# SqlQueryBuilderMixin._build_field_clause(field, value): None = use Python.
_orig_build_field_clause = _sqb.SqlQueryBuilderMixin._build_field_clause


def _build_field_clause(self: Any, field: str, value: Any) -> Any:
    if field != "_id" and _has_oid(value):
        return None
    return _orig_build_field_clause(self, field, value)


_sqb.SqlQueryBuilderMixin._build_field_clause = _build_field_clause

# SQLClauseBuilder.build_where_clause(query, ...): (None, []) = use Python.
# $and/$or/$nor/$not recurse through self.build_where_clause, i.e. this wrapper.
_orig_build_where_clause = _sqlu.SQLClauseBuilder.build_where_clause


def _build_where_clause(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(query, dict) and any(
        not k.startswith("$") and k != "_id" and _has_oid(v)
        for k, v in query.items()
    ):
        return None, []
    return _orig_build_where_clause(self, query, *args, **kwargs)


_sqlu.SQLClauseBuilder.build_where_clause = _build_where_clause

# Knock-on: QueryMethodsMixin.distinct (collection/query_engine/query_methods.py)
# has no Python fallback; when its filter cannot be translated to SQL it
# silently drops the filter. With the fallback above that would turn
# distinct(key, {"userId": oid}) into "all values". So for such filters, find
# the matching _ids with the Python matcher and let the original distinct run
# on {"_id": {"$in": ids}}, which is pure SQL (and keeps its value semantics).
import neosqlite.collection.query_engine.query_methods as _qm  # noqa: E402

_orig_distinct = _qm.QueryMethodsMixin.distinct


def _hex_if_oid(value: Any) -> Any:
    return str(value) if isinstance(value, _NeoObjectId) else value


def _distinct(self: Any, key: str, filter: Any = None, session: Any = None) -> Any:
    if filter:
        normalized = self.helpers._normalize_id_query(filter)
        if self.sql_translator.translate_match(normalized)[0] is None:
            docs = self.find(normalized, session=session)
            # ObjectId _ids as hex: the _id column stores them that way, and
            # {"_id": {"$in": [ObjectId]}} would itself need the Python matcher.
            ids = [_hex_if_oid(doc["_id"]) for doc in docs]
            if not ids:  # {"$in": []} would also be dropped as "no filter"
                return []
            filter = {"_id": {"$in": ids}}
    return _orig_distinct(self, key, filter, session=session)


_qm.QueryMethodsMixin.distinct = _distinct

# --------------------------------------------------------------------------
# Bug 2 (nx-27017): count, distinct and aggregate pass bson.ObjectId through.
#
# NeoSQLiteHandler.handle_command converts PyMongo's bson.ObjectId into
# neosqlite's ObjectId (nx_27017.utils.convert_bson_to_neo_objectids) for
# find/update/delete/findAndModify/bulkWrite, but not for the "query" of
# count and distinct or the "pipeline" of aggregate (handler.py ~1570-1660),
# so neosqlite never sees an ObjectId it recognises there: count_documents
# with any ObjectId, even on _id, returns 0.
#
# Fix: wrap handle_command (the OP_MSG dispatch; the legacy OP_QUERY path
# handle_query calls it too) to convert those fields of the command body
# before the original runs.
# --------------------------------------------------------------------------
from nx_27017.handler import NeoSQLiteHandler  # noqa: E402
from nx_27017.utils import convert_bson_to_neo_objectids  # noqa: E402

_UNCONVERTED = {"count": "query", "distinct": "query", "aggregate": "pipeline"}
_orig_handle_command = NeoSQLiteHandler.handle_command


def _convert_body(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    if "insert" in doc and isinstance(doc.get("readConcern"), dict):
        # Bug 3 (nx-27017): handle_insert inserts every dict-valued key of the command body
        # it does not know as a document; the first insert of a transaction carries
        # readConcern, which would be stored as {"level": "majority"}. nx-27017 has no read
        # concerns, so dropping the key changes nothing else.
        doc = {k: v for k, v in doc.items() if k != "readConcern"}
    fields = [f for cmd, f in _UNCONVERTED.items() if cmd in doc and f in doc]
    if not fields:
        return doc
    doc = dict(doc)
    for field in fields:
        doc[field] = convert_bson_to_neo_objectids(doc[field])
    return doc


def _with_converted_sections(msg: Any) -> Any:
    if isinstance(msg, dict) and "sections" in msg:
        msg = dict(msg)
        msg["sections"] = [
            (kind, _convert_body(doc) if kind == "body" else doc)
            for kind, doc in msg["sections"]
        ]
    return msg


def _handle_command(self: Any, msg: Any) -> Any:
    return _orig_handle_command(self, _with_converted_sections(msg))


NeoSQLiteHandler.handle_command = _handle_command

_orig_handle_insert = NeoSQLiteHandler.handle_insert


def _handle_insert(self: Any, msg: Any) -> Any:
    # inserts reach handle_insert straight from the server loop (see Bug 3 above)
    return _orig_handle_insert(self, _with_converted_sections(msg))


NeoSQLiteHandler.handle_insert = _handle_insert


if __name__ == "__main__":
    import sys

    from nx_27017.nx_27017 import main

    sys.exit(main())

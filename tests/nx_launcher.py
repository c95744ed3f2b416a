"""Start the nx-27017 MongoDB wire-protocol server with known bugs patched.

Usage: python tests/nx_launcher.py <nx-27017 arguments...>

The live test tier (docs/testing.md, "Tests") runs against nx-27017 (SQLite-backed, pure
Python) when no real MongoDB is configured. Pinned: nx-27017==0.8.1,
neosqlite==1.17.2. Both have an ObjectId bug that silently makes the package's
main query, ``{"userId": ObjectId(...)}``, match nothing; neosqlite's SQL
update tier also stores updated datetimes and pushed sub-documents as strings
(Bugs 4-6 below), and BSON binary subtypes are lost (Bug 7: field level
encryption's ciphertext and key vault need them), and a $set of true/false is stored as 1/0 (Bug 14);
nx-27017's findAndModify answers every refusal (a unique index's, an $inc of a string) as "no document matched" (Bug 17).
Slownesses 8-13, 15 and 16 are costs no MongoDB has (a range on _id, count_documents, a commit
per document, an unlogged debug line, a $set of an ObjectId, an _id $in in update_many, a deep
copy per insert and per projected document): each patch keeps the answers. This script patches them at start-up and then hands over to
nx-27017's own ``main()`` (which parses sys.argv). ``tests/live/nxserver.py:self_check`` verifies at session start that
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


class _QuietSections(list):  # type: ignore[type-arg]
    """Slowness 11 (nx-27017): handle_insert's first line is
    ``logger.debug(f"handle_insert sections: {sections}")``, an f-string, so every insert formats
    all its documents into a message the server never logs (debug is off): a sixth of the
    server's time in the ODM benchmark's large documents. The sections, as a list that formats
    as its length; everything else reads them as the list they are."""

    def __str__(self) -> str:
        return f"<{len(self)} section(s)>"

    __repr__ = __str__


def _handle_insert(self: Any, msg: Any) -> Any:
    # inserts reach handle_insert straight from the server loop (see Bug 3 above)
    msg = _with_converted_sections(msg)
    if isinstance(msg, dict) and isinstance(msg.get("sections"), list):
        msg = {**msg, "sections": _QuietSections(msg["sections"])}
    return _orig_handle_insert(self, msg)


NeoSQLiteHandler.handle_insert = _handle_insert


# --------------------------------------------------------------------------
# Bug 4 (neosqlite): an update stores a datetime as a plain STRING.
#
# Insert serialises documents with NeoSQLiteJSONEncoder (collection/
# json_helpers.py), which stores a datetime in the tagged form
# {"$date": "<isoformat>"}; reading decodes that back into a datetime. The SQL
# update tier (collection/query_helper/_sql_updates.py, _perform_enhanced_sql_
# update and its fallback _perform_sql_update) JSON-encodes only dict/list/Binary
# operands; a scalar datetime is bound as a raw SQLite parameter, so sqlite3's
# default adapter writes '2026-11-25 08:33:21.761000+00:00' into json_set /
# json_insert / the $push array ($set, $push, $addToSet; update_one, update_many,
# find_one_and_update alike). A datetime *inside* a dict operand was already
# right. $min/$max would also compare JSON text with min()/max() and store the
# result as a string; $pull/$pullAll would compare the tagged object with a
# string and never match.
#
# Fix: (a) before the SQL tier runs, replace each datetime in the operands of
# $set/$setOnInsert/$push/$addToSet by the encoder's own tagged form, so the
# SQL tier takes its dict path (json(?)) and stores exactly what insert stores;
# both SQL-tier methods re-read the row, so callers still get datetimes back.
# (b) $min/$max/$pull/$pullAll with a datetime operand go to neosqlite's Python
# update path (_perform_python_update), which compares real datetimes and
# writes the whole document through the same encoder as insert.
# --------------------------------------------------------------------------
import datetime as _dt  # noqa: E402

import neosqlite.collection.query_helper._sql_updates as _squ  # noqa: E402
from neosqlite.collection.json_helpers import NeoSQLiteJSONEncoder  # noqa: E402

_ENCODER = NeoSQLiteJSONEncoder()
_TAGGED_OPS = ("$set", "$setOnInsert", "$push", "$addToSet")
_PYTHON_OPS_FOR_DATES = ("$min", "$max", "$pull", "$pullAll")


def _tag_datetimes(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return _ENCODER.default(value)  # {"$date": value.isoformat()}, as insert
    if isinstance(value, dict):
        return {k: _tag_datetimes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_datetimes(v) for v in value]
    return value


def _has_datetime(value: Any) -> bool:
    if isinstance(value, _dt.datetime):
        return True
    if isinstance(value, dict):
        return any(_has_datetime(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_datetime(v) for v in value)
    return False


def _tag_update_spec(update_spec: Any) -> Any:
    if not isinstance(update_spec, dict):
        return update_spec
    return {
        op: _tag_object_ids(_tag_datetimes(val)) if op in _SET_OPS and isinstance(val, dict)
        else _tag_datetimes(val) if op in _TAGGED_OPS and isinstance(val, dict) else val
        for op, val in update_spec.items()
    }


# Slowness 12 (neosqlite): a $set of an ObjectId takes three tries.
#
# The same SQL tier binds a scalar ObjectId operand as a raw SQLite parameter, which sqlite3
# refuses ("type 'ObjectId' is not supported"): the enhanced SQL update raises, then the
# standard one, and only then the Python update runs, for every matched document. Every write
# of the service sets one (advance(): ``$set _op: <op id>``), so every update paid two failed
# tries. Fix: in $set/$setOnInsert operands an ObjectId is given as the encoder's own tagged
# form too (what insert stores for it), so the first SQL try stores it; reading decodes it back
# into an ObjectId. ($push/$addToSet keep the three tries: their SQL tier compares elements as
# JSON, which is not an ObjectId's equality.)
_SET_OPS = ("$set", "$setOnInsert")


def _tag_object_ids(value: Any) -> Any:
    if isinstance(value, _NeoObjectId):
        return _ENCODER.default(value)  # {"__neosqlite_objectid__": true, "id": "<hex>"}, as insert
    if isinstance(value, dict):
        return {k: _tag_object_ids(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_object_ids(v) for v in value]
    return value


_orig_enhanced_sql_update = _squ.SqlUpdatesMixin._perform_enhanced_sql_update
_orig_sql_update = _squ.SqlUpdatesMixin._perform_sql_update
_orig_can_use_sql_updates = _squ.SqlUpdatesMixin._can_use_sql_updates


def _perform_enhanced_sql_update(self: Any, doc_id: Any, update_spec: Any,
                                 original_doc: Any = None) -> Any:
    return _orig_enhanced_sql_update(self, doc_id, _tag_update_spec(update_spec),
                                     original_doc)


def _perform_sql_update(self: Any, doc_id: Any, update_spec: Any) -> Any:
    return _orig_sql_update(self, doc_id, _tag_update_spec(update_spec))


def _can_use_sql_updates(self: Any, update_spec: Any, doc_id: Any,
                         original_doc: Any = None) -> bool:
    if any(op in _PYTHON_OPS_FOR_DATES and _has_datetime(val)
           for op, val in update_spec.items()):
        return False
    if _add_to_set_needs_python(update_spec, original_doc):  # Bug 6, below
        return False
    if _sets_a_bool(update_spec):  # Bug 14, below
        return False
    return _orig_can_use_sql_updates(self, update_spec, doc_id, original_doc)


# UpdateOperationsMixin (query_helper/update_operations.py) inherits these from
# SqlUpdatesMixin and calls them through self, so patching the mixin suffices.
_squ.SqlUpdatesMixin._perform_enhanced_sql_update = _perform_enhanced_sql_update
_squ.SqlUpdatesMixin._perform_sql_update = _perform_sql_update
_squ.SqlUpdatesMixin._can_use_sql_updates = _can_use_sql_updates

# --------------------------------------------------------------------------
# Bug 5 (neosqlite): every $push turns the array's sub-documents into strings.
#
# The SQL tier builds the new array in SqlUpdatesMixin.
# _build_push_position_slice_clause (_sql_updates.py; used for every $push,
# not only $position/$slice) as json_group_array(value) over an ORDER BY
# subquery of json_each() rows. Going through the subquery drops SQLite's JSON
# subtype of `value`, so each object/array element - the pushed one and every
# one already in the array - is stored as a JSON-encoded string
# ('{"at": ...}'), and true/false become 1/0. This hit "$push of a
# sub-document with a datetime" from Bug 4 too.
#
# Fix: the same clause, but each row carries its element as JSON text (objects
# and arrays as-is, true/false/null as literals, scalars through json_quote) and
# the aggregate re-parses it with json(value), which keeps every type.
# --------------------------------------------------------------------------
_ELEM_AS_JSON = ("CASE type WHEN 'object' THEN value WHEN 'array' THEN value "
                 "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                 "WHEN 'null' THEN 'null' ELSE json_quote(value) END")


def _build_push_position_slice_clause(field: str, values_json: Any,
                                      position_value: Any, slice_value: Any) -> Any:
    json_path = f"'{_squ.parse_json_path(field)}'"
    cur = f"json_extract(data, {json_path})"
    extra_params: list[Any] = []
    boundary_sql = None
    if position_value is not None:
        p = int(position_value)
        boundary_sql = (str(p) if p >= 0 else
                        f"MAX((SELECT COUNT(*) FROM json_each({cur})) + ({p}), 0)")
    arms = [f"SELECT {_ELEM_AS_JSON} AS value, 0 AS blk, key AS ord FROM json_each({cur})"
            + (f" WHERE key < {boundary_sql}" if boundary_sql else "")]
    if values_json is not None:
        arms.append(f"SELECT {_ELEM_AS_JSON} AS value, 1 AS blk, key AS ord FROM json_each(?)")
        extra_params.append(values_json)
    if boundary_sql:
        arms.append(f"SELECT {_ELEM_AS_JSON} AS value, 2 AS blk, key AS ord "
                    f"FROM json_each({cur}) WHERE key >= {boundary_sql}")
    union_sql = " UNION ALL ".join(arms)
    base_ordered = f"SELECT value FROM ({union_sql}) ORDER BY blk, ord"
    if slice_value is None:
        final_select = base_ordered
    elif slice_value == 0:
        return f"{json_path}, json('[]')", []
    elif slice_value > 0:
        final_select = f"{base_ordered} LIMIT {slice_value}"
    else:
        reversed_scan = (f"SELECT value, blk, ord FROM ({union_sql}) "
                         f"ORDER BY blk DESC, ord DESC LIMIT {-int(slice_value)}")
        final_select = f"SELECT value FROM ({reversed_scan}) ORDER BY blk ASC, ord ASC"
    return (f"{json_path}, (SELECT json_group_array(json(value)) "
            f"FROM ({final_select}))"), extra_params


assert isinstance(_squ.SqlUpdatesMixin.__dict__["_build_push_position_slice_clause"],
                  staticmethod)
_squ.SqlUpdatesMixin._build_push_position_slice_clause = staticmethod(
    _build_push_position_slice_clause)

# --------------------------------------------------------------------------
# Bug 6 (neosqlite): $addToSet on a missing field does nothing.
#
# The SQL tier's $addToSet (_perform_enhanced_sql_update) appends with
# json_insert(data, '$.field[#]', ?), which is a no-op when the array does not
# exist yet; MongoDB creates [value]. The update still reports success.
#
# Fix: when a top-level $addToSet field is missing or not an array, use the
# Python update path, which does setdefault(field, []). Only when no key of the
# update is dotted: that path handles dotted keys only for $set.
# --------------------------------------------------------------------------


def _add_to_set_needs_python(update_spec: Any, original_doc: Any) -> bool:
    spec = update_spec.get("$addToSet")
    if not isinstance(spec, dict) or not isinstance(original_doc, dict):
        return False
    if any("." in key for val in update_spec.values() if isinstance(val, dict)
           for key in val):
        return False
    return any(not isinstance(original_doc.get(key), list) for key in spec)


# --------------------------------------------------------------------------
# Bug 7 (nx-27017 + neosqlite): BSON binary subtypes are lost.
#
# nx-27017 decodes the wire with bson's defaults, so a Binary of subtype 4
# (UUID: a data key's _id) or 6 (a field level encryption ciphertext) reaches
# neosqlite as a ``bson.Binary``; neosqlite only knows its own
# ``neosqlite.binary.Binary`` (stored tagged with its subtype), so the value is
# stored as plain bytes and comes back as ``bytes`` (subtype 0), and a query on
# a binary ``_id`` or field matches nothing.
#
# Fix: on the way in (nx_27017.utils.convert_bson_to_neo_objectids, which the
# handler calls for every command body, and this launcher's own conversion of
# count/distinct/aggregate above), turn each ``bson.Binary`` into neosqlite's
# Binary with the same subtype; on the way out (wire_protocol's
# _convert_objectids, the encoding of every reply), turn neosqlite's Binary
# back into ``bson.Binary`` with its subtype.
# --------------------------------------------------------------------------
import bson.binary as _bsonbin  # noqa: E402
import nx_27017.utils as _nxu  # noqa: E402
import nx_27017.wire_protocol as _nxwire  # noqa: E402
from neosqlite.binary import Binary as _NeoBinary  # noqa: E402

_orig_to_neo = _nxu.convert_bson_to_neo_objectids
_orig_to_bson = _nxu.convert_neo_to_bson_objectids


def _binaries_to_neo(value: Any) -> Any:
    if isinstance(value, _bsonbin.Binary) and not isinstance(value, _NeoBinary):
        return _NeoBinary(bytes(value), value.subtype)
    if type(value) is bytes:  # subtype 0, which bson decodes to bytes: tagged too, or a $set naming it beside a
        return _NeoBinary(value, 0)  # tagged Binary fails ("Object of type bytes is not JSON serializable")
    if isinstance(value, dict):
        return {k: _binaries_to_neo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_binaries_to_neo(v) for v in value]
    return value


def _binaries_to_bson(value: Any) -> Any:
    if isinstance(value, _NeoBinary):
        return _bsonbin.Binary(bytes(value), value.subtype)
    if isinstance(value, dict):
        return {k: _binaries_to_bson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_binaries_to_bson(v) for v in value]
    return value


def _to_neo(doc: Any) -> Any:
    return _orig_to_neo(_binaries_to_neo(doc))


def _to_bson(doc: Any) -> Any:
    return _binaries_to_bson(_orig_to_bson(doc))


def _has_binary(value: Any) -> bool:
    if isinstance(value, _NeoBinary):
        return True
    if isinstance(value, dict):
        return any(_has_binary(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_binary(v) for v in value)
    return False


# a query condition on a field holding a Binary goes to neosqlite's Python matcher, which
# compares Binary values (data and subtype) right; on _id, the SQL parameter is made the text
# the _id column holds (insert stores str() of the bytes)
_before_binary_field_clause = _sqb.SqlQueryBuilderMixin._build_field_clause
_before_binary_where_clause = _sqlu.SQLClauseBuilder.build_where_clause


def _build_field_clause_b(self: Any, field: str, value: Any) -> Any:
    if field == "_id" and isinstance(value, _NeoBinary):
        return f"{self._id_column_ref()} = ?", [_normalize_id_value(value)]
    if field != "_id" and _has_binary(value):
        return None
    return _before_binary_field_clause(self, field, value)


def _id_text(value: Any) -> Any:
    if isinstance(value, _NeoBinary):
        return _normalize_id_value(value)
    if isinstance(value, dict):
        return {k: _id_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_id_text(v) for v in value]
    return value


def _build_where_clause_b(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(query, dict) and any(k != "_id" and _has_binary(v) for k, v in query.items()):
        return None, []
    if isinstance(query, dict) and _has_binary(query.get("_id")):
        query = {**query, "_id": _id_text(query["_id"])}
    return _before_binary_where_clause(self, query, *args, **kwargs)


_orig_normalize_id_value = _sqb._normalize_id_value


def _normalize_id_value(value: Any) -> Any:
    # the _id column holds a binary _id as the text insert makes of it (str of its bytes)
    if isinstance(value, _NeoBinary):
        return str(bytes(value))
    return _orig_normalize_id_value(value)


_sqb._normalize_id_value = _normalize_id_value
_orig_simple_where_clause = _sqb.SqlQueryBuilderMixin._build_simple_where_clause


def _build_simple_where_clause(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    # find's own WHERE builder binds an _id value as is: give it the _id column's text form
    if isinstance(query, dict) and _has_binary(query.get("_id")):
        query = {**query, "_id": _id_text(query["_id"])}
    return _orig_simple_where_clause(self, query, *args, **kwargs)


_sqb.SqlQueryBuilderMixin._build_simple_where_clause = _build_simple_where_clause
_sqb.SqlQueryBuilderMixin._build_field_clause = _build_field_clause_b
_sqlu.SQLClauseBuilder.build_where_clause = _build_where_clause_b
_nxu.convert_bson_to_neo_objectids = _to_neo
globals()["convert_bson_to_neo_objectids"] = _to_neo  # this launcher's count/distinct/aggregate conversion (Bug 2)
assert hasattr(_nxwire, "_convert_objectids")
_nxwire._convert_objectids = _to_bson


# --------------------------------------------------------------------------
# Slowness 8 (neosqlite): a range on _id ($gt/$gte/$lt/$lte) is matched in Python.
#
# _build_id_operator_clause returns None ("use Python") for every range on _id,
# so a keyset read (`{"_id": {"$gt": last}}` sorted by _id, limit n: how
# migrations, key rotation, page() and iter reads walk a collection) scans and
# decodes the whole collection: about 1 s a batch at 50,000 documents, where
# MongoDB walks its _id index. Not a wrong answer, a cost no MongoDB has.
#
# Fix: when every range operand is an ObjectId (or its 24-digit hex, which
# neosqlite already treats as that ObjectId), compare the _id column, which holds
# lowercase 24-digit hex for ObjectIds: hex order is byte order. Only text _ids
# of 24 characters take part, so ints and other strings never match, as in
# MongoDB (a range on ObjectIds sees only ObjectIds). Anything else keeps the
# Python fallback.
# --------------------------------------------------------------------------
_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_orig_build_id_operator_clause = _sqb.SqlQueryBuilderMixin._build_id_operator_clause


def _oid_hex(value: Any) -> str | None:
    if isinstance(value, _NeoObjectId):
        return str(value)
    if isinstance(value, str) and len(value) == 24:
        try:
            return str(_NeoObjectId(value))
        except ValueError:
            return None
    return None


def _build_id_operator_clause(self: Any, value: dict) -> Any:
    ranges = {op: v for op, v in value.items() if op in _RANGE_SQL}
    if not ranges or any(_oid_hex(v) is None for v in ranges.values()):
        return _orig_build_id_operator_clause(self, value)
    id_col = self._id_column_ref()
    clauses = [f"(typeof({id_col}) = 'text' AND length({id_col}) = 24)"]
    params: list[Any] = []
    for op, operand in ranges.items():
        clauses.append(f"{id_col} {_RANGE_SQL[op]} ?")
        params.append(_oid_hex(operand))
    rest = {op: v for op, v in value.items() if op not in _RANGE_SQL}
    if rest:
        other = _orig_build_id_operator_clause(self, rest)
        if other is None:
            return None
        clauses.append(other[0])
        params.extend(other[1])
    return " AND ".join(clauses), params


_sqb.SqlQueryBuilderMixin._build_id_operator_clause = _build_id_operator_clause



# --------------------------------------------------------------------------
# Slowness 9 (neosqlite): count_documents copies the whole collection.
#
# PyMongo's count_documents(filter, skip=, limit=) sends the pipeline
# [{"$match": filter}, ({"$skip": n}), ({"$limit": n}), {"$group": {"_id": 1,
# "n": {"$sum": 1}}}]. Neither of neosqlite's SQL aggregation tiers takes a
# $group on a constant _id (tier 2 builds and drops a temporary table first), so
# its Python tier runs (query_engine/python_aggregation_engine.py): it loads
# every document, deep-copies each one (for a $$ROOT no stage of this pipeline
# reads), then matches. About 1.5 s of server CPU per count at 50,000 documents,
# where MongoDB counts in its index or a collection scan.
#
# Fix: for exactly that pipeline, the same steps without the copies and the
# failed SQL attempts: the same documents (find(), as the Python tier loads
# them), the same matcher (helpers._apply_query), $skip/$limit as that tier
# slices, and the same reply ([] when nothing is left, as $group over nothing).
# So every answer is the Python tier's answer (tests/live/nxserver.py checks
# them against the original tier). An empty filter counts the table's rows in
# SQL (every row is a document: the Python tier matches {} to each). Any other
# pipeline, or a $skip/$limit the Python tier would refuse, takes the original
# path.
# --------------------------------------------------------------------------
import neosqlite.collection.query_engine as _qe  # noqa: E402

_COUNT_GROUP = {"$group": {"_id": 1, "n": {"$sum": 1}}}
_orig_aggregate_with_constraints = _qe.QueryEngine.aggregate_with_constraints


def _count_pipeline(pipeline: Any) -> tuple[dict, int, int | None] | None:
    """(filter, skip, limit) of PyMongo's count_documents pipeline, else None."""
    if not isinstance(pipeline, list) or len(pipeline) < 2 or len(pipeline) > 4:
        return None
    first, last = pipeline[0], pipeline[-1]
    if not (isinstance(first, dict) and list(first) == ["$match"] and isinstance(first["$match"], dict)):
        return None
    if not (isinstance(last, dict) and list(last) == ["$group"] and last == _COUNT_GROUP
            and type(last["$group"]["_id"]) is int and type(last["$group"]["n"]["$sum"]) is int):
        return None
    skip, limit = 0, None
    for stage in pipeline[1:-1]:  # PyMongo sends $skip before $limit, each at most once
        name = next(iter(stage), None) if isinstance(stage, dict) and len(stage) == 1 else None
        value = stage[name] if name else None
        if type(value) is not int or value < 0:
            return None
        if name == "$skip" and skip == 0 and limit is None and value > 0:
            skip = value
        elif name == "$limit" and limit is None and value > 0:
            limit = value
        else:
            return None
    return first["$match"], skip, limit


def _aggregate_with_constraints(self: Any, pipeline: Any, batch_size: int = 101,
                                memory_constrained: bool = False, session: Any = None) -> Any:
    shape = None if memory_constrained else _count_pipeline(pipeline)
    if shape is None:
        return _orig_aggregate_with_constraints(self, pipeline, batch_size=batch_size,
                                                memory_constrained=memory_constrained, session=session)
    _qe.validate_session(session, self.collection._database)
    filt, skip, limit = shape
    matches = self.helpers._apply_query
    fields = _plain_fields(filt)
    if not filt:
        n = self.estimated_document_count(session=session)
    elif fields and not self.jsonb.jsonb_supported:
        n = sum(1 for doc in _field_docs(self, fields) if matches(filt, doc))
    else:
        n = sum(1 for doc in self.find(session=session) if matches(filt, doc))
    n = max(n - skip, 0) if limit is None else min(max(n - skip, 0), limit)
    return [{"_id": 1, "n": n}] if n else []


# A filter whose every key is a plain top-level field (no dots, no _id, no $and/$or/$where...)
# with a value or field-level operators only reads those fields: the matcher's answer on the
# document is its answer on those fields alone. So such a count decodes only them (SQL's
# json_type tells a missing field from a null; objects and arrays decode through neosqlite's own
# JSON loader, tagged dates, ObjectIds and binaries included) instead of whole documents.
_FIELD_OPERATORS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type",
                    "$size", "$all", "$elemMatch", "$regex", "$options", "$not", "$mod"}
_SCALARS = {"true": True, "false": False, "null": None}


def _plain_fields(filt: dict) -> list[str] | None:
    for key, value in filt.items():
        if (not isinstance(key, str) or not key or key in ("_id", "id") or key[0] == "$"
                or any(c in key for c in '."\\') or not key.isprintable()):
            return None
        if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
            if not set(value) <= _FIELD_OPERATORS:
                return None
    return list(filt)


def _field_docs(self: Any, fields: list[str]) -> Any:
    """Each stored document reduced to ``fields`` (those it has), decoded as a full load does."""
    from neosqlite.collection.json_helpers import neosqlite_json_loads
    from neosqlite.sql_utils import quote_table_name

    columns = ", ".join("json_type(data, ?), json_extract(data, ?)" for _ in fields)
    params = [p for f in fields for p in (f'$."{f}"', f'$."{f}"')]
    rows = self.collection.db.execute(f"SELECT {columns} FROM {quote_table_name(self.collection.name)}", params)
    for row in rows:
        doc: dict[str, Any] = {}
        for i, name in enumerate(fields):
            kind, value = row[2 * i], row[2 * i + 1]
            if kind is None:
                continue  # missing
            if kind in ("object", "array"):
                doc[name] = neosqlite_json_loads(value)
            elif kind in _SCALARS:
                doc[name] = _SCALARS[kind]
            else:
                doc[name] = value  # integer, real, text: as json.loads gives them
        yield doc


_qe.QueryEngine.aggregate_with_constraints = _aggregate_with_constraints



# --------------------------------------------------------------------------
# Slowness 10 (nx-27017 + neosqlite): a write command commits once per document.
#
# neosqlite's connection is in autocommit mode (isolation_level None), and both
# nx-27017's insert (handler.handle_insert: one insert_one per document, so a
# duplicate key becomes a writeErrors entry) and neosqlite's update_many /
# delete_many (one UPDATE or DELETE per matched document) write document by
# document: each statement is its own SQLite transaction, with its own WAL
# frames and locks. About half the CPU of a 1,000-document insert or update.
# MongoDB applies a batch without a commit per document.
#
# Fix: run each write command (insert, update, delete, findAndModify) outside a
# client transaction inside one SAVEPOINT, released before the reply is sent:
# a statement that fails (a duplicate key) is still undone alone, as SQLite
# undoes a failed statement, and the documents written before it stay, as they
# did; a command that raises still keeps what it wrote (released, not rolled
# back), as autocommit did. Skipped when the connection is already in a
# transaction (a client transaction), for a command that opens or continues
# one (startTransaction, autocommit), and for GridFS collections (their bucket
# code opens its own transaction).
# --------------------------------------------------------------------------
from nx_27017.handler import _msg_db_name  # noqa: E402

_WRITE_COMMANDS = ("insert", "update", "delete", "findAndModify", "findandmodify")
_SAVEPOINT = "nx_launcher_write_command"


def _write_target(msg: Any) -> str | None:
    """The collection of a write command outside a client transaction, else None."""
    if not isinstance(msg, dict):
        return None
    body = next((doc for kind, doc in msg.get("sections") or () if kind == "body"), None)
    if not isinstance(body, dict) or "startTransaction" in body or "autocommit" in body:
        return None
    name = next((body[c] for c in _WRITE_COMMANDS if c in body), None)
    return name if isinstance(name, str) else None


def _in_one_transaction(self: Any, msg: Any, run: Any) -> Any:
    target = _write_target(msg)
    if target is None or self._is_gridfs_collection(target):
        return run()
    db_name = _msg_db_name(msg)
    with self._lock_for(db_name):  # the lock the handler takes: nothing else runs on this connection
        conn = self.get_database(db_name).db
        if conn.in_transaction:
            return run()
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            return run()
        finally:
            if conn.in_transaction:
                conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def _handle_command_once(self: Any, msg: Any) -> Any:
    return _in_one_transaction(self, msg, lambda: _handle_command(self, msg))


def _handle_insert_once(self: Any, msg: Any) -> Any:
    return _in_one_transaction(self, msg, lambda: _handle_insert(self, msg))


NeoSQLiteHandler.handle_command = _handle_command_once
NeoSQLiteHandler.handle_insert = _handle_insert_once



# --------------------------------------------------------------------------
# Slowness 13 (neosqlite): an update_many or delete_many by `{"_id": {"$in": [ObjectId...]}}`
# reads every matched document twice.
#
# Their filter goes through the SQL translator (SQLClauseBuilder.build_where_clause), which
# gives up on ObjectId operands; the fallback then runs find(filter), decodes each document,
# looks its row id up again one by one, and re-reads and decodes it before updating it. (find's
# own WHERE builder already compares an _id equality or $in of ObjectIds with the _id column.)
# The migration's batches (`{<not migrated>, "_id": {"$in": <1,000 ids>}}`) and the service's
# bulk writes take that path.
#
# Fix: as find's builder does, an `_id` `$in` whose operands are all ObjectIds is given to the
# translator as their 24-digit hex, the text the _id column holds for an ObjectId (so, as in
# find, a string _id spelling one of them would match too: "an ObjectId compares equal to its
# hex string", docs/testing.md). A mixed list keeps the fallback.
# --------------------------------------------------------------------------
_before_oid_where_clause = _sqlu.SQLClauseBuilder.build_where_clause


def _hex_ids(value: Any) -> Any:
    """`{"$in": [ObjectId...]}` with its ObjectIds as hex; anything else unchanged."""
    if not isinstance(value, dict) or list(value) != ["$in"]:
        return value
    ids = value["$in"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, _NeoObjectId) for i in ids):
        return value
    return {"$in": [str(i) for i in ids]}


def _build_where_clause_oid_in(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(query, dict) and isinstance(query.get("_id"), dict):
        query = {**query, "_id": _hex_ids(query["_id"])}
    return _before_oid_where_clause(self, query, *args, **kwargs)


_sqlu.SQLClauseBuilder.build_where_clause = _build_where_clause_oid_in



# --------------------------------------------------------------------------
# Bug 14 (neosqlite): a $set of true/false is stored as 1/0.
#
# The SQL update tier binds a scalar operand as a raw SQLite parameter, and sqlite3 binds a
# bool as the integer 1 or 0 (json_set then stores a number): `{"$set": {"done": True}}` reads
# back as 1. Seen once Slowness 12 let the service's updates (which $set an ObjectId) take
# that tier; before, the ObjectId sent them to the Python update, which stores true. A bool
# inside a sub-document was right (its dict is JSON-encoded).
#
# Fix: an update whose $set/$setOnInsert/$addToSet gives a field a bool of its own goes to the
# Python update path, which stores true/false as insert does.
# --------------------------------------------------------------------------
def _sets_a_bool(update_spec: Any) -> bool:
    return any(isinstance(spec, dict) and any(isinstance(v, bool) for v in spec.values())
               for op, spec in update_spec.items() if op in ("$set", "$setOnInsert", "$addToSet"))



# --------------------------------------------------------------------------
# Slowness 15 (neosqlite): every insert deep-copies its document first.
#
# CRUDOperationsMixin._internal_insert (query_helper/crud_operations.py) starts with
# ``deepcopy(document)``, sets the copy's ``_id``, then rebuilds every dict and list of it
# (_convert_bytes_to_binary) and JSON-encodes the result: the deep copy protects nothing a
# top-level copy would not, and costs about a seventh of the server's CPU in the migration test
# (50,000 documents and 50,000 change records inserted).
#
# Fix: hand it the document as a dict whose deep copy is a top-level copy; the caller's dict
# gets its generated ``_id`` as before.
# --------------------------------------------------------------------------
import neosqlite.collection.query_helper.crud_operations as _qhc  # noqa: E402


class _TopLevelCopy(dict):  # type: ignore[type-arg]
    """A document whose deepcopy() is dict(self): _internal_insert only sets the copy's _id and
    then rebuilds every container (_convert_bytes_to_binary), so nothing shared is changed."""

    def __deepcopy__(self, memo: Any) -> dict:  # type: ignore[type-arg]
        return dict(self)


_orig_internal_insert = _qhc.CRUDOperationsMixin._internal_insert


def _internal_insert(self: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
    if type(document) is not dict:
        return _orig_internal_insert(self, document, *args, **kwargs)
    given = _TopLevelCopy(document)
    inserted = _orig_internal_insert(self, given, *args, **kwargs)
    if "_id" not in document and "_id" in given:
        document["_id"] = given["_id"]  # as the original sets it on the caller's document
    return inserted


_qhc.CRUDOperationsMixin._internal_insert = _internal_insert



# --------------------------------------------------------------------------
# Slowness 16 (neosqlite): a find with a projection deep-copies every document it returns.
#
# Cursor._apply_projection hands each document it has just loaded for this cursor to
# AggregationMixin._apply_projection, which starts with ``deepcopy(document)`` (for the
# exclusion form, which pops top-level fields of the copy); an inclusion projection then only
# reads the copy's ``_id``. The loaded documents belong to this cursor alone and are dropped
# once projected, and the projection changes nothing below the top level: a top-level copy
# keeps them as they are. A read such as ``find({}, {"_id": 1})`` over a collection spent more
# time copying documents than decoding them.
#
# Fix: the cursor hands them over as _TopLevelCopy (Slowness 15), whose deep copy is dict(self).
# --------------------------------------------------------------------------
import neosqlite.collection.cursor as _ncursor  # noqa: E402

_orig_cursor_projection = _ncursor.Cursor._apply_projection


def _cursor_apply_projection(self: Any, docs: Any) -> Any:
    if not self._projection:
        return _orig_cursor_projection(self, docs)
    return _orig_cursor_projection(self, (_TopLevelCopy(d) if type(d) is dict else d for d in docs))


_ncursor.Cursor._apply_projection = _cursor_apply_projection


# --------------------------------------------------------------------------
# Slowness 18 (neosqlite): the keyset read of a scan in _id order is an $or, matched in Python.
#
# A scan in _id order asks for what comes after its last ObjectId in MongoDB's order, the type
# brackets after ObjectId's included (astro_db.query.order.ids_after): `{...rest, "$or":
# [{"_id": {"$gt": oid}}, {"_id": {"$type": "bool"}}, {"_id": {"$type": "date"}}]}`, sorted by
# _id, limited. neosqlite sends any top-level $or (and any `$type: "date"`) to its Python tier,
# so each batch of a migration, a key rotation or a page decoded the whole collection (about
# 2.5 s a batch at 50,000 documents): Slowness 8's answer, taken back. MongoDB walks its _id
# index for each branch.
#
# Fix: such a read (sort {_id: 1}, a limit, no skip, no hint) runs as two reads: the ObjectIds
# after oid with the rest of the filter (Slowness 8's SQL), in order, and only when those do not
# fill the limit, the type branches with the rest of the filter (the Python tier, as before),
# after them: ObjectIds sort before booleans and dates in MongoDB, so the concatenation is the
# order the server gives (neosqlite's Python sort put a boolean before the ObjectIds). Each half
# is neosqlite's own answer to that half of the $or, so the union is what the Python tier
# matched for the whole (which also leaves out a date _id: a difference from MongoDB that stays
# as it was). Anything else keeps the one read.
# --------------------------------------------------------------------------
_KEYSET_TYPES = frozenset({"bool", "date"})
_orig_get_filtered_documents = _ncursor.Cursor._get_filtered_documents


def _keyset_split(query: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the ObjectId range's read, the type branches' read) of a keyset $or, else None."""
    branches = query.get("$or") if isinstance(query, dict) else None
    if not isinstance(branches, list) or len(branches) < 2:
        return None
    ranged, typed = None, []
    for branch in branches:
        cond = branch.get("_id") if isinstance(branch, dict) and len(branch) == 1 else None
        if not isinstance(cond, dict) or len(cond) != 1:
            return None
        (op, operand), = cond.items()
        if op in ("$gt", "$gte") and isinstance(operand, _NeoObjectId) and ranged is None:
            ranged = cond
        elif op == "$type" and operand in _KEYSET_TYPES:
            typed.append(branch)
        else:
            return None
    if ranged is None or "_id" in query:
        return None
    rest = {k: v for k, v in query.items() if k != "$or"}
    return {**rest, "_id": ranged}, {**rest, "$or": typed}


def _get_filtered_documents(self: Any) -> Any:
    split = _keyset_split(self._filter)
    if (split is None or self._sort != {"_id": 1} or not self._limit or self._limit < 0 or self._skip
            or self._hint or self._where_predicate or self._collation or self._min or self._max):
        return _orig_get_filtered_documents(self)
    docs = []
    for part in split:
        left = self._limit - len(docs)
        if left <= 0:
            break
        half = _ncursor.Cursor(self._collection, part, session=self._session)
        half._sort, half._limit = {"_id": 1}, left
        docs.extend(half._execute_query())
    self._sql_handled_sort = self._sql_handled_pagination = True
    return docs


_ncursor.Cursor._get_filtered_documents = _get_filtered_documents


# --------------------------------------------------------------------------
# Bug 17 (nx-27017): findAndModify answers ``{ok: 1, value: null}`` whatever its update raised.
#
# handler.py's findAndModify branch wraps find_one_and_update / find_one_and_replace in
# ``except Exception: doc = None``: an update that a unique index refuses (SQLite's "UNIQUE
# constraint failed") is answered as if no document matched, and the document is left as it
# was. MongoDB answers E11000 (code 11000, DuplicateKey), which PyMongo raises as
# DuplicateKeyError; an ODM reading null takes it for "not found".
#
# Fix: the two collection methods record what they raised (per thread: the handler runs the
# command in the caller's thread), and the command handler, seeing a findAndModify answered
# ``value: null`` after a unique violation, answers the error MongoDB answers instead; any other
# refusal (an $inc of a string: TypeMismatch, an unknown operator: FailedToParse, else BadValue)
# is answered as an error with nx-27017's message, as its update command answers it.
# --------------------------------------------------------------------------
import threading as _threading  # noqa: E402

from neosqlite.collection import Collection as _NeoCollection  # noqa: E402

_FAM_RAISED = _threading.local()


def _recording(method: Any) -> Any:
    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        _FAM_RAISED.exc = None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            _FAM_RAISED.exc = exc
            raise

    return recorded


_NeoCollection.find_one_and_update = _recording(_NeoCollection.find_one_and_update)
_NeoCollection.find_one_and_replace = _recording(_NeoCollection.find_one_and_replace)
_before_fam_errors = NeoSQLiteHandler.handle_command


def _find_and_modify_errors(self: Any, msg: Any) -> Any:
    _FAM_RAISED.exc = None
    answer = _before_fam_errors(self, msg)
    exc = _FAM_RAISED.exc
    if exc is None or not isinstance(answer, tuple) or len(answer) != 2:
        return answer
    request_id, reply = answer
    body = next((doc for kind, doc in (msg.get("sections") or ()) if kind == "body"), None) if isinstance(msg, dict) else None
    if not (isinstance(body, dict) and ("findAndModify" in body or "findandmodify" in body) and isinstance(reply, dict)
            and reply.get("ok") == 1 and reply.get("value") is None):
        return answer
    if "UNIQUE" in str(exc).upper():
        name = body.get("findAndModify") or body.get("findandmodify")
        return request_id, {"ok": 0, "code": 11000, "codeName": "DuplicateKey",
                            "errmsg": f"E11000 duplicate key error collection: {body.get('$db', 'test')}.{name} {exc}"}
    # any other refusal (an $inc of a string, an unknown operator): the error the update command answers
    text = str(exc)
    code, name = (14, "TypeMismatch") if "non-numeric" in text else (
        (9, "FailedToParse") if "not supported" in text else (2, "BadValue"))
    return request_id, {"ok": 0, "code": code, "codeName": name, "errmsg": text}


NeoSQLiteHandler.handle_command = _find_and_modify_errors


if __name__ == "__main__":
    import sys

    from nx_27017.nx_27017 import main

    sys.exit(main())

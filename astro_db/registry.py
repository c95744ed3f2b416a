"""Model names to Document classes: "BirthChart", "birth_chart" and "birthCharts" all resolve.

A name is resolved once per call here; every other module works with the ``ModelInfo`` it gets.
Each ``ModelInfo`` carries the model's ``Declaration``, read once from its ``meta``: the owner
field (the ``self`` scope and the cascade), references to other models, the roles' permissions
and the sensitive fields encrypted deterministically. The four built-in models declare theirs the
same way an app's models do; nothing below reads a model's name to decide what it may do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, QueryError, UnknownModelError

__all__ = ["Declaration", "ModelInfo", "ModelRegistry", "default_registry", "registry_for", "load_models",
           "SELF_OWNED", "DECLARATION_KEYS", "SERVICE_COLLECTIONS"]

#: ``meta["owner"]`` of the model whose documents *are* the users: the ``self`` scope is ``_id``
SELF_OWNED = "_id"
#: the ``meta`` keys a model declares itself with (besides MongoEngine's own)
DECLARATION_KEYS = ("owner", "references", "permissions", "queryable", "deleted_when")
SERVICE_COLLECTIONS = ("astroChanges", "auditLog", "astroErasures", "astroMigrations")
"""The collections astro_db writes for itself (change records, the older audit log, the erasure and
migration ledgers): no model may use them, and ``storage_stats`` lists them apart."""


@dataclass(frozen=True)
class Declaration:
    """What a model declares in its ``meta`` beyond MongoEngine's keys, in stored names.

    - ``owner``: the stored field holding the owning user's id (the ``self`` scope narrows to it,
      ``delete_user_cascade`` and ``cleanup`` follow it), ``"_id"`` for the model whose documents
      are the users, ``None`` for a model no user owns (a ``self`` actor cannot touch it);
    - ``owner_names``: every spelling of the owner field a caller may write (attribute, stored);
    - ``references``: stored field -> the model its ObjectId must name (``check_references``);
    - ``permissions``: role -> the operations it grants on this model (``security.access``);
    - ``queryable``: stored paths of sensitive fields encrypted deterministically (equality works);
    - ``deleted_when``: on the user model, the equality conditions that mark a user as deleted
      (``cleanup`` treats what such a user owns as orphaned).
    """

    owner: str | None = None
    owner_names: tuple[str, ...] = ()
    references: Mapping[str, str] = field(default_factory=dict)
    permissions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    queryable: frozenset[str] = frozenset()
    deleted_when: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_user(self) -> bool:
        """Whether this model's documents are the users (its ``self`` scope is ``_id``)."""
        return self.owner == SELF_OWNED

    @property
    def owned(self) -> bool:
        """Whether each document belongs to a user through an owner field."""
        return self.owner is not None and self.owner != SELF_OWNED


@dataclass(frozen=True)
class ModelInfo:
    """What the service needs to know about one model."""

    name: str  # the class name, e.g. "BirthChart"
    cls: Any  # the MongoEngine Document class
    collection: str  # the stored collection name, e.g. "birthCharts"
    declaration: Declaration = field(default=None, compare=False)  # type: ignore[assignment]  # read from meta

    def __post_init__(self) -> None:
        if self.declaration is None:
            object.__setattr__(self, "declaration", declare(self.cls))

    def __repr__(self) -> str:
        return f"<model {self.name} ({self.collection})>"


def _stored(cls: Any, name: Any, key: str) -> tuple[str, Any]:
    from .models.paths import resolve as resolve_path

    if not isinstance(name, str):
        raise ConfigError(f"{cls.__name__}: meta[{key!r}] names a field by a string, got {type(name).__name__}", key=key)
    try:
        found = resolve_path(cls, name)
    except QueryError as exc:
        raise ConfigError(f"{cls.__name__}: meta[{key!r}]: {exc}", key=key) from None
    return found.stored, found.field


def _attribute_path(cls: Any, stored: str) -> str:
    """``stored`` (a dotted stored path: ``author.userId``) in attribute names (``author.user_id``),
    through embedded documents; a part no field declares is kept as it is."""
    names, current = [], cls
    for part in stored.split("."):
        fields = getattr(current, "_fields", None) or {}
        attr, field = next(((k, f) for k, f in fields.items() if (getattr(f, "db_field", None) or k) == part), (part, None))
        names.append(attr)
        current = getattr(field, "document_type", None) if field is not None else None
    return ".".join(names)


def declare(cls: Any) -> Declaration:
    """A model's ``Declaration`` from its ``meta``; a ``ConfigError`` naming the bad key."""
    from mongoengine.fields import ListField, ObjectIdField

    from .models.paths import through_list
    from .security.access import model_permissions

    meta = getattr(cls, "_meta", None) or {}
    owner = meta.get("owner")
    owner_names: tuple[str, ...] = ()
    if owner is not None:
        if owner in ("_id", "id"):
            owner = SELF_OWNED
        else:
            stored, found = _stored(cls, owner, "owner")
            if stored == "_id":
                owner = SELF_OWNED
            elif not isinstance(found, ObjectIdField):
                raise ConfigError(f"{cls.__name__}: meta['owner'] names {stored!r}, which holds no user id: the owner "
                                  "field is an ObjectId field (e.g. UserRefField)", key="owner")
            elif through_list(cls, owner):
                raise ConfigError(f"{cls.__name__}: meta['owner'] names {stored!r}, which is inside a list: a document "
                                  "would have several owners (a self actor would see, and an erasure delete, what "
                                  "others share); a document has one owner, in a field of its own or of an embedded "
                                  "document", key="owner")
            else:
                owner, owner_names = stored, tuple(dict.fromkeys((stored, _attribute_path(cls, stored))))
    references_given = meta.get("references") or {}
    if not isinstance(references_given, Mapping):
        raise ConfigError(f"{cls.__name__}: meta['references'] maps a field to a model name", key="references")
    references = {}
    for name, target in references_given.items():
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{cls.__name__}: meta['references'][{name!r}] must name a model, got {target!r}",
                              key="references")
        stored, found = _stored(cls, name, "references")
        if "." in stored or isinstance(found, ListField):
            raise ConfigError(f"{cls.__name__}: meta['references'] names {stored!r}: a reference is checked on a "
                              "field of the document holding one id (a path into an embedded document or a list "
                              "would go unchecked)", key="references")
        references[stored] = target
    queryable = meta.get("queryable") or ()
    if isinstance(queryable, str):
        queryable = (queryable,)
    paths = set()
    for name in queryable:
        stored, found = _stored(cls, name, "queryable")
        if not getattr(found, "sensitive", False):
            if getattr(getattr(found, "field", None), "sensitive", False):  # ListField(TextField(sensitive=True))
                raise ConfigError(f"{cls.__name__}: meta['queryable'] names {stored!r}, a list of sensitive values; "
                                  "a queryable field holds one value (its blind index matches it by equality): keep "
                                  "the values in a list of embedded documents and name their field "
                                  f"({stored + '.value'!r}, say)", key="queryable")
            raise ConfigError(f"{cls.__name__}: meta['queryable'] names {stored!r}, which is not sensitive=True",
                              key="queryable")
        paths.add(".".join(p for p in stored.split(".") if not p.isdigit()))
    deleted_when = meta.get("deleted_when") or {}
    if not isinstance(deleted_when, Mapping):
        raise ConfigError(f"{cls.__name__}: meta['deleted_when'] is a dict of field -> value", key="deleted_when")
    deleted = {_stored(cls, k, "deleted_when")[0]: v for k, v in deleted_when.items()}
    if deleted and owner != SELF_OWNED:
        raise ConfigError(f"{cls.__name__}: meta['deleted_when'] is read on the users' model only (meta 'owner': "
                          "'_id'): it says which users count as deleted, so that cleanup removes what they owned; on "
                          "another model it would be ignored", key="deleted_when")
    return Declaration(owner, owner_names, references, model_permissions(cls.__name__, meta.get("permissions")),
                       frozenset(paths), deleted)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(name: str) -> str:
    return re.sub(r"[_\-\s]", "", name).lower()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ModelRegistry:
    """Resolves the spellings of model names; unknown names list the valid ones."""

    def __init__(self, models: Iterable[Any]) -> None:
        self._by_key: dict[str, ModelInfo] = {}
        self._infos: list[ModelInfo] = []
        by_collection: dict[str, ModelInfo] = {}
        for cls in models:
            info = ModelInfo(_check_model(cls), cls, cls._get_collection_name())
            if any(i.cls is cls for i in self._infos):
                raise ConfigError(f"model {info.name} is registered twice", key="models")
            if info.collection in SERVICE_COLLECTIONS:
                raise ConfigError(f"model {info.name}: collection {info.collection!r} is the service's own", key="models")
            _check_collection(info.name, info.collection)
            _check_fields(info.name, cls)
            if info.collection in by_collection:
                raise ConfigError(f"models {by_collection[info.collection].name} and {info.name} both use the collection "
                                  f"{info.collection!r}", key="models")
            by_collection[info.collection] = info
            spellings = {_key(s) for s in (info.name, _snake(info.name), info.collection)}
            for key in spellings:
                if key in self._by_key:
                    raise ConfigError(f"model {info.name}: its name {key!r} is already taken by "
                                      f"{self._by_key[key].name}", key="models")
            self._infos.append(info)
            for key in spellings:
                self._by_key[key] = info
        self._by_cls = {info.cls: info for info in self._infos}
        self._by_name = {info.name: info for info in self._infos}  # the common spelling, no regex
        #: the classes and class names, each to its ModelInfo: what the resolve step looks a call's
        #: model up in first (one ``dict.get``); any other spelling goes through ``resolve``
        self.known: dict[Any, ModelInfo] = {**self._by_cls, **self._by_name}
        users = [info for info in self._infos if info.declaration.is_user]
        if len(users) > 1:
            raise ConfigError(f"models {', '.join(i.name for i in users)} all declare owner '_id' (the users); "
                              "only one model may", key="models")
        self.user_model: ModelInfo | None = users[0] if users else None
        if self.user_model is not None:
            _check_user_ids(self.user_model)
        for info in self._infos:
            _check_sensitive(info)
            for stored, target in info.declaration.references.items():
                if _key(target) not in self._by_key:
                    raise ConfigError(f"model {info.name}: meta['references'][{stored!r}] names {target!r}, "
                                      f"which is not registered; models: {', '.join(self.names)}", key="models")
            if info.declaration.owned and self.user_model is None:
                raise ConfigError(f"model {info.name} declares an owner field but no registered model is the users "
                                  "(meta 'owner': '_id')", key="models")

    @property
    def owned(self) -> list[ModelInfo]:
        """The models whose documents belong to a user through an owner field, in order."""
        return [info for info in self._infos if info.declaration.owned]

    def users(self) -> ModelInfo:
        """The model whose documents are the users; ``UnknownModelError`` when none is registered."""
        if self.user_model is None:
            raise UnknownModelError(f"no registered model is the users (meta 'owner': '_id'); models: {', '.join(self.names)}")
        return self.user_model

    def resolve(self, model: Any) -> ModelInfo:
        """The ``ModelInfo`` for a class, a ``ModelInfo`` or any accepted spelling of a name."""
        if isinstance(model, ModelInfo):
            return model
        if isinstance(model, type) and model in self._by_cls:
            return self._by_cls[model]
        if isinstance(model, str):
            info = self._by_name.get(model) or self._by_key.get(_key(model))
            if info is not None:
                return info
        valid = ", ".join(f"{i.name} ({_snake(i.name)}, {i.collection})" for i in self._infos)
        if isinstance(model, str):
            raise UnknownModelError(f"unknown model {model!r}; valid models: {valid}")
        if isinstance(model, type):
            raise UnknownModelError(f"{model.__name__} is not an astro_db model; valid models: {valid}")
        raise UnknownModelError(
            f"a model is a name or a model class, got {type(model).__name__} {_short(model)}; valid models: {valid}")

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._infos)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self._infos]


def _check_model(cls: Any) -> str:
    from .models.base import AstroDocument

    if not (isinstance(cls, type) and issubclass(cls, AstroDocument)):
        raise ConfigError(f"a model is a subclass of astro_db.models.AstroDocument, got {_short(cls)}", key="models")
    if cls._meta.get("abstract"):
        raise ConfigError(f"{cls.__name__} is abstract: register its concrete subclasses", key="models")
    return cls.__name__


def _check_collection(name: str, collection: Any) -> None:
    """A collection name MongoDB takes for an app's data: not empty, no ``$`` nor NUL, no
    ``system.`` prefix (the server's own), no leading or trailing dot."""
    if (not isinstance(collection, str) or not collection or "$" in collection or "\0" in collection
            or collection.startswith(("system.", ".")) or collection.endswith(".")):
        raise ConfigError(f"model {name}: {collection!r} is not a collection name for an app's data (not empty, no '$' "
                          f"nor NUL, no 'system.' prefix, no leading or trailing dot)", key="models")


def _check_sensitive(info: ModelInfo) -> None:
    """What a model would promise of a sensitive field that sealing (a fresh nonce each write, a
    ``Binary`` in place of the value) would silently break once a key is configured is refused:
    a sensitive primary key or owner field (documents are found by them), and

    - a unique index may hold a sensitive field only alone and ``queryable``: then its blind
      index (``emailIndex_1``: the same value gives the same key) keeps the field unique; on the
      ciphertext itself, or beside other fields, it would never see two equal values;
    - a TTL index (``expireAfterSeconds``) on a sealed date would never expire anything (the
      server expires dates, and it would hold ciphertext): the documents would be kept forever.

    A text index on a sealed field indexes ciphertext too, but promises nothing a caller could
    miss: ``$text`` on such a model is a ``QueryError`` (``PlanetaryInsight`` declares one, as
    the Node service's schema does: docs/security.md)."""
    from .indexes import declared_indexes
    from .security.fieldpaths import norm_path, sensitive_fields

    queryable = {(info.name, path) for path in info.declaration.queryable}
    sensitive = {norm_path(f.path): f.deterministic for f in sensitive_fields(info.name, info.cls, queryable)}
    if not sensitive:
        return
    if "_id" in sensitive:
        raise ConfigError(f"model {info.name}: its primary key is sensitive=True: a sealed _id (a fresh nonce each "
                          "write) could never be found again, nor named by a change record or a reference; keep the "
                          "secret in a field of its own", key="models")
    owner = info.declaration.owner
    if info.declaration.owned and owner in sensitive:
        raise ConfigError(f"model {info.name}: its owner field {owner} is sensitive=True: a self actor's scope, "
                          "export and erasure find a user's documents by it, and would find none sealed; an owner "
                          "is a user's id, not a secret", key="models")
    for spec in declared_indexes(info):
        fields = [norm_path(field) for field, _ in spec["key"]]
        sealed = [f for f in fields if f in sensitive]
        if not sealed:
            continue
        named = f"model {info.name}: the index {spec['name']} holds the sensitive field(s) {', '.join(sealed)}"
        if "expireAfterSeconds" in spec:
            raise ConfigError(f"{named}: a TTL index expires dates, and a sealed field holds ciphertext, so nothing "
                              "would ever expire; keep the expiry date in a field that is not sensitive", key="models")
        if not spec.get("unique") or (len(fields) == 1 and sensitive[sealed[0]]):
            continue
        remedy = ("declare it queryable (meta 'queryable'): a unique blind index then keeps it unique" if len(fields) == 1
                  else "a unique index holds a sensitive field alone, queryable (its blind index keeps it unique)")
        raise ConfigError(f"{named}, sealed with a fresh nonce each write: once a key is configured the unique index "
                          f"would never see two equal values, and nothing would be unique; {remedy}", key="models")


def _check_user_ids(info: ModelInfo) -> None:
    """The users' model keeps ObjectId ids: every owner field (``UserRefField``), an actor's id,
    ``export_user``/``erase_user`` and the erasure ledger name a user by one. An app whose users
    have other ids (an auth provider's ``"auth0|123"``) keeps them in a field of their own."""
    from mongoengine.fields import ObjectIdField

    key = info.cls._fields.get(info.cls._reverse_db_field_map.get("_id", ""))
    if key is not None and not isinstance(key, ObjectIdField):
        raise ConfigError(f"model {info.name} is the users (meta 'owner': '_id') with a {type(key).__name__} _id: the "
                          "users' ids are ObjectIds (owner fields, actors, export and erasure name a user by one); "
                          "keep another id (an auth provider's) in a field of its own, with a unique index",
                          key="models")


def _check_fields(name: str, cls: Any) -> None:
    """Each stored name of a model, and of the documents embedded in it, belongs to one field:
    no two fields stored under one name (the second would shadow the first in every query and
    update), none under a name the service writes itself (``createdAt``, ``updatedAt`` and ``__v``
    as ``AstroDocument`` declares them, ``_rev``, ``_op``: a field the service overwrites, or
    whose every write is refused), none under a prototype key (refused in stored data)."""
    from mongoengine.fields import EmbeddedDocumentField

    from .models.base import AstroDocument
    from .models.plan import SERVICE_FIELDS
    from .query.filters import PROTOTYPE_KEYS

    base = AstroDocument._fields
    seen: set[Any] = set()

    def walk(doc_cls: Any, prefix: str, top: bool) -> None:
        if doc_cls in seen:
            return
        seen.add(doc_cls)
        stored: dict[str, str] = {}
        for attr, declared in doc_cls._fields.items():
            where = f"{prefix}{declared.db_field}"
            if declared.db_field in stored:
                raise ConfigError(f"model {name}: fields {prefix}{stored[declared.db_field]} and {prefix}{attr} are both "
                                  f"stored as {where!r}", key="models")
            stored[declared.db_field] = attr
            if declared.db_field in PROTOTYPE_KEYS:
                raise ConfigError(f"model {name}: field {prefix}{attr} is stored as {where!r}, a key JavaScript readers "
                                  f"take for an object's prototype (refused in stored data)", key="models")
            if top and declared.db_field in SERVICE_FIELDS and not (
                    attr in base and base[attr].db_field == declared.db_field and type(base[attr]) is type(declared)):
                raise ConfigError(f"model {name}: field {attr} is stored as {where!r}, which the service writes itself",
                                  key="models")
            for holder in (declared, getattr(declared, "field", None)):  # the field, or a list's items
                if isinstance(holder, EmbeddedDocumentField):
                    walk(holder.document_type, f"{where}.", False)

    walk(cls, "", True)


_default: ModelRegistry | None = None


def default_registry() -> ModelRegistry:
    """The registry of astro_db's four models (built on first use)."""
    global _default
    if _default is None:
        from .models import MODELS

        _default = ModelRegistry(MODELS.values() if isinstance(MODELS, dict) else MODELS)
    return _default


def registry_for(models: Iterable[Any] = (), *, builtin_models: bool = True) -> ModelRegistry:
    """The registry of one ``Database``: the built-in models (unless ``builtin_models=False``)
    followed by the app's ``models``; a ``ConfigError`` for a model registered twice, a collection
    or name two models share, or a declaration that does not hold."""
    if isinstance(models, (str, bytes)) or isinstance(models, type):
        raise ConfigError("models is a list of model classes", key="models")
    extra = list(models or ())
    if builtin_models and not extra:
        return default_registry()
    base = [info.cls for info in default_registry()] if builtin_models else []
    return ModelRegistry([*base, *extra])


def load_models(spec: str | Iterable[str] | None) -> list[Any]:
    """The model classes ``spec`` names, for configuration given as text (``astro-db --models``,
    ``ASTRO_DB_MODELS``): comma-separated ``package.module:Class``, or ``package.module`` for
    every concrete ``AstroDocument`` subclass that module defines, in definition order. A name
    that does not import or is not a model is a ``ConfigError``."""
    import importlib

    from .models.base import AstroDocument

    if not spec:
        return []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[Any] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        module_name, _, attr = part.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"models: cannot import {module_name!r} ({exc})", key="models") from None
        if attr:
            if not hasattr(module, attr):
                raise ConfigError(f"models: module {module_name!r} has no {attr!r}", key="models")
            found = [getattr(module, attr)]
        else:
            found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, AstroDocument)
                     and v.__module__ == module.__name__ and not v._meta.get("abstract")]
            if not found:
                raise ConfigError(f"models: module {module_name!r} defines no AstroDocument model", key="models")
        for cls in found:
            _check_model(cls)
            out.append(cls)
    return out

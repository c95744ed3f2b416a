"""Model names to Document classes: "BirthChart", "birth_chart" and "birthCharts" all resolve.

A name is resolved once per call here; every other module works with the ``ModelInfo`` it gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UnknownModelError

__all__ = ["ModelInfo", "ModelRegistry", "default_registry"]


@dataclass(frozen=True)
class ModelInfo:
    """What the service needs to know about one model."""

    name: str  # the class name, e.g. "BirthChart"
    cls: Any  # the MongoEngine Document class
    collection: str  # the stored collection name, e.g. "birthCharts"

    def __repr__(self) -> str:
        return f"<model {self.name} ({self.collection})>"


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
        for cls in models:
            info = ModelInfo(cls.__name__, cls, cls._get_collection_name())
            self._infos.append(info)
            for spelling in (info.name, _snake(info.name), info.collection):
                self._by_key[_key(spelling)] = info
        self._by_cls = {info.cls: info for info in self._infos}
        self._by_name = {info.name: info for info in self._infos}  # the common spelling, no regex

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

    def __iter__(self):
        return iter(self._infos)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self._infos]


_default: ModelRegistry | None = None


def default_registry() -> ModelRegistry:
    """The registry of astro_db's four models (built on first use)."""
    global _default
    if _default is None:
        from .models import MODELS

        _default = ModelRegistry(MODELS.values() if isinstance(MODELS, dict) else MODELS)
    return _default

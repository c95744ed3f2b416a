"""Masking for logs, reprs and error messages, built on the models' pure ``mask_value``.

``mask_text`` hides e-mail addresses (``a***@example.com``), the passwords and secret options of
connection URLs (``mask_url``, parsed as PyMongo parses them) and the body of encrypted-field
envelopes in free text. ``mask_document`` masks a stored (lean) document by its
model's field declarations. ``masked_errors`` rewrites a ``ValidationError`` so values of
masked fields never reach a message, and ``install_log_masking`` puts ``MaskingFilter`` on
astro_db's loggers and on PyMongo's command logger (whose DEBUG lines carry whole commands).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Iterator

from ..errors import QueryError, ValidationError, scrub
from ..models import paths
from ..models.masking import MASK, field_mask_kind, mask_value
from ..urls import mask_url

__all__ = ["mask_url", "mask_text", "mask_document", "masked_errors", "MaskingFilter", "install_log_masking"]

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*(@+)((?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,})")
_ENVELOPE = re.compile(r"\benc:(v1|d1|v2|e2):([0-9a-f]{8}):[A-Za-z0-9_\-]+")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)(?:'|$)|\"((?:[^\"\\]|\\.)*)(?:\"|$)")  # cut values lack the end quote
_PYMONGO_LOGGERS = ("pymongo.command", "pymongo.serverSelection", "pymongo.connection", "mongoengine")


def mask_text(text: str) -> str:
    """``text`` with e-mails, URL passwords and ciphertext bodies masked."""
    text = scrub(text)
    text = _EMAIL.sub(lambda m: f"{m[1]}{MASK}{m[2]}{m[3]}", text)  # "a@@b.co" keeps its mistake visible
    return _ENVELOPE.sub(lambda m: f"enc:{m[1]}:{m[2]}:{MASK}", text)


def mask_document(model_cls: type, doc: Any, prefix: str = "") -> Any:
    """A copy of a stored document with every masked field's value masked (for logs, exports)."""
    if isinstance(doc, list):
        return [mask_document(model_cls, item, prefix) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        kind = _kind(model_cls, prefix + key)
        if kind and not isinstance(value, (dict, list)):
            out[key] = mask_value(kind, value)
        elif isinstance(value, (dict, list)):
            out[key] = mask_document(model_cls, value, prefix + key + ".")
        else:
            out[key] = value
    return out


def _kind(model_cls: type, path: str) -> str | None:
    try:
        return field_mask_kind(paths.resolve(model_cls, path).field)
    except QueryError:
        return None


@contextlib.contextmanager
def masked_errors(model_cls: type) -> Iterator[None]:
    """Re-raise a ``ValidationError`` with the values of masked fields hidden in its messages.

    A rejected e-mail value is shown as far as privacy allows: a value with no address shape as
    it was sent (``'nope-not-email'``), an address-like one with its local part masked and its
    mistake visible (``'z***@@example.com'``), not as an opaque ``'***'``. Names and sensitive
    values stay masked."""
    try:
        yield
    except ValidationError as exc:
        original = dict(exc.errors)
        rebuilt = str(exc) == "; ".join(f"{f}: {m}" for f, m in original.items())
        for key, message in original.items():
            kind = _kind(model_cls, key)
            if kind and kind != "email":
                message = _QUOTED.sub(lambda m: repr(mask_value(kind, m[1] if m[1] is not None else m[2])), message)
            exc.errors[key] = mask_text(message)
        text = "; ".join(f"{f}: {m}" for f, m in exc.errors.items()) if rebuilt else mask_text(str(exc))
        exc.args = (text,)
        raise


class MaskingFilter(logging.Filter):
    """Formats a record's message now and masks it (e-mails, passwords, ciphertext)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return True
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = MaskingFilter()


def install_log_masking() -> None:
    """Attach the masking filter (once) to every astro_db logger and PyMongo's command loggers."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == "astro_db" or n.startswith("astro_db.")]
    for name in (*names, "astro_db", *_PYMONGO_LOGGERS):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

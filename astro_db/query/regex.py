"""The regex policy: which patterns a caller may send, wherever a regex is taken.

A backtracking engine (the server's PCRE, the embedded backend's ``re``) can take exponential
time when one piece of text can be matched in many ways. That needs a repeated group whose body
can match in more than one way: ``(a+)+``, ``(\\w+\\s?)+``, ``(a|a)*``, ``(a|aa)+``. The policy
refuses, structurally, before anything is sent:

- a pattern longer than ``MAX_REGEX_LENGTH`` characters, or one that does not parse;
- a quantifier that repeats more than once (``*``, ``+``, ``{n,}``, ``{n,m}`` with m > 1; ``?``
  is fine) applied to a group holding a variable-length quantifier or an alternation ``|``;
- backreferences, conditionals and lookarounds (outside the policy's reasoning);
- more than ``MAX_REGEX_QUANTIFIERS`` variable-length quantifiers (``.*.*.*...`` is polynomial
  with a degree the caller chooses).

The tree is read with Python's own parser (``re._parser``), so what is checked is what the
pattern means, not what it looks like. That parser turns a one-character alternation into a
character set (``(a|a)`` becomes ``[a]``), so alternations are found on the source text instead,
by a scanner that knows escapes, classes and groups. ``check_regex`` is the one entry point used
by ``$regex``, ``$not``, regex values, and ``$regexMatch`` / ``$regexFind`` / ``$regexFindAll``.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre  # type: ignore[import-not-found]  # private stdlib module: typeshed has no stub
import re._parser as sre_parse  # type: ignore[import-not-found]  # private stdlib module: typeshed has no stub
from typing import Any

from bson.regex import Regex

from ..errors import QueryError

__all__ = ["MAX_REGEX_LENGTH", "MAX_REGEX_QUANTIFIERS", "check_regex", "check_regex_options", "clear_cache"]

MAX_REGEX_LENGTH = 256
MAX_REGEX_QUANTIFIERS = 6

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_LOOKAROUNDS = {sre.ASSERT, sre.ASSERT_NOT}
_REFERENCES = {sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE, sre.GROUPREF_LOC_IGNORE,
               sre.GROUPREF_UNI_IGNORE}
_ATOMIC = getattr(sre, "ATOMIC_GROUP", None)
_INLINE_VERBOSE = re.compile(r"\(\?[a-zA-Z]*x")
_VERBOSE_COMMENT = re.compile(r"(?<!\\)#")
_BRACE = re.compile(r"\{(\d*)(,?)(\d*)\}")
_OPTIONS = re.compile(r"[imxs]*")


def check_regex(pattern: Any, where: str, options: str | int = "") -> None:
    """Refuse ``pattern`` with a ``QueryError`` naming ``where`` and the construct.

    ``pattern`` is a string, ``re.Pattern`` or ``bson.Regex``; ``options`` are its ``$options``
    letters or ``re`` flags (verbose mode changes what the pattern means, so it is parsed with it).
    """
    if isinstance(pattern, (re.Pattern, Regex)):
        pattern, options = pattern.pattern, pattern.flags
    if isinstance(pattern, bytes) or not isinstance(pattern, str):
        raise QueryError(f"regex on {where!r} must be a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise QueryError(f"regex on {where!r} is {len(pattern)} characters; at most {MAX_REGEX_LENGTH}")
    problem = _judge(pattern, _is_verbose(pattern, options))
    if problem is not None:
        raise QueryError(problem.format(where=repr(where)))


@functools.lru_cache(maxsize=1024)
def _judge(pattern: str, verbose: bool) -> str | None:
    """The refusal message for ``pattern`` (``{where}`` left to fill), or None; cached, as
    the same few patterns come back on every request."""
    try:
        tree = sre_parse.parse(pattern, re.VERBOSE if verbose else 0)
    except (re.error, RecursionError, OverflowError) as exc:
        return "invalid regex on {where}: " + str(exc).replace("{", "{{").replace("}", "}}")
    problem = _tree_problem(list(tree)) or _comment_problem(pattern, verbose) or _alternation_problem(pattern)
    if problem is None and _count_variable(list(tree)) > MAX_REGEX_QUANTIFIERS:
        problem = f"more than {MAX_REGEX_QUANTIFIERS} variable-length quantifiers"
    if problem is None:
        return None
    return ("regex on {where} is refused: " + problem + " (the regex policy refuses what can make "
            "matching take exponential time); match a prefix (^abc) or a simpler pattern")


def clear_cache() -> None:
    """Forget the cached verdicts (tests judge every pattern afresh)."""
    _judge.cache_clear()


def check_regex_options(options: Any, where: str) -> None:
    """``$options`` may only hold the flags i, m, x, s."""
    if not isinstance(options, str) or not _OPTIONS.fullmatch(options):
        raise QueryError(f"regex options on {where!r} may only hold the flags i, m, x, s")


def _is_verbose(pattern: str, options: str | int) -> bool:
    if isinstance(options, int):
        return bool(options & re.VERBOSE)
    return "x" in str(options) or bool(_INLINE_VERBOSE.search(pattern))


def _comment_problem(pattern: str, verbose: bool) -> str | None:
    """Comments could hide a group's bounds from the alternation scanner: refuse them."""
    if "(?#" in pattern or (verbose and _VERBOSE_COMMENT.search(pattern)):
        return "a comment (write the pattern without one)"
    return None


def _is_variable(lo: int, hi: int) -> bool:
    return lo != hi


def _tree_problem(items: list[Any]) -> str | None:
    """The first refused construct in a parsed (sub)pattern, described; None if it is safe."""
    for op, av in items:
        if op in _REPEATS:
            lo, hi, body = av
            body = list(body)
            if hi > 1 and _has_variable_repeat(body):
                return "a repeated group that itself holds a quantifier (like (a+)+)"
            found = _tree_problem(body)
        elif op in _LOOKAROUNDS:
            found = "a lookahead or lookbehind"
        elif op in _REFERENCES:
            found = "a backreference or conditional group"
        else:
            found = next((p for child in _children(op, av) if (p := _tree_problem(child))), None)
        if found:
            return found
    return None


def _children(op: Any, av: Any) -> list[list[Any]]:
    if op in _REPEATS:
        return [list(av[2])]
    if op is sre.SUBPATTERN:
        return [list(av[-1])]
    if op is sre.BRANCH:
        return [list(b) for b in av[1]]
    if op in _LOOKAROUNDS:
        return [list(av[1])]
    if op is _ATOMIC:
        return [list(av)]
    return []


def _has_variable_repeat(items: list[Any]) -> bool:
    for op, av in items:
        if op in _REPEATS and _is_variable(av[0], av[1]):
            return True
        if any(_has_variable_repeat(child) for child in _children(op, av)):
            return True
    return False


def _count_variable(items: list[Any]) -> int:
    total = 0
    for op, av in items:
        if op in _REPEATS and _is_variable(av[0], av[1]):
            total += 1
        total += sum(_count_variable(child) for child in _children(op, av))
    return total


def _alternation_problem(pattern: str) -> str | None:
    """A ``|`` inside a group that is repeated more than once, found on the source text."""
    groups: list[bool] = []  # per open group: holds a "|" (its own or a nested group's)
    closed_with_alt = False  # the token just read closed a group holding a "|"
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i, closed_with_alt = i + 2, False
            continue
        if c == "[":
            i, closed_with_alt = _class_end(pattern, i), False
            continue
        if c.isspace():  # verbose mode: "(a|a) *" is still a repeated group
            i += 1
            continue
        if c == "(":
            groups.append(False)
        elif c == ")":
            holds = groups.pop() if groups else False
            if holds and groups:
                groups[-1] = True
            i, closed_with_alt = i + 1, holds
            continue
        elif c == "|" and groups:
            groups[-1] = True
        elif closed_with_alt and _repeats_many(pattern, i):
            return "a repeated group holding an alternation (like (a|aa)+)"
        i, closed_with_alt = i + 1, False
    return None


def _repeats_many(pattern: str, i: int) -> bool:
    if pattern[i] in "*+":
        return True
    brace = _BRACE.match(pattern, i)
    if brace is None or not (brace[1] or brace[3]):
        return False
    high = brace[3] if brace[2] else brace[1]
    return not high or int(high) > 1


def _class_end(pattern: str, i: int) -> int:
    """The index just past the character class that opens at ``i``."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1

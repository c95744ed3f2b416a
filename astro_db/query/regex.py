"""The regex policy: which patterns a caller may send, wherever a regex is taken.

A backtracking engine (the server's PCRE, the embedded backend's ``re``) can take exponential
time when one piece of text can be matched in many ways, and polynomial time of a high degree
when several quantifiers in a row can each take the same characters (``\\w*\\w*\\w*!``: every way
of splitting a run of letters between them is tried). The policy decides, before anything is
sent, from the pattern's parse tree (Python's own parser, ``re._parser``, with the caller's
options applied, so what is judged is what the pattern means):

1. Structure (exponential shapes and what the model cannot reason about), refused outright: a
   pattern longer than ``MAX_REGEX_LENGTH`` or that does not parse; a quantifier that repeats
   more than once (``*``, ``+``, ``{n,}``, ``{n,m}`` with m > 1) applied to a group holding a
   variable-length quantifier or an alternation; backreferences, conditionals, lookarounds and
   comments.
2. Cost (polynomial shapes): a bound on the backtracking steps of one search, as a polynomial in
   ``n``, the length of the string matched (``_cost``). Along the pattern, a variable quantifier
   multiplies the ways of going on by its number of possible ends (``n + 1`` if unbounded,
   ``m - k + 1`` for ``{k,m}``), unless what must come after it cannot start with a character it
   takes (then only its longest match can go on: ``[a-z]+@``) or nothing after it can fail. A
   search tries every start (``n + 1`` times what a failing attempt may cost) unless anchored
   with ``^``/``\\A``. ``check_regex`` evaluates the bound at ``max_input``, the longest string
   the pattern may meet (a model field's ``max_length``, a literal's length), against
   ``MAX_REGEX_COST``; with no known bound the cost must be linear in ``n``.

``check_regex`` is the one entry point used by ``$regex``, ``$not``, regex values, ``$pull``
conditions and ``$regexMatch`` / ``$regexFind`` / ``$regexFindAll``. One parser quirk is handled
on the source text: Python turns a one-character alternation into a character set (``(a|a)``
becomes ``[a]``), PCRE does not, so alternations are found by a scanner that knows escapes,
classes and groups.
"""

from __future__ import annotations

import contextlib
import functools
import re
import re._constants as sre  # type: ignore[import-not-found]  # private stdlib module: typeshed has no stub
import re._parser as sre_parse  # type: ignore[import-not-found]  # private stdlib module: typeshed has no stub
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

from bson.regex import Regex

from ..errors import QueryError

__all__ = [
    "MAX_REGEX_LENGTH", "MAX_REGEX_COST", "MAX_REGEX_INPUT", "MAX_STEPS_PER_CHAR", "check_regex",
    "check_regex_input", "check_regex_options", "clear_cache", "regex_cost", "unknown_input_lengths",
]

MAX_REGEX_LENGTH = 256
MAX_REGEX_COST = 10_000_000  # steps of one search, in the worst case over every input the bound allows
MAX_REGEX_INPUT = 16_384  # the longest literal string a pipeline may match a regex against
MAX_STEPS_PER_CHAR = 1_000  # with no bound on the input: the cost must be at most this many steps per character

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_LOOKAROUNDS = {sre.ASSERT, sre.ASSERT_NOT}
_REFERENCES = {sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE, sre.GROUPREF_LOC_IGNORE,
               sre.GROUPREF_UNI_IGNORE}
_ATOMIC = getattr(sre, "ATOMIC_GROUP", None)
_POSSESSIVE = getattr(sre, "POSSESSIVE_REPEAT", None)
_INLINE_VERBOSE = re.compile(r"\(\?[a-zA-Z]*x")
_VERBOSE_COMMENT = re.compile(r"(?<!\\)#")
_BRACE = re.compile(r"\{(\d*)(,?)(\d*)\}")
_OPTIONS = re.compile(r"[imxs]*")
_OPTION_FLAGS: dict[str, int] = {"i": int(re.IGNORECASE), "m": int(re.MULTILINE), "s": int(re.DOTALL),
                                 "x": int(re.VERBOSE)}  # plain ints: RegexFlag arithmetic is slow
_FLAG_MASK = int(re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
_ADVICE = "match a prefix (^abc) or a simpler pattern"
_UNKNOWN_LENGTHS: ContextVar[bool] = ContextVar("astro_db_regex_unknown_lengths", default=False)


@contextlib.contextmanager
def unknown_input_lengths() -> Iterator[None]:
    """Within the block, every regex is judged as if the length of what it meets were unknown
    (``max_input=None``: linear patterns only), whatever bound its caller gives: for a ``$match``
    after a pipeline stage that may have rewritten the fields it names (``$addFields``,
    ``$project``, ``$set``, ``$group``, ...), where the model's bounds no longer hold."""
    token = _UNKNOWN_LENGTHS.set(True)
    try:
        yield
    finally:
        _UNKNOWN_LENGTHS.reset(token)


def check_regex(pattern: Any, where: str, options: str | int = "", *, max_input: int | None = None,
                all_matches: bool = False) -> None:
    """Refuse ``pattern`` with a ``QueryError`` naming ``where`` and the rule it breaks.

    ``pattern`` is a string, ``re.Pattern`` or ``bson.Regex``; ``options`` are its ``$options``
    letters or ``re`` flags (they change what the pattern means, so it is judged with them).
    ``max_input`` is the longest string the pattern may be matched against (``None``: unknown,
    then only patterns whose cost is linear in the input pass); ``all_matches`` is for
    ``$regexFindAll``, which searches again after every match.
    """
    if isinstance(pattern, (re.Pattern, Regex)):
        pattern, options = pattern.pattern, pattern.flags
    if isinstance(pattern, bytes) or not isinstance(pattern, str):
        raise QueryError(f"regex on {where!r} must be a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise QueryError(f"regex on {where!r} is {len(pattern)} characters; at most {MAX_REGEX_LENGTH}")
    if _UNKNOWN_LENGTHS.get():
        max_input = None
    problem = _judge(pattern, _flags(options), max_input, all_matches)
    if problem is not None:
        raise QueryError(problem.format(where=repr(where)))


def check_regex_input(value: Any, where: str) -> int | None:
    """The length bound of what a ``$regexMatch`` / ``$regexFind`` / ``$regexFindAll`` searches:
    a literal string's length (at most ``MAX_REGEX_INPUT``), None for a field path or an
    expression (its length is not known before the pipeline runs)."""
    if isinstance(value, Mapping) and set(value) == {"$literal"}:
        value = value["$literal"]
    elif isinstance(value, str) and value.startswith("$"):
        return None
    if not isinstance(value, str):
        return None
    if len(value) > MAX_REGEX_INPUT:
        raise QueryError(f"the input of the regex in {where} is a literal of {len(value)} characters; "
                         f"at most {MAX_REGEX_INPUT}")
    return len(value)


def regex_cost(pattern: str, options: str | int = "", *, max_input: int | None = None,
               all_matches: bool = False) -> tuple[int, ...]:
    """The cost bound of a pattern that passes the structural rules: the coefficients of a
    polynomial in the input length n (lowest degree first; with ``max_input``, counts that cannot
    exceed it are cut to it), a bound on the steps of one search for every input of length n;
    a ``QueryError`` if the pattern breaks a structural rule."""
    flags = _flags(options)
    tree, problem = _parse(pattern, flags)
    if tree is None:
        raise QueryError(problem.format(where="the pattern"))
    return _search_cost(tree, max_input, all_matches)


def _parse(pattern: str, flags: int) -> tuple[Any, str]:
    """The parse tree the cost is judged on, or None and the refusal message (``{where}`` left
    to fill) for a pattern that does not parse or breaks a structural rule."""
    try:
        problem = _structure_problem(pattern, sre_parse.parse(pattern, flags), flags)
        tree = sre_parse.parse(_unfold(pattern), flags)
    except (re.error, RecursionError, OverflowError) as exc:
        return None, "invalid regex on {where}: " + str(exc).replace("{", "{{").replace("}", "}}")
    if problem is not None:
        return None, ("regex on {where} is refused: " + problem + " (the regex policy refuses what can "
                      "make matching take exponential time); " + _ADVICE)
    return tree, ""


@functools.lru_cache(maxsize=1024)
def _judge(pattern: str, flags: int, max_input: int | None, all_matches: bool) -> str | None:
    """The refusal message for ``pattern`` (``{where}`` left to fill), or None; cached, as
    the same few patterns and bounds come back on every request."""
    tree, problem = _parse(pattern, flags)
    if tree is None:
        return problem
    cost = _search_cost(tree, max_input, all_matches)
    if max_input is None:
        if len(cost) <= 2 and max(cost) <= MAX_STEPS_PER_CHAR:
            return None
        return ("regex on {where} is refused by the cost rule: its worst case grows like "
                + _growth(cost) + " in the length n of an input whose length is not bounded here "
                "(only patterns linear in n, at most " + f"{MAX_STEPS_PER_CHAR} steps per character, "
                "are accepted); anchor it (^abc), or make each quantifier stop at a character "
                "what follows it cannot start with")
    steps = _evaluate(cost, max_input)
    if steps <= MAX_REGEX_COST:
        return None
    return ("regex on {where} is refused by the cost rule: its worst case is about " + f"{steps:.1e} "
            f"backtracking steps on the {max_input} characters it may be matched against (at most "
            f"{MAX_REGEX_COST:.0e}); quantifiers in a row that can take the same characters "
            "(like .*.*x or \\w*\\w*!) multiply: anchor it (^abc), or make each quantifier stop at a "
            "character what follows it cannot start with")


def _flags(options: str | int) -> int:
    """The ``re`` flags of the caller's options (letters i m s x, or flags)."""
    if isinstance(options, int):
        return int(options) & _FLAG_MASK
    return _letter_flags(str(options))


@functools.lru_cache(maxsize=64)
def _letter_flags(letters: str) -> int:
    flags = 0
    for letter in letters:
        flags |= _OPTION_FLAGS.get(letter, 0)
    return flags


def _structure_problem(pattern: str, tree: Any, flags: int) -> str | None:
    verbose = bool(flags & re.VERBOSE) or bool(_INLINE_VERBOSE.search(pattern))
    return _tree_problem(list(tree)) or _comment_problem(pattern, verbose) or _alternation_problem(pattern)


def clear_cache() -> None:
    """Forget the cached verdicts (tests judge every pattern afresh)."""
    _judge.cache_clear()


def check_regex_options(options: Any, where: str) -> None:
    """``$options`` may only hold the flags i, m, x, s."""
    if not isinstance(options, str) or not _OPTIONS.fullmatch(options):
        raise QueryError(f"regex options on {where!r} may only hold the flags i, m, x, s")


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


# --- the cost model ----------------------------------------------------------------------------
#
# Costs are polynomials in n, the length of the input, with non-negative coefficients (a tuple,
# lowest degree first): an upper bound for every n. With a known bound the counts that cannot
# exceed it are cut to it, so a {0,1000} meeting 100 characters counts 101 ends, not 1001.
#
# Character sets are over-approximated as bit masks: one bit per ASCII character, one for each
# non-ASCII character that case-folds onto an ASCII letter, and one per class of the other
# non-ASCII characters (Unicode decimal digits, other word characters, spaces, the rest, as
# Python's ``re`` sees them): two sets that might share a character are taken to share one, which
# can only raise a cost. ``\d \w \s`` differ between the engines (Python's are Unicode; the
# server's PCRE, without UCP, is ASCII only, so its ``\D \W \S`` take every non-ASCII character):
# the cost is computed for each and the larger kept.

Poly = tuple[int, ...]
_Chars = int

_ASCII = (1 << 128) - 1
_FOLDS = {0x212A: "k", 0x017F: "s", 0x0130: "i", 0x0131: "i"}  # KELVIN SIGN, LONG S, I WITH DOT, DOTLESS I
_FOLD_BITS = {code: 1 << (128 + i) for i, code in enumerate(_FOLDS)}
_FOLDED = functools.reduce(lambda m, b: m | b, _FOLD_BITS.values(), 0)  # all word characters
_OTHER_DIGIT, _OTHER_WORD, _OTHER_SPACE, _OTHER_REST = (1 << (128 + len(_FOLDS) + i) for i in range(4))
_OTHERS = _OTHER_DIGIT | _OTHER_WORD | _OTHER_SPACE | _OTHER_REST
_NON_ASCII = _FOLDED | _OTHERS
_EVERYTHING = _ASCII | _NON_ASCII
_NOTHING: _Chars = 0
_PCRE = 1 << 30  # a flag bit beside re's flags: judge with the server's engine's classes


def _mask(chars: str) -> int:
    return functools.reduce(lambda m, c: m | (1 << ord(c)), chars, 0)


_DIGITS = _mask("0123456789")
_LETTERS = _mask("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _DIGITS | _LETTERS | _mask("_")
_SPACE = _mask(" \t\n\r\f\v\x1c\x1d\x1e\x1f")
_PCRE_SPACE = _mask(" \t\n\r\f\v")
_NEWLINE = _mask("\n")
# the classes the parser emits (\d \D \w \W \s \S); anything else counts as every character
_CATEGORIES: dict[Any, _Chars] = {  # Python's re: Unicode classes
    sre.CATEGORY_DIGIT: _DIGITS | _OTHER_DIGIT,
    sre.CATEGORY_NOT_DIGIT: (_ASCII & ~_DIGITS) | _FOLDED | _OTHER_WORD | _OTHER_SPACE | _OTHER_REST,
    sre.CATEGORY_WORD: _WORD | _FOLDED | _OTHER_DIGIT | _OTHER_WORD,
    sre.CATEGORY_NOT_WORD: (_ASCII & ~_WORD) | _OTHER_SPACE | _OTHER_REST,
    sre.CATEGORY_SPACE: _SPACE | _OTHER_SPACE,
    sre.CATEGORY_NOT_SPACE: (_ASCII & ~_SPACE) | _FOLDED | _OTHER_DIGIT | _OTHER_WORD | _OTHER_REST,
}
_PCRE_CATEGORIES: dict[Any, _Chars] = {  # PCRE without UCP: ASCII classes
    sre.CATEGORY_DIGIT: _DIGITS, sre.CATEGORY_NOT_DIGIT: (_ASCII & ~_DIGITS) | _NON_ASCII,
    sre.CATEGORY_WORD: _WORD, sre.CATEGORY_NOT_WORD: (_ASCII & ~_WORD) | _NON_ASCII,
    sre.CATEGORY_SPACE: _PCRE_SPACE, sre.CATEGORY_NOT_SPACE: (_ASCII & ~_PCRE_SPACE) | _NON_ASCII,
}
_CLASSES = ((re.compile(r"\d"), _OTHER_DIGIT), (re.compile(r"\w"), _OTHER_WORD), (re.compile(r"\s"), _OTHER_SPACE))
_ENDS = {sre.AT_END}  # $ : at the end or before a newline (the parser emits no other end)
_STARTS = {sre.AT_BEGINNING_STRING}  # \A ; ^ too unless multi-line


class _Next(NamedTuple):
    """What may follow a point of the pattern: the characters it can start with, and whether
    the rest of the pattern can match nothing at all (then the search succeeds from there)."""

    first: _Chars
    done: bool


_END = _Next(_NOTHING, True)


def _union(a: _Chars, b: _Chars) -> _Chars:
    return a | b


def _meets(a: _Chars, b: _Chars) -> bool:
    return bool(a & b)


def _char(code: int) -> _Chars:
    if code < 128:
        return 1 << code
    if code in _FOLD_BITS:
        return _FOLD_BITS[code]
    return next((bit for pattern, bit in _CLASSES if pattern.match(chr(code))), _OTHER_REST)


def _span(low: int, high: int) -> _Chars:
    found = _ASCII & ((1 << (min(high, 127) + 1)) - (1 << low)) if low < 128 else 0
    if high >= 128:
        found |= _OTHERS | functools.reduce(lambda m, c: m | _FOLD_BITS[c] if low <= c <= high else m, _FOLD_BITS, 0)
    return found


def _complement(found: _Chars) -> _Chars:
    """Every character not in ``found``: exact for ASCII and the folding characters; a class of
    the other non-ASCII ones is never wholly in a set built from characters and ranges."""
    return (_EVERYTHING & ~found) | _OTHERS


def _fold(found: _Chars) -> _Chars:
    """Both cases of every letter, the non-ASCII characters that fold onto them and back."""
    letters = found & _LETTERS
    found |= ((letters >> 32) | (letters << 32)) & _LETTERS
    for code, letter in _FOLDS.items():
        pair = _mask(letter + letter.upper())
        if found & (pair | _FOLD_BITS[code]):
            found |= pair | _FOLD_BITS[code]
    return found


def _chars_of(op: Any, av: Any, flags: int) -> _Chars | None:
    """The characters one consuming item can match; None if ``op`` consumes no character."""
    if op is sre.LITERAL:
        found = _char(av)
    elif op is sre.NOT_LITERAL:
        found = _complement(_char(av))
    elif op is sre.ANY:
        found = _EVERYTHING if flags & re.DOTALL else _EVERYTHING & ~_NEWLINE
    elif op is sre.IN:
        found, negate = _NOTHING, False
        for kind, value in av:
            if kind is sre.NEGATE:
                negate = True
            elif kind is sre.LITERAL:
                found |= _char(value)
            elif kind is sre.RANGE:
                found |= _span(*value)
            else:  # a category (\d \w \s ...), or anything else: everything
                found |= (_PCRE_CATEGORIES if flags & _PCRE else _CATEGORIES).get(value, _EVERYTHING)
        if negate:
            found = _complement(found)
    else:
        return None
    return _fold(found) if flags & re.IGNORECASE else found


def _scoped(av: Any, flags: int) -> int:
    _group, add, remove, _body = av
    return int((flags | add) & ~remove)


def _next(items: list[Any], flags: int, after: _Next) -> _Next:
    """What may follow the point just before ``items``, given what follows them."""
    for op, av in reversed(items):
        after = _next_item(op, av, flags, after)
    return after


def _next_item(op: Any, av: Any, flags: int, after: _Next) -> _Next:
    chars = _chars_of(op, av, flags)
    if chars is not None:
        return _Next(chars, False)
    if op is sre.AT:  # zero width, and it can fail
        if av in _ENDS:
            return _Next(_NEWLINE, False)
        return _Next(_NOTHING, False) if av is sre.AT_END_STRING else _Next(after.first, False)
    if op is sre.SUBPATTERN:
        return _next(list(av[-1]), _scoped(av, flags), after)
    if op is _ATOMIC:
        return _next(list(av), flags, after)
    if op is sre.BRANCH:
        ways = [_next(list(branch), flags, after) for branch in av[1]]
        return _Next(functools.reduce(_union, (w.first for w in ways), _NOTHING), any(w.done for w in ways))
    if op in _REPEATS:
        low, high, body = av
        if high == 0:
            return after
        # an iteration is followed by another or by what follows: zero-width parts of the body
        # (\b) let both through
        once = _next(list(body), flags, after)
        first = _union(once.first, _next(list(body), flags, _END).first) if high > 1 else once.first
        if low == 0 or once.done:
            return _Next(_union(first, after.first), after.done)
        return _Next(first, False)
    return _Next(_EVERYTHING, False)  # anything else: assume the worst


def _add(a: Poly, b: Poly) -> Poly:
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    return tuple(x + (shorter[i] if i < len(shorter) else 0) for i, x in enumerate(longer))


def _mul(a: Poly, b: Poly) -> Poly:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return tuple(out)


def _top(a: Poly, b: Poly) -> Poly:
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    return tuple(max(x, shorter[i] if i < len(shorter) else 0) for i, x in enumerate(longer))


def _evaluate(poly: Poly, n: int) -> int:
    return sum(c * n ** i for i, c in enumerate(poly))


def _growth(poly: Poly) -> str:
    degree = max((i for i, c in enumerate(poly) if c), default=0)
    return "n" if degree == 1 else f"n^{degree}" if degree else "a constant"


_ONE: Poly = (1,)
_N: Poly = (0, 1)  # what one quantifier reads: at most n characters
_N1: Poly = (1, 1)  # the ends of an unbounded quantifier: n + 1


def _count(high: int, n: int | None) -> Poly:
    """At most ``high`` (``MAXREPEAT``: unbounded), and never more than ``n + 1``."""
    if high >= sre.MAXREPEAT:
        return _N1 if n is None else (n + 1,)
    return (high if n is None else min(high, n + 1),)


def _cost(items: list[Any], flags: int, after: _Next, n: int | None) -> tuple[Poly, Poly, Poly]:
    """For ``items`` followed by ``after``: how many ways an attempt may leave them (each tried
    in turn by backtracking), the steps spent in them per entry, and the part of those steps an
    attempt that fails can spend (what comes once the rest can match nothing is never failed)."""
    items = _split(items)
    follows = [after]
    for op, av in reversed(items):
        follows.append(_next_item(op, av, flags, follows[-1]))
    follows.reverse()  # follows[i]: what may follow the point before items[i]
    ways: Poly = _ONE
    steps: Poly = (0,)
    failing: Poly = (0,)
    for i, (op, av) in enumerate(items):
        out, work, fails = _cost_item(op, av, flags, follows[i + 1], n)
        steps = _add(steps, _mul(ways, work))
        if not follows[i].done:
            failing = _add(failing, _mul(ways, fails))
        ways = _mul(ways, out)
    return ways, steps, failing


def _split(items: list[Any]) -> list[Any]:
    """``x{k,m}`` as ``x{k}x{0,m-k}`` (the same matches): its mandatory part can fail, the rest
    only if what follows it can."""
    out = []
    for op, av in items:
        if op in _REPEATS and 0 < av[0] < av[1] and av[1] > 1:
            low, high, body = av
            out.append((op, (low, low, body)))
            av = (0, high if high >= sre.MAXREPEAT else high - low, body)
        out.append((op, av))
    return out


def _cost_item(op: Any, av: Any, flags: int, after: _Next, n: int | None) -> tuple[Poly, Poly, Poly]:
    """(ways out, steps per entry, steps of a failing attempt) of one item followed by ``after``."""
    if _chars_of(op, av, flags) is not None or op is sre.AT:
        return _ONE, _ONE, _ONE
    if op is sre.SUBPATTERN:
        return _cost(list(av[-1]), _scoped(av, flags), after, n)
    if op is _ATOMIC:  # never re-entered: one way out
        return (_ONE, *_cost(list(av), flags, after, n)[1:])
    if op is sre.BRANCH:
        branches = [list(branch) for branch in av[1]]
        costs = [_cost(branch, flags, after, n) for branch in branches]
        firsts = [_next(branch, flags, after).first for branch in branches]
        disjoint = all(not _meets(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:])
        combine = _top if disjoint else _add  # disjoint starts: only one branch gets past its first character
        out = functools.reduce(combine, (c[0] for c in costs))
        work = functools.reduce(_add, (c[1] for c in costs), _ONE)
        return out, work, functools.reduce(_add, (c[2] for c in costs), _ONE)
    if op in _REPEATS:
        return _cost_repeat(op, av, flags, after, n)
    worst = _mul(_N1, _N1)  # anything else: assume the worst
    return _count(sre.MAXREPEAT, n), worst, worst


def _cost_repeat(op: Any, av: Any, flags: int, after: _Next, n: int | None) -> tuple[Poly, Poly, Poly]:
    low, high, body = av
    body = list(body)
    if high <= 1:  # optional or once: the body's own ways, and skipping it
        if high == 0:
            return _ONE, _ONE, _ONE
        out, work, fails = _cost(body, flags, after, n)
        if op is _POSSESSIVE:
            out = _ONE
        elif low == 0:
            out = _add(out, _ONE)
        return out, _add(work, _ONE), _add(fails, _ONE)
    # repeated: the structural rules leave a body that matches in one way only
    _, once, _ = _cost(body, flags, _END, n)
    iterations = _N if high >= sre.MAXREPEAT and n is None else _count(high, n)
    work = _add(_mul(iterations, once), _ONE)
    if low == high or op is _POSSESSIVE or after.done:
        return _ONE, work, work  # one end, or nothing after it can fail
    ends = _count(high - low + 1 if high < sre.MAXREPEAT else high, n)
    if not _meets(_taken(body, flags), after.first):  # only its longest (or shortest) match can go on;
        work = _add(work, ends)  # at each other end what follows fails at its first character
        return _ONE, work, work
    return ends, work, work


def _taken(items: list[Any], flags: int) -> _Chars:
    """Every character ``items`` can consume."""
    found = _NOTHING
    for op, av in items:
        chars = _chars_of(op, av, flags)
        if chars is not None:
            found = _union(found, chars)
        elif op is sre.SUBPATTERN:
            found = _union(found, _taken(list(av[-1]), _scoped(av, flags)))
        elif op is _ATOMIC:
            found = _union(found, _taken(list(av), flags))
        elif op in _REPEATS:
            found = _union(found, _taken(list(av[2]), flags))
        elif op is sre.BRANCH:
            for branch in av[1]:
                found = _union(found, _taken(list(branch), flags))
        elif op is not sre.AT:
            return _EVERYTHING
    return found


def _anchored(items: list[Any], flags: int) -> bool:
    """Does the pattern only match at the start of the input (``\\A``, or ``^`` without ``m``)?"""
    if not items:
        return False
    op, av = items[0]
    if op is sre.AT:
        return av in _STARTS or (av is sre.AT_BEGINNING and not flags & re.MULTILINE)
    if op is sre.SUBPATTERN:
        return _anchored(list(av[-1]), _scoped(av, flags))
    if op is _ATOMIC:
        return _anchored(list(av), flags)
    return False


def _search_cost(tree: Any, n: int | None, all_matches: bool) -> Poly:
    """The steps of one search of the input (every start tried until a match), or of every
    match (``$regexFindAll``: after each match the search goes on)."""
    flags = tree.state.flags
    items = list(tree)
    costs = [_cost(items, engine, _END, n) for engine in (flags, flags | _PCRE)]
    steps = _top(costs[0][1], costs[1][1])
    failing = _top(costs[0][2], costs[1][2])
    if all_matches:  # at most n + 1 matches, each at most one full attempt
        return _mul(_count(sre.MAXREPEAT, n), _add(steps, _ONE))
    if _anchored(items, flags):  # every other start fails at once
        return _add(steps, _count(sre.MAXREPEAT, n))
    return _add(steps, _mul(_count(sre.MAXREPEAT, n), _add(failing, _ONE)))


def _unfold(pattern: str) -> str:
    """``pattern`` with an empty group after every ``|``: Python's parser turns ``a|[ab]`` into
    ``[ab]`` and ``ab|ac`` into ``a[bc]``, PCRE keeps the branches (and tries each), so the cost
    is judged on branches the parser cannot merge (an empty non-capturing group would be dropped
    by the parser; a capturing one stays). The pattern matches the same strings."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        elif c == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i = end
        else:
            out.append("|()" if c == "|" else c)
            i += 1
    return "".join(out)

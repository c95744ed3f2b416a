"""The regex policy refuses every backtracking-prone shape and accepts the everyday ones.

What is checked is structure, never time: a repeated group holding a variable quantifier or an
alternation, backreferences, lookarounds, too many variable quantifiers, too long, unparsable.
The same function guards ``$regex``, ``$not``, regex values and ``$regexMatch`` / ``$regexFind``
/ ``$regexFindAll`` (see test_injection for each path).
"""

from __future__ import annotations

import re

import pytest
from bson.regex import Regex
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db.errors import QueryError
from astro_db.query.regex import MAX_REGEX_LENGTH, check_regex

ISSUE_PATTERNS = [r"^(a|a)*$", r"^(\w+\s?)+$"]  # both passed the old check: 7 s for a 26-char name

SAFE = [
    "^ann", "^[a-z]+@", "smith$", "(?i)^ann", r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", "^(foo|bar)$",
    "(ab)+", r"(\d{2})+", "(a|b)?", "a|b", "[|()*+]+", r"\(a|b\)*", ".*", r"^\d{4}-\d{2}-\d{2}$", "ann.*smith",
]

REFUSED = [
    *ISSUE_PATTERNS, "(a+)+", "(a*)*", "(a+)*b", "((a+))+", "(?:a+)+", "(a?)+", "(a|aa)+", "([ab]|a)*", "(a|b){2,}",
    "(ab|a){3}", "(?:(?:a|b)c)+", r"(a)\1", r"(?=a)a", r"(?!a)b", r"(?<=a)b", r"(?<!a)b", r"(a)?(?(1)b|c)",
    ".*.*.*.*.*.*.*x", "(?#c)a", "[unclosed", "(?P<n", "a" * (MAX_REGEX_LENGTH + 1),
    "(?x)(a+) +", "(?x)(a|a) *", "(?x)(a|a)#)\n*",
]


@pytest.mark.parametrize("pattern", SAFE, ids=[f"safe{i}" for i in range(len(SAFE))])  # plain ids: mutmut selects tests by id
def test_everyday_patterns_are_accepted(pattern):
    check_regex(pattern, "name")


@pytest.mark.parametrize("pattern", REFUSED, ids=[f"refused{i}" for i in range(len(REFUSED))])
def test_backtracking_prone_unparsable_and_long_patterns_are_refused(pattern):
    with pytest.raises(QueryError, match="'name'"):
        check_regex(pattern, "name")


def test_the_error_names_the_field_and_the_construct():
    with pytest.raises(QueryError, match=r"regex on 'email' is refused: a repeated group holding an alternation"):
        check_regex("^(a|a)*$", "email")
    with pytest.raises(QueryError, match=r"a repeated group that itself holds a quantifier"):
        check_regex("(x+)+", "email")
    with pytest.raises(QueryError, match="backreference"):
        check_regex(r"(a)\1", "email")
    with pytest.raises(QueryError, match="lookahead or lookbehind"):
        check_regex("(?=a)", "email")


def test_verbose_options_are_applied_before_the_pattern_is_judged():
    check_regex("(a+) +", "name")  # (a+) then one-or-more spaces
    with pytest.raises(QueryError):
        check_regex("(a+) +", "name", "x")  # verbose: (a+)+
    with pytest.raises(QueryError):
        check_regex(re.compile("(a+) +", re.X), "name")


def test_compiled_and_bson_patterns_are_judged_by_their_source():
    for value in (re.compile("(a+)+"), Regex("(a|aa)+"), Regex("(a+) +", "x")):
        with pytest.raises(QueryError):
            check_regex(value, "name")
    check_regex(Regex("^ann", "i"), "name")


def test_non_string_patterns_are_refused():
    for value in (b"(a)", 12, None, ["a"]):
        with pytest.raises(QueryError, match="must be a string"):
            check_regex(value, "name")


# --- properties: every catastrophic shape, at any nesting depth, is refused ---------------------

ATOM = st.sampled_from(["a", r"\w", "[a-z]", ".", r"\d", "ab", r"\s"])
INNER = st.sampled_from(["+", "*", "?", "{1,}", "{0,3}", "+?", "*+"])
OUTER = st.sampled_from(["+", "*", "{2,}", "{1,9}", "{3}", "+?", "*?"])
PREFIX = st.sampled_from(["", "^", "x", "(?i)"])
SUFFIX = st.sampled_from(["", "$", "y", "[0-9]"])
GROUP = st.sampled_from(["(", "(?:", "(?P<g>"])


@settings(max_examples=300, deadline=None)
@given(PREFIX, GROUP, ATOM, INNER, OUTER, SUFFIX)
def test_a_repeated_group_holding_a_quantifier_is_refused(prefix, group, atom, inner, outer, suffix):
    with pytest.raises(QueryError):
        check_regex(f"{prefix}{group}{atom}{inner}){outer}{suffix}", "name")


@settings(max_examples=300, deadline=None)
@given(PREFIX, GROUP, ATOM, ATOM, OUTER, SUFFIX)
def test_a_repeated_group_holding_an_alternation_is_refused(prefix, group, left, right, outer, suffix):
    for body in (f"{left}|{right}", f"{left}|{left}", f"{left}|{left}{left}", f"{left}|{right}|{left}"):
        with pytest.raises(QueryError):
            check_regex(f"{prefix}{group}{body}){outer}{suffix}", "name")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), ATOM, INNER, OUTER, st.booleans())
def test_nesting_depth_does_not_hide_a_nested_quantifier_or_alternation(depth, atom, inner, outer, alternate):
    body = f"{atom}|{atom}{atom}" if alternate else f"{atom}{inner}"
    pattern = "(" * depth + body + ")" * depth + outer
    if depth > 1:
        pattern = "(" + pattern + ")" + "x"  # the repeat itself buried inside another group
    with pytest.raises(QueryError):
        check_regex(pattern, "name")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ATOM, st.sampled_from(["", "+", "*", "?", "{2}", "{1,3}"])), min_size=1, max_size=5), PREFIX, SUFFIX)
def test_a_sequence_of_quantified_atoms_without_repeated_groups_is_accepted(parts, prefix, suffix):
    check_regex(prefix + "".join(atom + q for atom, q in parts) + suffix, "name")


def test_a_cached_verdict_still_names_the_field_it_is_about():
    for field in ("name", "email", "positions.{0}"):
        with pytest.raises(QueryError, match=re.escape(repr(field))):
            check_regex("(a+)+", field)
        with pytest.raises(QueryError, match=re.escape(repr(field))):
            check_regex("[unclosed{", field)


# --- the rules at their edges (each pair pins one decision of the policy) ----------------------

ACCEPTED_AT_THE_EDGE = [
    ("([|])+", ""), ("([^|])+", ""), ("([]|])+", ""), ("([^]|])+", ""), (r"([\]|])+", ""), ("([a-z|])+", ""),
    ("[(]a|b[)]+", ""), (r"\((a|b)\)", ""), ("(a|b)(c)+", ""), ("(a|b)c+", ""), ("x(a|b)", ""), ("(a|(?:b|c))", ""),
    ("(a|b){1}", ""), ("(a|b){0,1}", ""), ("(a|b){1,1}", ""), ("(a|b){x}", ""),
    ("((a+)b){1}", ""), ("(a{2})+", ""), ("(?>a+)", ""),
    ("a*b*c*d*e*f*", ""), ("a{2}b{2}c{2}d{2}e{2}f{2}g{2}", ""),
    ("a #c", ""), ("a #c", "i"), (Regex("a #c", 0), ""),
    # what follows a group holding an alternation repeats it only when it is a quantifier
    ("(a|b)X", ""), ("(a|b)XX*", ""),
]
REFUSED_AT_THE_EDGE = [
    # a | inside a repeated group, wherever the character classes around it end
    ("([a]|b)+", "alternation"), ("([]]|b)+", "alternation"), ("([^]]|b)+", "alternation"),
    (r"([\]]|b)+", "alternation"), ("([(]|a)+", "alternation"), ("([ab]|c){2}", "alternation"),
    ("((a|b))+", "alternation"), ("((a|b)c)+", "alternation"), ("(a(b|c)d)*", "alternation"),
    ("(?x)(a|b) +", "alternation"), ("(a|b)+?", "alternation"), ("(a|b)*?", "alternation"),
    # repeated more than once, in every brace spelling
    ("(a|b){2}", "alternation"), ("(a|b){1,}", "alternation"), ("(a|b){0,2}", "alternation"),
    ("(a|b){,3}", "alternation"), ("(a|b){3,3}", "alternation"),
    # a variable quantifier under a repeat, at any depth, atomic groups included
    ("((a+)b){2}", "holds a quantifier"), ("(a{1,2})+", "holds a quantifier"), ("(?>(a+)+)", "holds a quantifier"),
    ("x(?:(?:a+)|b)+", "holds a quantifier"),
    # lookarounds and references wherever they are nested
    ("(x(?=y))", "lookahead"), ("(?:x|(?<=y)z)", "lookahead"), ("(?:a(?:b(?:c(?:d(?=e)))))", "lookahead"),
    (r"(a)(?:b\1)", "backreference"),
    # ... inside a repeated group too, with or without a quantifier of their own
    ("(?:(?=a)b)+", "lookahead"), ("(?:(?=a+)b)+", "holds a quantifier"), (r"(a)(?:b\1)+", "backreference"),
    # the quantifier budget counts through groups and branches
    ("a*b*c*d*e*f*g*", "more than 6"), ("(a*b*c*)(d*e*f*)g*", "more than 6"), ("(?:a*|b*|c*|d*)(e*f*g*)", "more than 6"),
    # comments, in verbose mode however it is asked for
    ("(?x)a # comment", "comment"), ("a #c", "comment", "x"), (re.compile("a #c", re.X), "comment"),
    (Regex("a #c", re.VERBOSE), "comment"),
]


@pytest.mark.parametrize("case", ACCEPTED_AT_THE_EDGE, ids=[f"edge-ok{i}" for i in range(len(ACCEPTED_AT_THE_EDGE))])
def test_safe_patterns_at_the_edges_of_each_rule_are_accepted(case):
    pattern, options = case
    check_regex(pattern, "name", options)


@pytest.mark.parametrize("case", REFUSED_AT_THE_EDGE, ids=[f"edge-refused{i}" for i in range(len(REFUSED_AT_THE_EDGE))])
def test_risky_patterns_at_the_edges_of_each_rule_are_refused_saying_why(case):
    pattern, reason, *options = case
    with pytest.raises(QueryError, match=reason):
        check_regex(pattern, "name", *options)


def test_bytes_are_not_a_pattern():
    with pytest.raises(QueryError, match="must be a string, got bytes"):
        check_regex(b"abc", "name")


FULL_MESSAGES = [
    ("(a+)+", "a repeated group that itself holds a quantifier (like (a+)+)"),
    ("(a|aa)+", "a repeated group holding an alternation (like (a|aa)+)"),
    ("(?=a)b", "a lookahead or lookbehind"),
    (r"(a)\1", "a backreference or conditional group"),
    ("(?#c)a", "a comment (write the pattern without one)"),
    ("a*b*c*d*e*f*g*", "more than 6 variable-length quantifiers"),
]


@pytest.mark.parametrize(("pattern", "construct"), FULL_MESSAGES)
def test_each_refusal_says_exactly_what_it_refused_and_what_to_do(pattern, construct):
    with pytest.raises(QueryError) as caught:
        check_regex(pattern, "name")
    assert str(caught.value) == (f"regex on 'name' is refused: {construct} (the regex policy refuses what can make "
                                 "matching take exponential time); match a prefix (^abc) or a simpler pattern")


def test_options_default_to_none():
    check_regex("a #c", "name")  # no options: not verbose, so "#c" is text, not a comment

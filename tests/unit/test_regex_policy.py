"""The regex policy refuses every backtracking-prone shape and accepts the everyday ones.

What is checked is structure and a cost bound, never time: a repeated group holding a variable
quantifier or an alternation, backreferences, lookarounds, too long, unparsable; and a worst case
(backtracking steps, a polynomial in the input length) over the budget for the longest input the
pattern may meet.
The same function guards ``$regex``, ``$not``, regex values and ``$regexMatch`` / ``$regexFind``
/ ``$regexFindAll`` (see test_injection for each path).
"""

from __future__ import annotations

import re

import pytest
from bson.regex import Regex
from fuzzing import examples
from hypothesis import example, given, settings
from hypothesis import strategies as st

from astro_db.errors import QueryError
from astro_db.query.regex import MAX_REGEX_LENGTH, check_regex

NAME_LENGTH = 100  # User.name's max_length: what a regex on "name" is matched against


def judge(pattern, where="name", options="", *, max_input=NAME_LENGTH, all_matches=False):
    """``check_regex`` as a filter on ``User.name`` calls it (its bound: the field's length)."""
    check_regex(pattern, where, options, max_input=max_input, all_matches=all_matches)

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
    judge(pattern, "name")


@pytest.mark.parametrize("pattern", REFUSED, ids=[f"refused{i}" for i in range(len(REFUSED))])
def test_backtracking_prone_unparsable_and_long_patterns_are_refused(pattern):
    with pytest.raises(QueryError, match="'name'"):
        judge(pattern, "name")


def test_the_error_names_the_field_and_the_construct():
    with pytest.raises(QueryError, match=r"regex on 'email' is refused: a repeated group holding an alternation"):
        judge("^(a|a)*$", "email")
    with pytest.raises(QueryError, match=r"a repeated group that itself holds a quantifier"):
        judge("(x+)+", "email")
    with pytest.raises(QueryError, match="backreference"):
        judge(r"(a)\1", "email")
    with pytest.raises(QueryError, match="lookahead or lookbehind"):
        judge("(?=a)", "email")


def test_verbose_options_are_applied_before_the_pattern_is_judged():
    judge("(a+) +", "name")  # (a+) then one-or-more spaces
    with pytest.raises(QueryError):
        judge("(a+) +", "name", "x")  # verbose: (a+)+
    with pytest.raises(QueryError):
        judge(re.compile("(a+) +", re.X), "name")


def test_compiled_and_bson_patterns_are_judged_by_their_source():
    for value in (re.compile("(a+)+"), Regex("(a|aa)+"), Regex("(a+) +", "x")):
        with pytest.raises(QueryError):
            judge(value, "name")
    judge(Regex("^ann", "i"), "name")


def test_non_string_patterns_are_refused():
    for value in (b"(a)", 12, None, ["a"]):
        with pytest.raises(QueryError, match="must be a string"):
            judge(value, "name")


# --- properties: every catastrophic shape, at any nesting depth, is refused ---------------------

ATOM = st.sampled_from(["a", r"\w", "[a-z]", ".", r"\d", "ab", r"\s"])
INNER = st.sampled_from(["+", "*", "?", "{1,}", "{0,3}", "+?", "*+"])
OUTER = st.sampled_from(["+", "*", "{2,}", "{1,9}", "{3}", "+?", "*?"])
PREFIX = st.sampled_from(["", "^", "x", "(?i)"])
SUFFIX = st.sampled_from(["", "$", "y", "[0-9]"])
GROUP = st.sampled_from(["(", "(?:", "(?P<g>"])


@settings(max_examples=examples(300), deadline=None)
@given(PREFIX, GROUP, ATOM, INNER, OUTER, SUFFIX)
def test_a_repeated_group_holding_a_quantifier_is_refused(prefix, group, atom, inner, outer, suffix):
    with pytest.raises(QueryError):
        judge(f"{prefix}{group}{atom}{inner}){outer}{suffix}", "name")


@settings(max_examples=examples(300), deadline=None)
@given(PREFIX, GROUP, ATOM, ATOM, OUTER, SUFFIX)
def test_a_repeated_group_holding_an_alternation_is_refused(prefix, group, left, right, outer, suffix):
    for body in (f"{left}|{right}", f"{left}|{left}", f"{left}|{left}{left}", f"{left}|{right}|{left}"):
        with pytest.raises(QueryError):
            judge(f"{prefix}{group}{body}){outer}{suffix}", "name")


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(1, 6), ATOM, INNER, OUTER, st.booleans())
def test_nesting_depth_does_not_hide_a_nested_quantifier_or_alternation(depth, atom, inner, outer, alternate):
    body = f"{atom}|{atom}{atom}" if alternate else f"{atom}{inner}"
    pattern = "(" * depth + body + ")" * depth + outer
    if depth > 1:
        pattern = "(" + pattern + ")" + "x"  # the repeat itself buried inside another group
    with pytest.raises(QueryError):
        judge(pattern, "name")


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "[0-9]", "@", r"\.", "-"]), st.sampled_from(["", "+", "*", "?", "{2}", "{1,3}"])),
                min_size=1, max_size=6), PREFIX, st.sampled_from(["", "$", "y", "y$"]))
def test_quantified_atoms_that_never_share_a_character_are_accepted(parts, prefix, suffix):
    """Each quantifier stops where the next item starts: one attempt is linear, so an anchored
    pattern is accepted at any bound (a search from every start is quadratic at worst)."""
    parts = [p for i, p in enumerate(parts) if p[0] not in {atom for atom, _ in parts[:i]}]  # pairwise disjoint
    pattern = "".join(atom + q for atom, q in parts) + suffix
    judge("^" + pattern, max_input=16_384)
    judge("(?i)^" + pattern, max_input=None)
    judge(prefix + pattern)


def test_a_cached_verdict_still_names_the_field_it_is_about():
    for field in ("name", "email", "positions.{0}"):
        with pytest.raises(QueryError, match=re.escape(repr(field))):
            judge("(a+)+", field)
        with pytest.raises(QueryError, match=re.escape(repr(field))):
            judge("[unclosed{", field)


# --- the rules at their edges (each pair pins one decision of the policy) ----------------------

ACCEPTED_AT_THE_EDGE = [
    ("([|])+", ""), ("([^|])+", ""), ("([]|])+", ""), ("([^]|])+", ""), (r"([\]|])+", ""), ("([a-z|])+", ""),
    ("[(]a|b[)]+", ""), (r"\((a|b)\)", ""), ("(a|b)(c)+", ""), ("(a|b)c+", ""), ("x(a|b)", ""), ("(a|(?:b|c))", ""),
    ("(a|b){1}", ""), ("(a|b){0,1}", ""), ("(a|b){1,1}", ""), ("(a|b){x}", ""),
    ("((a+)b){1}", ""), ("(a{2})+", ""), ("(?>a+)", ""),
    ("a*b*c*d*e*f*", ""), ("a{2}b{2}c{2}d{2}e{2}f{2}g{2}", ""),
    # quantifiers in a row that cannot take each other's characters stay linear, however many
    ("a*b*c*d*e*f*g*", ""), ("(a*b*c*)(d*e*f*)g*", ""), ("(?:a*|b*|c*|d*)(e*f*g*)", ""),
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
    # the cost rule counts through groups and branches: quantifiers that can take the same characters
    (r"\w*\w*\w*\w*\w*\w*!", "cost rule"), ("(a*a*a*)(a*)!", "cost rule"), ("(?:a*|b*)(?:a*|b*)(?:a*|b*)!", "cost rule"),
    # comments, in verbose mode however it is asked for
    ("(?x)a # comment", "comment"), ("a #c", "comment", "x"), (re.compile("a #c", re.X), "comment"),
    (Regex("a #c", re.VERBOSE), "comment"),
]


@pytest.mark.parametrize("case", ACCEPTED_AT_THE_EDGE, ids=[f"edge-ok{i}" for i in range(len(ACCEPTED_AT_THE_EDGE))])
def test_safe_patterns_at_the_edges_of_each_rule_are_accepted(case):
    pattern, options = case
    judge(pattern, "name", options)


@pytest.mark.parametrize("case", REFUSED_AT_THE_EDGE, ids=[f"edge-refused{i}" for i in range(len(REFUSED_AT_THE_EDGE))])
def test_risky_patterns_at_the_edges_of_each_rule_are_refused_saying_why(case):
    pattern, reason, *options = case
    with pytest.raises(QueryError, match=reason):
        judge(pattern, "name", *options)


def test_bytes_are_not_a_pattern():
    with pytest.raises(QueryError, match="must be a string, got bytes"):
        judge(b"abc", "name")


FULL_MESSAGES = [
    ("(a+)+", "a repeated group that itself holds a quantifier (like (a+)+)"),
    ("(a|aa)+", "a repeated group holding an alternation (like (a|aa)+)"),
    ("(?=a)b", "a lookahead or lookbehind"),
    (r"(a)\1", "a backreference or conditional group"),
    ("(?#c)a", "a comment (write the pattern without one)"),
]


@pytest.mark.parametrize(("pattern", "construct"), FULL_MESSAGES)
def test_each_refusal_says_exactly_what_it_refused_and_what_to_do(pattern, construct):
    with pytest.raises(QueryError) as caught:
        judge(pattern, "name")
    assert str(caught.value) == (f"regex on 'name' is refused: {construct} (the regex policy refuses what can make "
                                 "matching take exponential time); match a prefix (^abc) or a simpler pattern")


def test_options_default_to_none():
    judge("a #c", "name")  # no options: not verbose, so "#c" is text, not a comment


# --- the cost rule: a bound on the worst case, for the longest input the pattern may meet -------

from astro_db.query.regex import MAX_REGEX_COST, MAX_REGEX_INPUT, regex_cost  # noqa: E402

REDOS = [  # (pattern, options): known catastrophic shapes, exponential or polynomial
    ("(a+)+", ""), ("(a|a)*", ""), ("(a|ab)*c", ""), (r"(\w+\s?)+$", ""),
    (r"\w*\w*\w*\w*\w*\w*!", ""), (".*.*.*!", ""), (r"\w*\w*\w*!", ""), ("[a-z]*[a-z]*[a-z]*@", ""),
    (r"(?x) \w* \w* \w* \w* \w* \w* !", ""), (r"\w* \w* \w* \w* \w* \w* !", "x"), (".* .* .* !", "x"),
    ("(?x) (a+) +", ""), ("(a+) +", "x"), ("(a|a) *", "x"),
    ("a?" * 25 + "a" * 25, ""),  # 2^25 ways to leave the optional a's
    ("(a|a)" * 30 + "b", ""),  # Python's parser merges a|a, PCRE tries both branches: 2^30
    ("(?:a|[ab])" * 25 + "c", ""),  # merged into [ab] by Python's parser, not by PCRE: 2^25
    ("A+a+A+a+A+a+!", "i"), (r"^.*\n.*\n.*\n.*!", "s"),  # the options make the quantifiers overlap
]


@pytest.mark.parametrize("case", REDOS, ids=[f"redos{i}" for i in range(len(REDOS))])
@pytest.mark.parametrize("bound", [100, 254, 1000, None])
def test_known_redos_shapes_are_refused_at_every_bound_a_field_or_literal_gives(case, bound):
    pattern, options = case
    with pytest.raises(QueryError, match=r"regex on 'name' is refused"):
        judge(pattern, options=options, max_input=bound)


def test_the_issue_reproductions_are_refused_by_the_cost_rule():
    with pytest.raises(QueryError) as caught:
        judge(r"\w*\w*\w*\w*\w*\w*!")  # User.name: 100 characters
    assert str(caught.value) == (
        "regex on 'name' is refused by the cost rule: its worst case is about 2.2e+14 backtracking steps "
        "on the 100 characters it may be matched against (at most 1e+07); quantifiers in a row that can "
        "take the same characters (like .*.*x or \\w*\\w*!) multiply: anchor it (^abc), or make each "
        "quantifier stop at a character what follows it cannot start with")
    with pytest.raises(QueryError, match=r"about 1\.6e\+14 backtracking steps on the 3000 characters"):
        judge(".*.*.*!", "$regexMatch in stage 0 $project", max_input=3000)


def test_without_a_bound_on_the_input_only_linear_patterns_pass():
    for pattern in ("^ann", "(?i)^ann", "smith$", "^[a-z]+@", "^[^@]+@[^@]+$", "(ab)+", ".*", "a|b", "ann",
                    r"^\d{4}-\d{2}-\d{2}$", r"^\d+-\d+-\d+$", r"^\w+@\w+\.\w+$", r"^\S+\s+\S+\s+\S+!",
                    r"^\D+\d+\D+\d+", r"^\W+\w+\W+\w+", r"^[^@]+@[^@]+@", r"^.+\n.+\n.+!", "^a+[^a]+a+[^a]+!"):
        judge(pattern, max_input=None)
    with pytest.raises(QueryError) as caught:
        judge("[a-z]+@", max_input=None)  # linear per start, a search tries every start: n^2
    assert str(caught.value) == (
        "regex on 'name' is refused by the cost rule: its worst case grows like n^2 in the length n of "
        "an input whose length is not bounded here (only patterns linear in n, at most 1000 steps per "
        "character, are accepted); anchor it (^abc), or make each quantifier stop at a character what "
        "follows it cannot start with")
    with pytest.raises(QueryError, match="at most 1000 steps per character"):
        judge("a{0,40}" * 4 + "!", max_input=None)  # linear, but 41^4 steps per character


@pytest.mark.parametrize(("pattern", "options", "bound"), [
    ("ann.*smith", "", 100), (".*foo.*bar", "", 100), (r"^\w*\w*!", "", 1000), (r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", "", 254),
    ("A+a+A+a+A+a+!", "", 500), (r"^.*\n.*\n.*\n.*!", "", 1000), ("^a{0,1000}a{0,1000}a{0,1000}!", "", 100),
    ("^r", "i", 500), ("^(?:foo|bar)baz", "", 1000),
])
def test_cheap_patterns_are_accepted_at_their_bound(pattern, options, bound):
    judge(pattern, options=options, max_input=bound)


def test_the_bound_decides_where_quantifiers_may_overlap():
    judge(r"\w*\w*!", max_input=100)  # about 100^3
    with pytest.raises(QueryError, match="cost rule"):
        judge(r"\w*\w*!", max_input=1000)  # about 1000^3
    judge(r"^\w*\w*\w*!", max_input=100)  # anchored: one attempt
    with pytest.raises(QueryError, match="cost rule"):
        judge(r"^\w*\w*\w*!", "name", "m", max_input=100)  # multi-line: ^ after every newline


def test_case_folding_reaches_the_non_ascii_letters_that_fold_onto_ascii():
    kelvin = "\u212a"  # KELVIN SIGN: matches k under (?i)
    judge(f"^k+{kelvin}+k+{kelvin}+k+{kelvin}+!", max_input=1000)  # disjoint: linear
    with pytest.raises(QueryError, match="cost rule"):
        judge(f"^k+{kelvin}+k+{kelvin}+k+{kelvin}+!", options="i", max_input=1000)
    with pytest.raises(QueryError, match="cost rule"):
        judge(f"(?i)^K+{kelvin}+K+{kelvin}+K+{kelvin}+!", max_input=1000)
    judge("^k+s+k+s+k+s+!", options="i", max_input=1000)  # s folds onto the long s, not onto k


def test_the_classes_of_both_engines_are_judged():
    """Python's \\w takes é, the server's PCRE (no UCP) takes it in \\W: either makes these overlap."""
    for pattern in (r"^\w+é+\w+é+\w+é+!", r"^\W+é+\W+é+\W+é+!", r"^\D+٣+\D+٣+\D+٣+!", r"^\S+\u00a0+\S+\u00a0+\S+\u00a0+!"):
        with pytest.raises(QueryError, match="cost rule"):
            judge(pattern, max_input=1000)
    judge(r"^\d+é+\d+é+\d+é+!", max_input=None)  # é is no digit in either engine


def test_every_case_fold_onto_ascii_and_every_non_ascii_class_is_known():
    for letter, other in (("s", "\u017f"), ("i", "\u0130"), ("i", "\u0131"), ("k", "\u212a")):
        pattern = f"^{letter}+{other}+{letter}+{other}+{letter}+{other}+!"
        judge(pattern, max_input=1000)  # without i: disjoint
        with pytest.raises(QueryError, match="cost rule"):
            judge(pattern, options="i", max_input=1000)
    for pattern in (r"^\d+٣+\d+٣+\d+٣+!", "^\\s+\u00a0+\\s+\u00a0+\\s+\u00a0+!"):  # Python's \\d and \\s take them
        with pytest.raises(QueryError, match="cost rule"):
            judge(pattern, max_input=1000)


def test_the_model_pins_its_counts():
    """The exact bounds of a few shapes: each term is a rule of the model."""
    assert regex_cost("[a-z]+@") == (11, 10, 2)  # every start: consume, try @ at each end
    assert regex_cost(r"\A[a-z]+@") == (7, 3)  # \A anchors: one attempt
    assert regex_cost(r"^\s*$") == (4, 3)  # $ may follow a newline the \s* took
    assert regex_cost("(ab)+") == (8, 6)


def test_find_all_searches_again_after_every_match():
    judge("^a.*b", max_input=3000)  # one attempt
    with pytest.raises(QueryError, match="cost rule"):
        judge("^a.*b", max_input=3000, all_matches=True)  # up to n + 1 searches


def test_the_cost_is_a_polynomial_in_the_input_length():
    assert regex_cost("^ann") == (5, 1)  # 4 items, then every other start fails at once
    assert len(regex_cost(r"\w*\w*\w*!")) - 1 == 4  # three overlapping quantifiers, and every start
    assert len(regex_cost(r"^\w*\w*\w*!")) - 1 == 3
    assert len(regex_cost("[a-z]+@[a-z]+")) - 1 == 2
    assert len(regex_cost(r"^a*((?:\b)+)a*((?:\b)+)a*!")) - 1 == 3  # a zero-width repeat lets the a's meet
    assert regex_cost("a{0,1000}a{0,1000}!", max_input=10) < regex_cost("a{0,1000}a{0,1000}!")
    with pytest.raises(QueryError, match="a repeated group that itself holds a quantifier"):
        regex_cost("(a+)+")
    with pytest.raises(QueryError, match="invalid regex"):
        regex_cost("(")


def test_the_cost_bound_is_the_budget_and_the_literal_cap_holds():
    assert MAX_REGEX_COST == 10_000_000 and MAX_REGEX_INPUT == 16_384


# A reference backtracking matcher for a row of quantified character classes: it counts the
# character tests of a search the way PCRE and Python's re make them (greedy, every start).
ATOMS = [("a", "a"), ("b", "b"), ("[ab]", "ab"), (".", "ab1!"), (r"\d", "1"), ("!", "!"), ("[^a]", "b1!\n")]
QUANTIFIERS = [("", 1, 1), ("*", 0, 10**9), ("+", 1, 10**9), ("?", 0, 1), ("{2}", 2, 2), ("{1,3}", 1, 3), ("{0,2}", 0, 2),
               ("*?", 0, 10**9)]


def reference_steps(items, text, anchored):
    steps = 0

    def attempt(i, pos):
        nonlocal steps
        if i == len(items):
            return True
        chars, low, high, lazy = items[i]
        taken = 0
        while taken < high and pos + taken < len(text):
            steps += 1
            if text[pos + taken] not in chars:
                break
            taken += 1
        if taken < low:
            return False
        ends = range(low, taken + 1) if lazy else range(taken, low - 1, -1)
        return any(attempt(i + 1, pos + end) for end in ends)

    for start in range(1 if anchored else len(text) + 1):
        if attempt(0, start):
            break
    return steps


TEXTS = st.builds(lambda unit, times, tail: unit * times + tail,  # long runs, then what makes it fail
                  st.text(alphabet="ab1!\n", min_size=1, max_size=3), st.integers(0, 40), st.text(alphabet="ab1!\n", max_size=2))


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTIFIERS)), min_size=1, max_size=5),
       st.booleans(), TEXTS)
@example(parts=[((".", "ab1!"), ("?", 0, 1)), ((r"\d", "1"), ("*", 0, 10**9)), (("a", "a"), ("", 1, 1))],  # each end of \d*
         anchored=True, text="1" * 12)  # tries the a once: counted
def test_the_cost_bounds_the_steps_of_a_real_backtracking_search(parts, anchored, text):
    pattern = ("^" if anchored else "") + "".join(src + q for (src, _), (q, _, _) in parts)
    items = [(chars, low, high, q.endswith("?") and len(q) > 1) for (_, chars), (q, low, high) in parts]
    cost = regex_cost(pattern, max_input=len(text))
    assert reference_steps(items, text, anchored) <= sum(c * len(text) ** i for i, c in enumerate(cost))


def test_a_field_bounds_what_a_regex_on_it_meets():
    from astro_db.models import BirthChart, PlanetaryInsight, User
    from astro_db.models.embedded import BirthData
    from astro_db.models.fields import longest_text

    assert longest_text(User._fields["name"]) == 100
    assert longest_text(User._fields["email"]) == 254
    assert longest_text(User._fields["status"]) == len("suspended")  # the longest choice
    assert longest_text(PlanetaryInsight._fields["recommendations"]) == 500  # a list: its items
    assert 20 < longest_text(BirthData._fields["timezone"]) < 64  # the longest IANA zone name
    assert longest_text(BirthChart._fields["user_id"]) is None  # no strings: a regex must be linear
    assert longest_text(User._fields["last_active"]) is None
    from mongoengine import ListField, StringField

    assert longest_text(StringField(max_length=50)) == 50  # an app model's plain MongoEngine string
    assert longest_text(ListField(StringField(max_length=20))) == 20
    assert longest_text(StringField()) is None


def test_inside_unknown_input_lengths_a_field_bound_is_not_trusted():
    """For a $match after a stage that may have rewritten the field (the pipeline walker's use)."""
    from astro_db.models import User
    from astro_db.query.filters import compile_filter
    from astro_db.query.regex import unknown_input_lengths

    compile_filter(User, {"name": {"$regex": r"\w*\w*!"}})  # name: at most 100 characters
    with unknown_input_lengths(), pytest.raises(QueryError, match="whose length is not bounded"):
        compile_filter(User, {"name": {"$regex": r"\w*\w*!"}})
    with unknown_input_lengths():
        compile_filter(User, {"name": {"$regex": "^ann", "$options": "i"}})
    compile_filter(User, {"name": {"$regex": r"\w*\w*!"}})  # the block is over


# The same check for patterns with groups, alternations and optional parts: a reference
# backtracking matcher over the parse tree (branches tried in order, as PCRE does, none merged)
# counts its character tests; the cost bound is never below the count.

import re._constants as sre_c  # noqa: E402
import re._parser as sre_p  # noqa: E402

from astro_db.query.regex import _unfold  # noqa: E402


def _char_ok(op, av, char):
    if op is sre_c.LITERAL:
        return ord(char) == av
    if op is sre_c.NOT_LITERAL:
        return ord(char) != av
    if op is sre_c.ANY:
        return char != "\n"
    hit, negate = False, False
    for kind, value in av:
        if kind is sre_c.NEGATE:
            negate = True
        elif kind is sre_c.LITERAL:
            hit = hit or ord(char) == value
        elif kind is sre_c.RANGE:
            hit = hit or value[0] <= ord(char) <= value[1]
        else:
            hit = hit or bool(re.match({sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_WORD: r"\w",
                                        sre_c.CATEGORY_SPACE: r"\s"}[value], char))
    return hit != negate


def tree_steps(pattern, text):
    """Character tests of a search of ``text`` for ``pattern`` by a plain backtracking matcher."""
    tree = sre_p.parse(_unfold(pattern))
    steps = 0

    def match(items, i, pos, then):
        nonlocal steps
        if i == len(items):
            return then(pos)
        op, av = items[i]

        def rest(p):
            return match(items, i + 1, p, then)

        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN):
            if pos < len(text):
                steps += 1
                if _char_ok(op, av, text[pos]):
                    return rest(pos + 1)
            return False
        if op is sre_c.AT:
            ok = pos == 0 if av is sre_c.AT_BEGINNING else (pos == len(text) or (pos == len(text) - 1 and text[pos] == "\n"))
            return ok and rest(pos)
        if op is sre_c.SUBPATTERN:
            return match(list(av[-1]), 0, pos, rest)
        if op is sre_c.BRANCH:
            return any(match(list(branch), 0, pos, rest) for branch in av[1])
        low, high, body = av
        body, lazy = list(body), op is sre_c.MIN_REPEAT
        if op is sre_c.POSSESSIVE_REPEAT:  # as many as it can, never given back
            def first_end(start):
                ends = []
                return ends[0] if match(body, 0, start, lambda q: ends.append(q) or True) else None

            count, p = 0, pos
            while count < high:
                end = first_end(p)
                if end is None or (end == p and count >= low):
                    break
                count, p = count + 1, end
            return count >= low and rest(p)

        def repeat(count, p):
            def more():
                return count < high and match(body, 0, p, lambda q: (q != p or count < low) and repeat(count + 1, q))

            def stop():
                return count >= low and rest(p)

            return (stop() or more()) if lazy else (more() or stop())

        return repeat(0, pos)

    anchored = bool(tree.data) and tree.data[0] == (sre_c.AT, sre_c.AT_BEGINNING)
    for start in range(1 if anchored else len(text) + 1):
        if match(list(tree), 0, start, lambda p: True):
            break
    return steps


PIECES = st.recursive(
    st.sampled_from(["a", "b", "[ab]", ".", "!", "[^a]"]),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["", "*", "+", "?", "{1,3}", "*?", "{2}"])).map("".join),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: "(?:" + "".join(parts) + ")"),
        st.tuples(inner, inner).map(lambda pair: "(?:" + "|".join(pair) + ")"),
        st.tuples(inner, inner).map("".join),
    ),
    max_leaves=6,
)


@settings(max_examples=examples(300), deadline=None)
@given(PIECES, st.sampled_from(["", "^"]), st.sampled_from(["", "$", "!"]),
       st.builds(lambda unit, times, tail: unit * times + tail,
                 st.text(alphabet="ab!\n", min_size=1, max_size=3), st.integers(0, 25), st.text(alphabet="ab!\n", max_size=2)))
@example(body=".*+(?:.a)", prefix="", suffix="", text="!" * 16)  # possessive: nothing given back
def test_the_cost_bounds_a_backtracking_search_through_groups_and_branches(body, prefix, suffix, text):
    pattern = prefix + body + suffix
    try:
        cost = regex_cost(pattern, max_input=len(text))
    except QueryError:  # refused by a structural rule
        return
    assert tree_steps(pattern, text) <= sum(c * len(text) ** i for i, c in enumerate(cost))

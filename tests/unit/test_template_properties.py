"""Template rendering never raises outside its documented errors (issue 13): whatever ops write,
`template_problems` answers a list of reasons, `render` / `render_html` / `render_problem`
raise only `RenderFailure`; and the built-in touches (SYSTEM_TEMPLATES) render for any prospect
(any names, zones, phone numbers, meeting times) without raising at all.

Templates are drawn from Jinja's own pieces (delimiters, statements, filters, operators, the
known variables, numbers) as well as from arbitrary text.
CLOSEFLOW_PROPERTY_EXAMPLES examples per property (tests/support/fuzz.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.outreach.cadences.templates import (
    MAX_NESTING,
    SYSTEM_TEMPLATES,
    VARIABLES,
    RenderFailure,
    RenderLimits,
    render,
    render_html,
    render_problem,
    template_problems,
    variables_for,
)
from shared.contracts.journey import Contact
from tests.support.fuzz import property_settings

PIECES = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    " ",
    "if ",
    "else",
    "endif",
    "for x in ",
    "endfor",
    "set y = ",
    "range(",
    "(",
    ")",
    "[",
    "]",
    ",",
    "|",
    "*",
    "**",
    "%",
    "~",
    "+",
    "-",
    "/",
    "//",
    ".",
    "'a'",
    '"b"',
    "9",
    "99999",
    "10**10",
    "x",
    "y",
    "loop.index",
    "__class__",
    "format",
    "macro",
    "include 'x'",
    "default('there')",
    "upper",
    "truncate(5)",
    "center(9999999)",
    "indent(99999)",
    "wordwrap(1)",
    "join(', ')",
    "batch(3)",
    "map('upper')",
    "tojson",
    "namespace(a=1)",
    "cycler(1,2)",
    "dict(a=1)",
    "\n",
    *sorted(VARIABLES),
]
templates = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    st.text(max_size=200),
    # deep nesting: a few levels, or far past Python's recursion limit
    st.integers(1, 400).map(lambda n: "{{ " + "(" * n + "1" + ")" * n + " }}"),
)
values = st.dictionaries(st.sampled_from(sorted(VARIABLES)), st.text(max_size=40))


DEEP = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"


# found by this property: Jinja's parser recursed past Python's stack (RecursionError at save)
@example(DEEP, {}, "email")
@example("{% if 1 %}" * 300 + "{% endif %}" * 300, {}, "sms")
@given(templates, values, st.sampled_from(["email", "sms", "call_task"]))
@property_settings()
def test_any_template_is_refused_or_rendered_never_crashing(
    source: str, given_values: dict[str, str], channel: str
) -> None:
    problems = template_problems(source)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    for field in ("subject", "body", "html"):
        found = render_problem(source, channel, field, RenderLimits())
        assert found is None or isinstance(found, str)
    for draw in (render, render_html):
        try:
            assert isinstance(draw(source, given_values, 2_000), str)
        except RenderFailure as failure:
            assert str(failure)  # the reason is shown to ops and reps


def test_a_deep_template_is_refused_before_python_compiles_it() -> None:
    """Compiled, 300 nested ifs or filters end in RecursionError inside Jinja, not a
    TemplateError. Refused on the template's depth instead, before Python compiles anything.
    (The SystemError a CI run showed after these examples was the AST converter shared by
    threads: tests/support/ast_threads.py.)"""
    chain = "{{ first_name" + " | string" * 300 + " }}"
    ifs = "{% if 1 %}" * 300 + "x" + "{% endif %}" * 300
    for source in (chain, ifs):
        [problem] = template_problems(source)
        assert "nests too deeply" in problem
        with pytest.raises(RenderFailure, match="too deeply"):
            render(source, {"first_name": "Ada"}, 2_000)
    # the compiler still works, and a template at the limit still renders
    compile("x = " + "(" * 90 + "1" + ")" * 90, "<after>", "exec")
    at_limit = "{{ first_name" + " | string" * (MAX_NESTING - 4) + " }}"
    assert template_problems(at_limit) == []
    assert render(at_limit, {"first_name": "Ada"}, 2_000) == "Ada"


contacts = st.builds(
    Contact,
    prospect_id=st.text(min_size=1, max_size=20),
    first_name=st.text(max_size=40),
    last_name=st.text(max_size=40),
    company=st.text(max_size=40),
    timezone=st.one_of(st.sampled_from(["", "Europe/Berlin", "Mars/Olympus", "UTC"]), st.text()),
    phone=st.one_of(st.none(), st.sampled_from(["+14155550100", "+18005550100"]), st.text()),
    rep_name=st.text(max_size=40),
)
moments = st.integers(0, 20 * 365 * 86400).map(
    lambda s: (datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=s)).isoformat()
)


@given(contacts, moments, st.text(max_size=40))
@property_settings()
def test_the_built_in_touches_render_for_any_prospect(
    contact: Contact, meeting_at: str, referrer: str
) -> None:
    extra = {"meeting_starts_at": meeting_at, "meeting_title": "Demo", "referrer_name": referrer}
    variables = variables_for(contact, extra)
    for subject, body, sms in SYSTEM_TEMPLATES.values():
        assert render(subject, variables) is not None
        assert render(body, variables) is not None
        assert render(sms, variables) is not None

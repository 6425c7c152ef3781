"""Message templates: sandboxed Jinja2, checked at save time so no email goes out broken.

A template is written by ops and rendered in the outreach worker for every prospect, so it must
neither fail at send time nor hold the worker up:
- save time (`template_problems`, `cadence_template_problems`): syntax, unknown variables,
  filters and tests, statements a message has no use for (macros, includes, nested loops), and
  a render of every templated field against a full sample prospect and against one whose
  optional values are missing, with the same size limits as a send;
- render time (`render`): the sandbox refuses operations that build huge values (`"A" * 10**10`,
  big powers, big ranges, `%` string formatting, huge widths), and the output is capped; every
  failure is a `RenderFailure` carrying the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from shared.contracts.journey import Contact
from shared.contracts.plan import local_text
from shared.settings import Settings
from shared.timezones import prospect_zone

VARIABLES = frozenset(
    {
        "first_name",
        "last_name",
        "full_name",
        "company",
        "title",
        "rep_name",
        "rep_email",
        "rep_phone",
        "referrer_name",
        "referral_link",
        "meeting_time",
        "meeting_title",
        "booking_link",  # the prospect's page to book a meeting with their rep (issue 14)
    }
)
DEFAULT_COMPANY = "your company"
DEFAULT_REP_NAME = "the closeflow team"

# What one operation inside a template may build: far above what a message needs, far below what
# would hold a worker up (the whole output is capped separately, by channel: RenderLimits).
MAX_SEQUENCE = 10_000  # characters or items a `*` may make
MAX_NUMBER_BITS = 4_096  # an integer a `*` or `**` may make (about 1,200 digits)
MAX_ARGUMENT = 10_000  # an integer argument of a filter or call (widths, counts)
MAX_RANGE = 1_000  # items of range()
MAX_VALUE = 100_000  # characters or items a filter or call may return


class RenderFailure(ValueError):
    """A template that cannot be rendered; the message says why (shown to ops and reps)."""


@dataclass(frozen=True)
class RenderLimits:
    """Most characters a rendered field may have, by what it becomes."""

    email_body: int = 100_000
    sms: int = 1_600
    subject: int = 998  # one header line (RFC 5322)
    task: int = 10_000


def limits_from(settings: Settings) -> RenderLimits:
    return RenderLimits(
        email_body=settings.template_max_email_chars, sms=settings.template_max_sms_chars
    )


def _size(value: object) -> int:
    return len(value) if isinstance(value, Sized) and not isinstance(value, Mapping) else 0


def _refuse_big_arguments(what: str, args: Iterable[object]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_ARGUMENT:
            raise SecurityError(f"{what}: argument {arg} is above {MAX_ARGUMENT}")


def _refuse_big_result(what: str, value: object) -> object:
    if _size(value) > MAX_VALUE:
        raise SecurityError(f"{what} would make a value of more than {MAX_VALUE} characters")
    return value


def _bounded_range(*args: int) -> range:
    made = range(*args)
    if len(made) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return made


_bounded_range.__name__ = "range"  # what a refusal names


class MessageSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, refusing what would build huge values or spin the worker."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            _check_product(left, right)
        elif operator_ == "**":
            _check_power(left, right)
        elif operator_ == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed; use {{ }}")
        return super().call_binop(context, operator_, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "call")
        if name in ("format", "format_map"):
            # the width lives in the format string, out of reach of the argument check
            raise SecurityError("str.format is not allowed; use {{ }}")
        _refuse_big_arguments(f"{name}()", [*args, *kwargs.values()])
        result = SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        return _refuse_big_result(f"{name}()", result)


def _check_product(left: object, right: object) -> None:
    for seq, times in ((left, right), (right, left)):
        if _size(seq) and isinstance(times, int) and _size(seq) * times > MAX_SEQUENCE:
            raise SecurityError(f"repeating a value {times} times makes more than {MAX_SEQUENCE}")
    if isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > MAX_NUMBER_BITS:
            raise SecurityError("the product is too large a number")


def _check_power(base: object, exponent: object) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if abs(base).bit_length() * exponent > MAX_NUMBER_BITS:
            raise SecurityError(f"a power with the exponent {exponent} is too large a number")


def _default(value: object, fallback: str = "") -> object:
    """`{{ title | default("there") }}`: an empty value counts as missing, not only undefined."""
    return value if value else fallback


# The filters a message may use (any other is "unknown" at save): formatting ones that take a
# width or a count are checked for big arguments; printf-style `format` is left out.
_FILTERS = (
    "abs capitalize count e escape first float forceescape int join last length list lower "
    "max min replace reverse round sort string striptags sum title trim truncate unique upper "
    "urlencode wordcount center indent wordwrap batch slice map select reject selectattr "
    "rejectattr dictsort items attr tojson"
).split()


def _guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # the filtered value comes first, after the context or environment some filters ask for
    first_option = 2 if hasattr(func, "jinja_pass_arg") else 1

    @functools.wraps(func)  # keeps jinja's pass_context / pass_eval_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _refuse_big_arguments(f"filter {name}", [*args[first_option:], *kwargs.values()])
        return _refuse_big_result(f"filter {name}", func(*args, **kwargs))

    return guarded


def _environment(autoescape: bool) -> MessageSandbox:
    env = MessageSandbox(undefined=StrictUndefined, autoescape=autoescape)
    builtin = env.filters
    env.filters = {name: _guarded(name, builtin[name]) for name in _FILTERS}
    env.filters["default"] = env.filters["d"] = _default
    env.globals = {
        "range": _bounded_range,
        "dict": dict,
        "namespace": env.globals["namespace"],
        "cycler": env.globals["cycler"],
        "joiner": env.globals["joiner"],
    }
    return env


_env = _environment(autoescape=False)
# HTML parts: every value is escaped, so a prospect's name cannot inject markup
_html_env = _environment(autoescape=True)

_NOT_IN_MESSAGES: tuple[type[nodes.Node], ...] = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.Block,
)


def _statement_problems(parsed: nodes.Template) -> list[str]:
    problems = [
        f"{{% {type(node).__name__.lower()} %}} is not allowed in a message template"
        for node in parsed.find_all(_NOT_IN_MESSAGES)
    ]
    for loop in parsed.find_all(nodes.For):
        if any(True for _ in loop.find_all(nodes.For)):
            problems.append("loops inside loops are not allowed in a message template")
            break
    return problems


# Levels of a template's syntax tree (real messages use a handful). Jinja compiles a template to
# Python source nested as deep as the tree: 300 nested ifs end in RecursionError inside Jinja
# (and Python refuses source indented 100 levels), neither of them a TemplateError that callers
# handle. A deeper template is refused before it is compiled.
MAX_NESTING = 64


class NestsTooDeep(TemplateError):
    def __init__(self) -> None:
        super().__init__(f"the template nests too deeply (more than {MAX_NESTING} levels)")


def _parse(env: SandboxedEnvironment, source: str) -> nodes.Template:
    """The template's tree, refused (NestsTooDeep) when it is deeper than MAX_NESTING."""
    parsed = env.parse(source)
    pending: list[tuple[nodes.Node, int]] = [(parsed, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_NESTING:
            raise NestsTooDeep()
        pending.extend((child, depth + 1) for child in node.iter_child_nodes())
    return parsed


def template_problems(source: str) -> list[str]:
    """Why `source` would render badly: syntax errors, unknown variables, filters or tests."""
    try:
        parsed = _parse(_env, source)
        problems = _statement_problems(parsed)
        if problems:
            return problems
        # compiles it, too: an unknown filter or test is an error only then
        undeclared = meta.find_undeclared_variables(parsed)
    except NestsTooDeep as err:
        return [str(err.message)]
    except TemplateError as err:
        line = getattr(err, "lineno", None)
        return [f"template error{f' on line {line}' if line else ''}: {err.message}"]
    except (RecursionError, SystemError):
        # Jinja's parser and compiler recurse once per nesting level: `{{ ((((...)))) }}` a few
        # hundred deep exhausted Python's stack at save time (a 500, found by issue 13's fuzzing);
        # near the limit CPython 3.11's compile() raises SystemError ("AST constructor recursion
        # depth mismatch") instead (seen in CI's schemathesis run)
        return ["the template nests too deeply"]
    unknown = sorted(undeclared - VARIABLES)
    if unknown:
        return [f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(sorted(VARIABLES))}"]
    return []


def local_time_text(iso: str, contact: Contact) -> str:
    """A time as the prospect reads it: in their zone (shared.timezones.prospect_zone), named."""
    return local_text(
        datetime.fromisoformat(iso), prospect_zone(contact.timezone, contact.phone).name
    )


def variables_for(contact: Contact, extra: dict[str, str]) -> dict[str, str]:
    values = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "full_name": f"{contact.first_name} {contact.last_name}".strip(),
        "company": contact.company or DEFAULT_COMPANY,
        "title": contact.title,
        "rep_name": contact.rep_name or DEFAULT_REP_NAME,
        "rep_email": contact.rep_email,
        "rep_phone": contact.rep_phone or "",
        "referrer_name": "",
        "referral_link": "",
        "meeting_time": "",
        "meeting_title": "",
        "booking_link": "",
        # a built-in message's only (a hand-over's, to the rep the meeting left): not in
        # VARIABLES, so no cadence template may use it
        "new_rep_name": "",
    }
    values.update({k: v for k, v in extra.items() if k in values})
    if "meeting_starts_at" in extra:
        values["meeting_time"] = local_time_text(extra["meeting_starts_at"], contact)
    return values


# What a save renders every template against: a prospect with every value, and one with only
# what variables_for always fills (a person imported with an email address and nothing else).
SAMPLES: dict[str, dict[str, str]] = {
    "every value set": variables_for(
        Contact(
            "sample",
            "Ada",
            "Lovelace",
            company="Analytical Engines",
            title="Head of Engineering",
            timezone="Europe/London",
            rep_name="Grace Hopper",
            rep_email="grace@example.com",
            rep_phone="+15555550100",
        ),
        {
            "referrer_name": "Alan Turing",
            "referral_link": "https://example.com/r/sample",
            "booking_link": "https://example.com/book/sample",
            "meeting_title": "Demo",
            "meeting_starts_at": "2026-03-02T10:00:00+00:00",
        },
    ),
    "the optional values missing": variables_for(Contact("sample", ""), {}),
}


@functools.lru_cache(maxsize=512)
def _compiled(autoescape: bool, source: str) -> Any:
    env = _html_env if autoescape else _env
    return env.from_string(_parse(env, source))


def _reason(err: Exception) -> str:
    if isinstance(err, TemplateError) and err.message:
        return err.message
    if isinstance(err, (RecursionError, SystemError)):  # see template_problems
        return "the template recurses too deeply"
    return f"{type(err).__name__}: {err}"


def _render(autoescape: bool, source: str, values: dict[str, str], limit: int | None) -> str:
    out: list[str] = []
    size = 0
    try:
        # streamed, so that a template producing too much stops at the limit, not after it
        for piece in _compiled(autoescape, source).generate(**values):
            size += len(piece)
            if limit is not None and size > limit:
                raise RenderFailure(f"the rendered text is longer than {limit} characters")
            out.append(piece)
    except RenderFailure:
        raise
    except Exception as err:  # a template may raise anything Python can: all are its fault
        raise RenderFailure(_reason(err)) from err
    return "".join(out)


def render(source: str, values: dict[str, str], limit: int | None = None) -> str:
    """`source` rendered with `values`; RenderFailure (with the reason) when it cannot be."""
    return _render(False, source, values, limit)


def render_html(source: str, values: dict[str, str], limit: int | None = None) -> str:
    return _render(True, source, values, limit)


def field_limit(channel: str, field: str, limits: RenderLimits) -> int:
    """The most characters `field` ("subject", "body", "html") of a `channel` step may render to."""
    if field == "subject":
        return limits.subject
    if channel == "email":
        return limits.email_body
    return limits.sms if channel == "sms" else limits.task


def render_problem(source: str, channel: str, field: str, limits: RenderLimits) -> str | None:
    """Why `source` fails to render for one of the SAMPLES prospects, or None."""
    limit = field_limit(channel, field, limits)
    for name, values in SAMPLES.items():
        try:
            _render(field == "html", source, values, limit)
        except RenderFailure as err:
            return f"{err} (rendered for a prospect with {name})"
    return None


# Built-in touches outside cadences: (subject, email body, sms body) per kind.
SYSTEM_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "warm_intro": (
        "{{ referrer_name }} suggested we talk",
        "Hi {{ first_name }},\n\n{{ referrer_name }} suggested we talk: they thought what we did "
        "for them could help {{ company }} too. Would a short call this week work?\n\n"
        "{{ rep_name }}",
        "Hi {{ first_name }}, {{ rep_name }} here. {{ referrer_name }} suggested we talk. "
        "Could we find 15 minutes this week?",
    ),
    "meeting_reminder": (
        "Reminder: {{ meeting_title }} on {{ meeting_time }}",
        'Hi {{ first_name }},\n\nA reminder of our meeting "{{ meeting_title }}" on '
        "{{ meeting_time }}. Reply to this email if you need to move it.\n\n{{ rep_name }}",
        "Reminder: {{ meeting_title }} with {{ rep_name }} on {{ meeting_time }}.",
    ),
    # calendar invitations (issue 14): the text beside the text/calendar part
    "meeting_invite": (
        "Invitation: {{ meeting_title }} on {{ meeting_time }}",
        'Hi {{ first_name }},\n\nHere is the invitation to "{{ meeting_title }}" on '
        "{{ meeting_time }}: accept it to put it in your calendar.\n\n{{ rep_name }}",
        "",
    ),
    "meeting_cancel": (
        "Cancelled: {{ meeting_title }} on {{ meeting_time }}",
        'Hi {{ first_name }},\n\n"{{ meeting_title }}" on {{ meeting_time }} is cancelled; '
        "your calendar removes it.\n\n{{ rep_name }}",
        "",
    ),
    # the rep's own invitation when the prospect's did not go (services/outreach/invites.py)
    "meeting_invite_rep": (
        "Invitation: {{ meeting_title }} on {{ meeting_time }} (not sent to {{ full_name }})",
        'Here is your invitation to "{{ meeting_title }}" with {{ full_name }} ({{ company }}) '
        "on {{ meeting_time }}. {{ full_name }} got no invitation from us: the event's "
        "description and the meeting in closeflow say why.",
        "",
    ),
    "meeting_cancel_rep": (
        "Cancelled: {{ meeting_title }} on {{ meeting_time }} (not sent to {{ full_name }})",
        '"{{ meeting_title }}" with {{ full_name }} on {{ meeting_time }} is cancelled; your '
        "calendar removes it. {{ full_name }} got no cancellation from us.",
        "",
    ),
    # a hand-over's: the meeting leaves the calendar of the rep who no longer runs it
    "meeting_handed_over_rep": (
        "Handed over: {{ meeting_title }} on {{ meeting_time }}",
        '"{{ meeting_title }}" with {{ full_name }} on {{ meeting_time }} is run by '
        "{{ new_rep_name }} now; your calendar removes it. {{ full_name }} got no message about "
        "this from us.",
        "",
    ),
    # after a missed meeting: an offer to find another time
    "meeting_rebook": (
        "Shall we find another time, {{ first_name }}?",
        'Hi {{ first_name }},\n\nWe missed each other for "{{ meeting_title }}" on '
        "{{ meeting_time }}. No problem: reply with a time that suits you and I will send a new "
        "invitation.\n\n{{ rep_name }}",
        "Hi {{ first_name }}, {{ rep_name }} here. We missed each other for {{ meeting_title }}: "
        "reply with a time that suits you?",
    ),
    "referral_ask": (
        "Who else should we help, {{ first_name }}?",
        "Hi {{ first_name }},\n\nThank you for choosing us. If you know someone who could use "
        "the same help, you can introduce them here: {{ referral_link }}\n\n{{ rep_name }}",
        "Thanks again {{ first_name }}! Know someone we could help? {{ referral_link }}",
    ),
    "referral_reminder": (
        "A quick reminder, {{ first_name }}",
        "Hi {{ first_name }},\n\nIn case my last note got buried: if someone you know could use "
        "the help we gave {{ company }}, you can introduce them in a minute here: "
        "{{ referral_link }}\n\n{{ rep_name }}",
        "Hi {{ first_name }}, {{ rep_name }} here. Anyone we could help? {{ referral_link }}",
    ),
    # to the referrer, when someone they introduced books a meeting / becomes a client
    "referrer_thanks_meeting": (
        "Thank you for the introduction, {{ first_name }}",
        "Hi {{ first_name }},\n\nThe person you introduced us to has just booked a meeting "
        "with us. Thank you for thinking of us!\n\n{{ rep_name }}",
        "Thanks {{ first_name }}! Your introduction just booked a meeting with us. {{ rep_name }}",
    ),
    "referrer_thanks_won": (
        "Your introduction became a client, {{ first_name }}",
        "Hi {{ first_name }},\n\nThe person you introduced us to has just become a client. "
        "Thank you very much for the trust!\n\n{{ rep_name }}",
        "Thanks {{ first_name }}! Your introduction just became a client. {{ rep_name }}",
    ),
}

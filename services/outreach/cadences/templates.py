"""Message templates: sandboxed Jinja2, checked at save time so no email goes out broken."""

from __future__ import annotations

from datetime import datetime

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from shared.contracts.journey import Contact
from shared.contracts.plan import local_text
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
    }
)

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _default(value: object, fallback: str = "") -> object:
    """`{{ title | default("there") }}`: an empty value counts as missing, not only undefined."""
    return value if value else fallback


_env.filters["default"] = _default
_env.filters["d"] = _default
# HTML parts: every value is escaped, so a prospect's name cannot inject markup
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
_html_env.filters.update(_env.filters)


def template_problems(source: str) -> list[str]:
    """Why `source` would render badly: syntax errors and unknown variables."""
    try:
        parsed = _env.parse(source)
    except TemplateSyntaxError as err:
        return [f"template syntax error on line {err.lineno}: {err.message}"]
    unknown = sorted(meta.find_undeclared_variables(parsed) - VARIABLES)
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
        "company": contact.company or "your company",
        "title": contact.title,
        "rep_name": contact.rep_name or "the closeflow team",
        "rep_email": contact.rep_email,
        "rep_phone": contact.rep_phone or "",
        "referrer_name": "",
        "referral_link": "",
        "meeting_time": "",
        "meeting_title": "",
    }
    values.update({k: v for k, v in extra.items() if k in VARIABLES})
    if "meeting_starts_at" in extra:
        values["meeting_time"] = local_time_text(extra["meeting_starts_at"], contact)
    return values


def render(source: str, values: dict[str, str]) -> str:
    return _env.from_string(source).render(**values)


def render_html(source: str, values: dict[str, str]) -> str:
    return _html_env.from_string(source).render(**values)


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

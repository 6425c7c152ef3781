"""What an inbound email is: a person's reply, or an automatic one (out of office and the like),
and which ledger row it answers when In-Reply-To is missing (the reply address token).

An automatic reply never counts as a reply: it pauses the journey, until the return date it
states (09:00 in the prospect's zone) or for `ooo_default_pause_days`.

How an automatic reply is recognised. Headers are strong evidence and decide alone:
- `Auto-Submitted` with any value but `no` (RFC 3834), `X-Autoreply`, `X-Autorespond`,
  `Precedence: auto_reply | bulk | junk`. `X-Auto-Response-Suppress` alone says nothing: Outlook
  puts it on ordinary messages too.
Without them, phrases are weaker evidence, one signal each:
- the subject: "Out of office", "Automatic reply", "Auto:", "Autoreply", "Abwesenheitsnotiz",
  "Automatische Antwort", "Réponse automatique", "Absence du bureau", "Fuera de la oficina",
  "Respuesta automática", "Afwezig", "Risposta automatica", "Fuori ufficio", "Resposta
  automática", "Ausente do escritório", ...
- the opening of the writer's text (before any quoted original): statements auto-responders
  make ("this is an automatic reply", "I am currently out of the office", "ich bin ... nicht im
  Büro", "je suis absent", ...).
A person may open a real answer with the same words ("I'm out of office today but yes, let's
talk Tuesday"), so the writer's text is also read for an answer to our message: a question, or
yes / sure / sounds good / let's talk / interested / no thanks and their equivalents in the
same languages (`answers_us`). The rule:
- one phrase signal and no answer: automatic (what an auto-responder writes, and nothing else);
- one phrase signal and an answer: a person's reply (it counts as one and ends the cadence);
- two phrase signals (subject and text both say so): automatic, answer or not (people do not
  retitle their answer "Automatic reply"; auto-responders do say "questions? call ...").
A stated return date does not decide either way: it sets how long an automatic reply pauses.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import formataddr, getaddresses, parseaddr, parsedate_to_datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from services.outreach.webhooks.return_dates import find_return_date, fold
from shared.timezones import ProspectZone, known_zone

Headers = Sequence[tuple[str, str]]
OUT_OF_OFFICE = "out of office"
RETURN_HOUR = time(9)
BODY_REACH = 400  # characters of the text where an out-of-office statement is believed

_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_SUBJECT = re.compile(
    r"^\s*auto\s*:"
    r"|\b(?:out of (?:the )?office|out-of-office|automatic reply|auto[- ]?reply|autoreply"
    r"|auto[- ]?response|autoresponder|abwesenheitsnotiz|abwesenheit|automatische antwort"
    r"|reponse automatique|absence du bureau|absent du bureau|absent\(e\)"
    r"|fuera de la oficina|respuesta automatica|afwezig|automatisch antwoord|afwezigheid"
    r"|risposta automatica|fuori ufficio|fuori sede|resposta automatica"
    r"|ausente do escritorio|fora do escritorio)\b"
)
_BODY = re.compile(
    r"\b(?:this is an? (?:automatic|automated|auto-generated)"
    r"|automatic reply|auto-reply|autoreply|automated response"
    r"|i am (?:currently |now )?(?:out of (?:the )?office|away from (?:the|my) (?:office|desk)"
    r"|on (?:annual |parental |maternity |paternity |sick )?leave|on vacation|on holiday)"
    r"|i'm (?:currently |now )?(?:out of (?:the )?office|away from (?:the|my) (?:office|desk)"
    r"|on (?:annual |parental |maternity |paternity |sick )?leave|on vacation|on holiday)"
    r"|i will be out of (?:the )?office|i am out until|i'm out until"
    r"|with (?:limited|no) access to (?:my )?e-?mail"
    r"|automatische antwort|abwesenheitsnotiz|nicht im buro|ausser haus|im urlaub"
    r"|ich bin (?:\w+ )?(?:\w+ )?abwesend"
    r"|reponse automatique|je suis (?:actuellement )?absente?|je serai absente?"
    r"|absence du bureau|hors du bureau|en conges"
    r"|respuesta automatica|fuera de la oficina|estoy fuera|estare fuera"
    r"|risposta automatica|fuori ufficio|sono assente|saro assente"
    r"|resposta automatica|ausente do escritorio|estou ausente|fora do escritorio"
    r"|automatisch antwoord|ik ben (?:momenteel |tot \S+ )?(?:afwezig|niet aanwezig|niet op kantoor))"
)
# Answers to our message, folded (no accents, lower case). Words auto-responders also use are
# left out: "call me" ("for urgent matters call me on ..."), "happy to help", "gerne" ("wenden
# Sie sich gerne an ..."), "graag", "avec plaisir", "prima" ("prima possibile"); a bare yes
# counts only opening a clause ("but yes, ...", not "make sure"); no "si" ("Si vous avez ...").
_ANSWER = re.compile(
    r"(?:^|[\n.!,;:]\s*|\b(?:but|aber|mais|pero|ma|mas|maar) )"
    r"(?:yes|yeah|yep|sure|ja|oui|claro|certo|sim)\b"
    r"|\b(?:sounds (?:good|great)|works for me|count me in|no thanks|not interested"
    r"|(?:i am|i'm|we are|we're) interested|let'?s (?:talk|chat|meet|speak|connect|schedule"
    r"|set up|find a time|do it)|happy to (?:talk|chat|meet|connect|hop on)|klingt gut"
    r"|lass uns|kein interesse|ca me va|pas interesse|parlons|me interesa|hablemos"
    r"|sentiamoci|mi interessa|com certeza|vamos conversar|laten we|geen interesse)\b"
)
ANSWER_REACH = 600  # characters of the writer's text read for an answer

# Where the quoted original starts in a reply's text: nothing below it is the writer's.
_QUOTE_START = re.compile(
    r"^(?:>|-{2,}\s*original message|-{2,}\s*ursprungliche nachricht|-{2,}\s*message d'origine"
    r"|on .{0,120} wrote:|am .{0,120} schrieb .{0,80}:|le .{0,120} a ecrit\s*:"
    r"|from:\s|von:\s|de\s*:\s|sent:\s|gesendet:\s|envoye\s*:)",
    re.M,
)

# --- automatic replies ------------------------------------------------------------------------


def header(headers: Headers, name: str) -> str:
    wanted = name.lower()
    return next((v for n, v in headers if n.lower() == wanted), "")


def auto_reply_reason(headers: Headers, subject: str, text: str) -> str | None:
    """Why this inbound email is an automatic reply; None when a person wrote it (the rule is
    in the module doc)."""
    if strong := _header_evidence(headers):
        return strong
    own = fold(own_text(text))
    signals = []
    if match := _SUBJECT.search(fold(subject)):
        signals.append(f"subject: {match.group(0).strip()}")
    if match := _BODY.search(own[:BODY_REACH]):
        signals.append(f"text: {match.group(0).strip()}")
    if len(signals) >= 2 or (signals and not answers_us(own)):
        return "; ".join(signals)
    return None


def _header_evidence(headers: Headers) -> str | None:
    auto_submitted = header(headers, "Auto-Submitted").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond"):
        value = header(headers, name).strip()
        if value and value.lower() not in ("no", "false", "0"):
            return f"{name}: {value}"
    precedence = header(headers, "Precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    return None


def answers_us(folded_own_text: str) -> bool:
    """Whether the writer's text (folded, without the quoted original) answers our message: a
    question, or an answer auto-responders do not give."""
    opening = folded_own_text[:ANSWER_REACH]
    return "?" in opening or _ANSWER.search(opening) is not None


def own_text(text: str) -> str:
    """The writer's part of a reply: what comes before the quoted original."""
    found = _QUOTE_START.search(fold(text))
    return text[: found.start()] if found else text


# --- opting out by answering --------------------------------------------------------------------

# The opt-out keywords carriers honour for SMS (CTIA): a text that is one of them opts out.
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "REVOKE", "OPTOUT"}
)
# An email opts out the same way with the words that mean nothing else in an answer ("cancel"
# or "end" may be about a meeting): its subject, or the first line its writer wrote, alone.
EMAIL_STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT", "OPT OUT", "UNSUBSCRIBE ME", "REMOVE ME"}
)
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|fw|fwd|wg|tr)\s*:\s*)+", re.I)


def stop_word(subject: str, text: str) -> str | None:
    """The opt-out keyword an inbound email says alone (its subject without Re:, or the first
    line of the writer's text), upper-cased; None when it says none."""
    lines = [line for line in own_text(text).splitlines() if line.strip()]
    for candidate in (_REPLY_PREFIX.sub("", subject), lines[0] if lines else ""):
        word = " ".join(candidate.strip(" \t.!-").split()).upper()
        if word in EMAIL_STOP_WORDS:
            return word
    return None


# --- the pause ----------------------------------------------------------------------------------


def sent_at(date_header: str, fallback: datetime) -> datetime:
    """When the email says it was written (its Date header), or `fallback` when it cannot say."""
    try:
        when = parsedate_to_datetime(date_header) if date_header else None
        if when is None or when.tzinfo is None:
            return fallback
        written = when.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: year 9999, -0500
        return fallback
    # a clock far ahead would put a year-less date into the wrong year
    return min(written, fallback + timedelta(days=1))


MONTH_FIRST_COUNTRIES = frozenset({"US", "PH", "FM", "MH", "PW", "GU", "AS"})


def _tz_file(*parts: str) -> bytes | None:
    """A file of the tz database (tzdata, else the system's); None when neither has it."""
    try:
        return resources.files("tzdata").joinpath("zoneinfo", *parts).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, OSError):
        path = Path("/usr/share/zoneinfo", *parts)
        return path.read_bytes() if path.is_file() else None


@lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    """IANA zone -> ISO country, from the tz database's zone.tab."""
    content = (_tz_file("zone.tab") or b"").decode()
    out: dict[str, str] = {}
    for line in content.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = parts[0]
    return out


@lru_cache(maxsize=1)
def _countries_by_rules() -> dict[bytes, frozenset[str]]:
    """A zone's rules (its file) -> the countries of zone.tab's zones with those rules: an
    alias (US/Pacific, EST5EDT, America/Fort_Wayne) is a copy of its zone's file."""
    found: dict[bytes, set[str]] = {}
    for zone, country in _zone_countries().items():
        rules = _tz_file(*zone.split("/"))
        if rules is not None:
            found.setdefault(rules, set()).add(country)
    return {rules: frozenset(countries) for rules, countries in found.items()}


@lru_cache(maxsize=512)
def month_first(zone_name: str) -> bool:
    """Whether 03/04 means March 4 for someone in this zone (the United States and a few
    others write month/day), the zone named by zone.tab or by an alias of one of its zones."""
    country = _zone_countries().get(zone_name)
    if country is not None:
        return country in MONTH_FIRST_COUNTRIES
    if not zone_name or ".." in zone_name or zone_name.startswith("/"):
        return False
    rules = _tz_file(*zone_name.split("/"))
    countries = _countries_by_rules().get(rules, frozenset()) if rules else frozenset()
    return bool(countries) and countries <= MONTH_FIRST_COUNTRIES


def writes_month_first(zone: ProspectZone) -> bool:
    """Whether the prospect writes month/day: as their zone's country does; for a zone taken by
    default, as every zone of their phone number does (a United States number spanning several
    zones has no zone of its own, but its country writes month first)."""
    if zone.source == "default" and zone.zones:
        return all(month_first(candidate) for candidate in zone.zones)
    return month_first(zone.name)


@dataclass(frozen=True)
class Pause:
    until: datetime
    stated: date | None  # the return date read in the message, if any


def pause_for(
    text: str,
    written: datetime,
    zone_name: str,
    default_days: int,
    now: datetime,
    *,
    in_month_first: bool | None = None,
) -> Pause:
    """Until when an out-of-office pauses the journey: 09:00 on the stated return date in the
    prospect's zone (UTC when unknown), else `default_days` from now. A numeric date is read
    month first when `in_month_first` says so (writes_month_first), else as the zone's country
    writes it."""
    tz = known_zone(zone_name) or ZoneInfo("UTC")
    if in_month_first is None:
        in_month_first = month_first(zone_name)
    back = find_return_date(text, written.astimezone(tz).date(), month_first=in_month_first)
    if back is None:
        return Pause(now + timedelta(days=default_days), None)
    return Pause(datetime.combine(back, RETURN_HOUR, tz), back)


# --- reply addresses ----------------------------------------------------------------------------

_TOKEN = re.compile(r"\+r-([a-z2-7]{26})(?=@|$)", re.I)


def new_reply_token() -> str:
    """128 random bits in lower-case base32: mail systems may lower-case the local part."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def reply_address(from_header: str, token: str, reply_domain: str = "") -> str:
    """`Name <local+r-token@domain>` for the sender `from_header`; `reply_domain` replaces the
    sender's domain when set (it must route to the inbound webhook)."""
    name, address = parseaddr(from_header)
    local, _, domain = address.rpartition("@")
    return formataddr((name, f"{local}+r-{token}@{reply_domain or domain}"))


def reply_token(addresses: Iterable[str]) -> str | None:
    """The reply token in any of these recipient addresses (or Postmark's MailboxHash)."""
    for value in addresses:
        for _, address in getaddresses([value]):
            if found := _TOKEN.search(address):
                return found.group(1).lower()
        if found := re.fullmatch(r"r-([a-z2-7]{26})", value.strip(), re.I):
            return found.group(1).lower()
    return None


def header_pairs(value: object) -> list[tuple[str, str]]:
    """Headers as (name, value) pairs from Mailgun's `message-headers` (a JSON list of pairs) or
    Postmark's `Headers` (a list of {"Name", "Value"}); anything else is skipped."""
    out: list[tuple[str, str]] = []
    if not isinstance(value, list):
        return out
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
        elif isinstance(item, Mapping) and "Name" in item:
            out.append((str(item["Name"]), str(item.get("Value", ""))))
    return out

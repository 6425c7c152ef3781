"""The return date an out-of-office reply states, in English, German and French (and the month
and weekday names of Spanish, Italian, Portuguese and Dutch).

`find_return_date(text, received)` reads it in four steps:

1. Every date mention is listed. Forms: ISO `2026-12-12`; `12.12.2026`, `12.12.26`, `12.12.`;
   `12/12/2026`, `12/12` (day first, unless `month_first` or the first number cannot be a
   month); `12 December (2026)`, `12th of December`, `5. Januar`, `1er janvier`, `12 de
   diciembre`; `December 12(th)(, 2026)`, `Dec. 12`; a weekday alone (`back on Monday`);
   `tomorrow` / `morgen` / `demain`. A weekday in front of a date (`Monday 5 January`) is part of
   that date.
2. A mention counts only with a cue near it in the same line. Return cues ("back", "returning",
   "zurück", "wieder", "erreichbar", "de retour", "disponible", ...) attach to the nearest
   mention on either side, as German puts them after the date ("ab dem 15.12. wieder
   erreichbar"). Until cues ("until", "till", "through", "to", "bis", "jusqu'au", "au", a dash
   after another date, ...) attach to the next mention after them. A bare date may be anything
   (the first day away, a public holiday), so without a cue there is no return date.
3. The first mention with a return cue wins, else the first with an until cue. "until X" reads
   as back on X (whoever is still away then answers with another out-of-office, which pauses
   again); "through X", "bis einschließlich X", "X inclus" read as back the day after.
4. A date without a year is its next occurrence on or after the day received; a weekday alone
   is the next such day after it. A date before the day received, or more than a year after
   it, is ignored (the past, or a misreading).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

MAX_AHEAD = timedelta(days=366)
READ_CHARS = 4000
CUE_REACH = 50  # characters between a cue and the mention it belongs to, at most

_MONTHS: dict[int, tuple[str, ...]] = {
    1: (
        "january",
        "jan",
        "januar",
        "janner",
        "janvier",
        "janv",
        "enero",
        "gennaio",
        "janeiro",
        "januari",
    ),
    2: (
        "february",
        "feb",
        "februar",
        "fevrier",
        "fevr",
        "fev",
        "febrero",
        "febbraio",
        "fevereiro",
        "februari",
    ),
    3: ("march", "mar", "marz", "maerz", "mars", "marzo", "marco", "maart"),
    4: ("april", "apr", "avril", "avr", "abril", "aprile"),
    5: ("may", "mai", "mayo", "maggio", "maio", "mei"),
    6: ("june", "jun", "juni", "juin", "junio", "giugno", "junho"),
    7: ("july", "jul", "juli", "juillet", "juil", "julio", "luglio", "julho"),
    8: ("august", "aug", "aout", "agosto", "augustus"),
    9: (
        "september",
        "sep",
        "sept",
        "septembre",
        "septiembre",
        "setiembre",
        "settembre",
        "setembro",
    ),
    10: ("october", "oct", "oktober", "okt", "octobre", "octubre", "ottobre", "outubro"),
    11: ("november", "nov", "novembre", "noviembre", "novembro"),
    12: ("december", "dec", "dezember", "dez", "decembre", "diciembre", "dicembre", "dezembro"),
}
_MONTH_OF = {name: number for number, names in _MONTHS.items() for name in names}
_WEEKDAYS: dict[int, tuple[str, ...]] = {
    0: ("monday", "montag", "lundi", "lunes", "lunedi", "maandag"),
    1: ("tuesday", "dienstag", "mardi", "martes", "martedi", "dinsdag"),
    2: ("wednesday", "mittwoch", "mercredi", "miercoles", "mercoledi", "woensdag"),
    3: ("thursday", "donnerstag", "jeudi", "jueves", "giovedi", "donderdag"),
    4: ("friday", "freitag", "vendredi", "viernes", "venerdi", "vrijdag"),
    5: ("saturday", "samstag", "sonnabend", "samedi", "sabado", "sabato", "zaterdag"),
    6: ("sunday", "sonntag", "dimanche", "domingo", "domenica", "zondag"),
}
_WEEKDAY_OF = {name: number for number, names in _WEEKDAYS.items() for name in names}
_TOMORROW = ("tomorrow", "morgen", "demain", "manana", "domani", "amanha")


def _alternation(words: object) -> str:
    # longest first, so "mars" is not read as "mar" + "s"
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))  # type: ignore[attr-defined]


_MONTH = f"(?:{_alternation(_MONTH_OF)})"
_YEAR = r"(\d{4}|\d{2})(?!\d)"

_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_DOTTED = re.compile(r"(?<![\d.])(\d{1,2})\.\s?(\d{1,2})\.(?:\s?" + _YEAR + ")?")
_SLASHED = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?:/" + _YEAR + r")?(?![\d/])")
_DAY_MONTH = re.compile(
    r"(?<![\d.])(\d{1,2})(?:st|nd|rd|th|er|\.)?\s*(?:of\s+|de\s+)?(" + _MONTH + r")\b\.?"
    r"(?:,?\s*(?:de\s+)?(\d{4})(?!\d))?"
)
_MONTH_DAY = re.compile(
    r"\b(" + _MONTH + r")\b\.?\s+(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?(?!\d)(?:,?\s*(\d{4})(?!\d))?"
)
_WEEKDAY = re.compile(r"\b(" + _alternation(_WEEKDAY_OF) + r")\b")
_RELATIVE = re.compile(r"\b(" + _alternation(_TOMORROW) + r")\b")

# Cues, on the accent-folded lower-case text. Return cues attach to the nearest mention.
_RETURN_CUE = re.compile(
    r"\b(?:back|return|returns|returning|return date|available|reachable|in the office on"
    r"|zuruck|zurueck|wieder|erreichbar|ruckkehr|rueckkehr"
    r"|retour|rentre|rentree|rentrerai|reprise|reprendrai|disponible|joignable"
    r"|regreso|regresare|volvere|vuelta"
    r"|rientro|rientrero|ritorno|disponibile"
    r"|retorno|retornarei|regresso|disponivel"
    r"|terug|bereikbaar|beschikbaar)\b"
)
# Until cues attach to the next mention; the short ones only when right before it.
_UNTIL_CUE = re.compile(
    r"\b(?:until|till|til|up to|through|thru|bis|jusqu'au|jusqu'a|jusqu au|jusqua"
    r"|hasta|fino al|fino a|ate|tot en met|t/m|tot)\b"
)
_ADJACENT_UNTIL = re.compile(r"\b(?:to|au|al|ate)\s*$")
_DASH = re.compile(r"[-\u2013\u2014]\s*$")
_DIGIT_DASH = re.compile(r"\d\s*[-\u2013\u2014]\s*$")
_NEGATION = re.compile(r"\b(?:not|nicht|pas|non|no|niet|nao)\s+(?:\w+\s+)?$")
_INCLUSIVE_BEFORE = re.compile(r"\b(?:through|thru|bis einschl\w*|bis und mit|tot en met|t/m)\b")
_INCLUSIVE_AFTER = re.compile(
    r"^\W{0,3}(?:\(?\s*)?(?:inclusive|included|incl|einschl\w*|inklusive|inkl|inclus|incluse"
    r"|incluido|incluida|incluso|inclusief)\b"
)
# What may sit between an until cue and its date: articles, weekdays, "on", "the", "le", ...
_FILLER = re.compile(
    r"^(?:[\s,.:]|\b(?:the|on|and including|including|zum|zu|dem|den|am|einschliesslich"
    r"|le|du|el|il|op|de|da|do|incl|inclusive|" + _alternation(_WEEKDAY_OF) + r")\b)*$"
)


@dataclass
class Mention:
    start: int
    end: int
    kind: str  # "date", "weekday" or "relative"
    day: int = 0
    month: int = 0
    year: int | None = None
    weekday: int = 0
    cues: set[str] = field(default_factory=set)  # "return", "until", "inclusive"


def fold(text: str) -> str:
    """Lower case without accents, so "Zurück", "zuruck" and "décembre" match one spelling."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return folded.replace("\u2019", "'")


def _year(value: str | None) -> int | None:
    if not value:
        return None
    year = int(value)
    return year + 2000 if year < 100 else year


def mentions(text: str, *, month_first: bool = False) -> list[Mention]:
    """Every date mention in `text` (folded), without overlaps, in order."""
    found: list[Mention] = []
    for m in _ISO.finditer(text):
        found.append(Mention(m.start(), m.end(), "date", int(m[3]), int(m[2]), int(m[1])))
    for m in _DOTTED.finditer(text):
        found.append(Mention(m.start(), m.end(), "date", int(m[1]), int(m[2]), _year(m[3])))
    for m in _SLASHED.finditer(text):
        first, second = int(m[1]), int(m[2])
        if (month_first and first <= 12) or second > 12:
            first, second = second, first
        found.append(Mention(m.start(), m.end(), "date", first, second, _year(m[3])))
    for m in _DAY_MONTH.finditer(text):
        month = _MONTH_OF[m[2]]
        found.append(Mention(m.start(), m.end(), "date", int(m[1]), month, _year(m[3])))
    for m in _MONTH_DAY.finditer(text):
        month = _MONTH_OF[m[1]]
        found.append(Mention(m.start(), m.end(), "date", int(m[2]), month, _year(m[3])))
    for m in _WEEKDAY.finditer(text):
        found.append(Mention(m.start(), m.end(), "weekday", weekday=_WEEKDAY_OF[m[1]]))
    for m in _RELATIVE.finditer(text):
        found.append(Mention(m.start(), m.end(), "relative"))
    # the longest reading of a stretch of text wins ("12 December 2026" over "12 December")
    found.sort(key=lambda x: (x.start, -(x.end - x.start)))
    kept: list[Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        kept.append(mention)
    # a weekday right before a date names that date's day ("Monday, 5 January")
    out: list[Mention] = []
    for i, mention in enumerate(kept):
        following = kept[i + 1] if i + 1 < len(kept) else None
        if (
            mention.kind == "weekday"
            and following is not None
            and following.kind == "date"
            and re.fullmatch(
                r"[\s,]*(?:the|den|der|le|el|il)?[\s,]*", text[mention.end : following.start]
            )
        ):
            continue
        out.append(mention)
    return out


def _attach_cues(text: str, found: list[Mention]) -> None:
    for cue in _RETURN_CUE.finditer(text):
        if _NEGATION.search(text[max(0, cue.start() - 12) : cue.start()]):
            continue  # "nicht erreichbar", "not available": the absence, not the return
        best: tuple[int, Mention] | None = None
        for mention in found:
            # the distance first: the text between is read only when it is near (each cue
            # read the text up to every mention: cubic in a long text)
            if mention.start >= cue.end():
                start, end = cue.end(), mention.start
            elif mention.end <= cue.start():
                start, end = mention.end, cue.start()
            else:
                continue
            if end - start > CUE_REACH or (best is not None and end - start >= best[0]):
                continue
            if "\n" not in text[start:end]:
                best = (end - start, mention)
        if best is not None:
            best[1].cues.add("return")
    for i, mention in enumerate(found):
        line_start = text.rfind("\n", 0, mention.start) + 1
        previous_end = found[i - 1].end if i > 0 else 0
        before = text[max(line_start, previous_end, mention.start - CUE_REACH) : mention.start]
        until_cue = next(reversed(list(_UNTIL_CUE.finditer(before))), None)  # the last one counts
        if until_cue is not None and _FILLER.match(before[until_cue.end() :]):
            mention.cues.add("until")
            if _INCLUSIVE_BEFORE.search(before[until_cue.start() :]):
                mention.cues.add("inclusive")
        elif _ADJACENT_UNTIL.search(before) or (
            # a dash between two dates: "1.12.-12.12.", "1-12 December", "Dec 1 - Dec 12"
            _DASH.search(before)
            and (previous_end >= mention.start - 4 or _DIGIT_DASH.search(before))
        ):
            mention.cues.add("until")
        if _INCLUSIVE_AFTER.match(text[mention.end : mention.end + 20]):
            mention.cues.add("inclusive")


def _resolve(mention: Mention, received: date) -> date | None:
    if mention.kind == "relative":
        return received + timedelta(days=1)
    if mention.kind == "weekday":
        ahead = (mention.weekday - received.weekday()) % 7 or 7
        return received + timedelta(days=ahead)
    if not 1 <= mention.month <= 12 or not 1 <= mention.day <= 31:
        return None
    years = [mention.year] if mention.year is not None else [received.year, received.year + 1]
    for year in years:
        try:
            day = date(year, mention.month, mention.day)
        except ValueError:
            continue
        if day >= received or mention.year is not None:
            return day
    return None


def find_return_date(text: str, received: date, *, month_first: bool = False) -> date | None:
    """The day the writer is back, or None when the text states none (see the module doc).
    Read in its first READ_CHARS: an out-of-office says it up front (what follows is often the
    message it answers, quoted), and a stranger's reply address takes any text."""
    folded = fold(text[:READ_CHARS])
    found = mentions(folded, month_first=month_first)
    _attach_cues(folded, found)
    for wanted in ("return", "until"):
        for mention in found:
            if wanted not in mention.cues or (wanted == "until" and "return" in mention.cues):
                continue
            day = _resolve(mention, received)
            if day is None:
                continue
            if "inclusive" in mention.cues:
                day += timedelta(days=1)
            if received <= day <= received + MAX_AHEAD:
                return day
    return None

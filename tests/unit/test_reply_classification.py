"""Automatic replies (headers, subjects, texts in several languages), the return dates they state,
the pause they cause, and the reply address tokens."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.outreach.webhooks import replies
from services.outreach.webhooks.return_dates import READ_CHARS, find_return_date

HUMAN = "Sounds good, let's talk on Thursday.\n\nOn Mon, Ada wrote:\n> I am out of the office"

# --- automatic replies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("Auto-Submitted", "auto-replied")], "Auto-Submitted: auto-replied"),
        ([("auto-submitted", "auto-generated; type=vacation")], "Auto-Submitted: auto-generated"),
        ([("X-Autoreply", "yes")], "X-Autoreply: yes"),
        ([("X-Autorespond", "Out of office")], "X-Autorespond: Out of office"),
        ([("Precedence", "auto_reply")], "Precedence: auto_reply"),
        ([("Precedence", "bulk")], "Precedence: bulk"),
        ([("Precedence", "junk")], "Precedence: junk"),
    ],
)
def test_headers_that_mark_an_automatic_reply(headers: list[tuple[str, str]], why: str) -> None:
    assert replies.auto_reply_reason(headers, "Re: Quick question", HUMAN) == why


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Auto-Response-Suppress", "All")],  # Outlook sets it on ordinary mail too
        [("Auto-Submitted", "no")],
        [("Precedence", "list")],
        [("X-Autoreply", "no")],
        [],
    ],
)
def test_headers_that_do_not(headers: list[tuple[str, str]]) -> None:
    assert replies.auto_reply_reason(headers, "Re: Quick question", HUMAN) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Quick question",
        "Automatic reply: Quick question",
        "Auto: Quick question",
        "Autoreply: Quick question",
        "Abwesenheitsnotiz: Kurze Frage",
        "Automatische Antwort: Kurze Frage",
        "Réponse automatique : Petite question",
        "Absence du bureau",
        "Fuera de la oficina: Pregunta",
        "Respuesta automática: Pregunta",
        "Afwezig: Korte vraag",
        "Risposta automatica: Domanda",
        "Fuori ufficio",
        "Resposta automática: Pergunta",
        "Ausente do escritório",
    ],
)
def test_subjects_in_several_languages(subject: str) -> None:
    assert (replies.auto_reply_reason([], subject, "") or "").startswith("subject: ")


@pytest.mark.parametrize(
    "text",
    [
        "This is an automatic reply. I will answer when I am back.",
        "Thank you for your message. I am currently out of the office until Monday.",
        "I'm on parental leave with no access to email.",
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum 12.12. nicht im Büro.",
        "Ich bin derzeit abwesend.",
        "Bonjour, je suis actuellement absente jusqu'au 12 décembre.",
        "Estoy fuera de la oficina hasta el lunes.",
        "Sono fuori ufficio fino al 12 dicembre.",
        "Estou ausente até dia 12.",
        "Ik ben momenteel afwezig.",
    ],
)
def test_texts_in_several_languages(text: str) -> None:
    assert (replies.auto_reply_reason([], "Re: Quick question", text) or "").startswith("text: ")


def test_a_persons_reply_is_not_automatic_even_quoting_one() -> None:
    assert replies.auto_reply_reason([], "Re: Quick question", HUMAN) is None
    assert replies.auto_reply_reason([], "Re: Quick question", "Yes, call me tomorrow.") is None
    # the statement only counts in the opening of the text, not deep in a long answer
    long = "Thanks! " + "We looked at it in detail. " * 20 + "I am out of the office in May."
    assert replies.auto_reply_reason([], "Re: Quick question", long) is None


# --- return dates ---------------------------------------------------------------------------

RECEIVED = date(2026, 11, 27)  # a Friday


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I am out of the office and will be back on 12 December.", date(2026, 12, 12)),
        ("Back on December 12th, 2026.", date(2026, 12, 12)),
        ("Out of office, returning 2026-12-12.", date(2026, 12, 12)),
        ("I'm away until Monday 5 January with limited access to email.", date(2027, 1, 5)),
        ("I'm away until Monday, January 5th.", date(2027, 1, 5)),
        ("Out of the office from 1 to 12 December.", date(2026, 12, 12)),
        ("Away Dec 1 - Dec 12", date(2026, 12, 12)),
        ("Out of office through December 12, 2026", date(2026, 12, 13)),
        ("I'll be back on Monday.", date(2026, 11, 30)),
        ("I'll be back tomorrow.", date(2026, 11, 28)),
        ("I return on the 3rd of January 2027.", date(2027, 1, 3)),
        ("Back 12/14", date(2026, 12, 14)),  # 14 cannot be a month
        ("Ich bin zurück am 12.12.2026.", date(2026, 12, 12)),
        ("Ich bin ab dem 15.12. wieder erreichbar.", date(2026, 12, 15)),
        ("Bis zum 11.12. nicht im Büro, ab dem 15.12. wieder erreichbar.", date(2026, 12, 15)),
        ("Ab dem 1.12. nicht erreichbar, wieder am 15.12.", date(2026, 12, 15)),
        ("Abwesend bis einschließlich 11.12.26.", date(2026, 12, 12)),
        ("Ich bin am Montag, den 5. Januar 2027 wieder im Büro.", date(2027, 1, 5)),
        ("Urlaub: 1.12.\u2013 12.12.", date(2026, 12, 12)),  # an en dash
        ("Je suis absent, de retour le 12 décembre.", date(2026, 12, 12)),
        ("Je serai absente du 1er au 12 décembre inclus.", date(2026, 12, 13)),
        ("Absent jusqu'au lundi 5 janvier.", date(2027, 1, 5)),
        ("De retour à partir du 4 janvier 2027.", date(2027, 1, 4)),
        ("Estoy fuera hasta el 12 de diciembre.", date(2026, 12, 12)),
        ("Ik ben afwezig tot en met 12 december.", date(2026, 12, 13)),
    ],
)
def test_return_dates(text: str, back: date) -> None:
    assert find_return_date(text, RECEIVED) == back


@pytest.mark.parametrize(
    "text",
    [
        "I am out of the office with limited access to email.",
        "Our office is closed on 24 December.",  # a date without a cue is not a return date
        "I was back on 12.12.2020.",  # in the past
        "Back on 12 December 2028.",  # more than a year ahead: a misreading
        "Ich bin bis auf Weiteres nicht erreichbar.",
    ],
)
def test_no_return_date(text: str) -> None:
    assert find_return_date(text, RECEIVED) is None


def test_a_return_date_is_read_in_the_replys_first_characters() -> None:
    """A stranger may send the reply address any text marked auto-replied: every cue was
    compared with every date of the whole text (cubic: 36 KB of "back 1/2" took 16 s of the
    event loop). An out-of-office says when they are back up front; what follows (often the
    quoted message) is not read."""
    filler = "x" * READ_CHARS + "\n"
    assert find_return_date(filler + "back on 20 November", RECEIVED) is None
    assert find_return_date("back on 20 November\n" + filler, RECEIVED) == date(2027, 11, 20)
    # many cues and dates: read as far as the first characters go, nothing found past them
    assert find_return_date("back 1/2 " * 20_000, RECEIVED) == date(2027, 2, 1)


def test_a_missing_year_is_the_next_occurrence() -> None:
    assert find_return_date("back on 20 November", RECEIVED) == date(2027, 11, 20)
    assert find_return_date("back on 27 November", RECEIVED) == date(2026, 11, 27)
    assert find_return_date("back on 3 January", date(2026, 12, 20)) == date(2027, 1, 3)


def test_slashes_read_month_first_only_where_people_write_so() -> None:
    assert find_return_date("Back 03/04", RECEIVED) == date(2027, 4, 3)
    assert find_return_date("Back 03/04", RECEIVED, month_first=True) == date(2027, 3, 4)
    assert replies.month_first("America/New_York") and not replies.month_first("Europe/London")


@pytest.mark.parametrize("alias", ["US/Pacific", "US/Eastern", "US/Hawaii", "America/Fort_Wayne"])
def test_a_zone_named_by_its_alias_reads_as_its_country_does(alias: str) -> None:
    """The API takes the tz database's older names (US/Pacific for America/Los_Angeles): they
    are not in zone.tab, and a prospect there was read day first (back 03/04: April 3)."""
    assert replies.month_first(alias)
    pause = replies.pause_for("I will be back on 03/04.", NOW, alias, 5, NOW)
    assert pause.stated == date(2027, 3, 4)
    for not_a_zone in ("GB", "UTC", "", "Etc/GMT+5", "../../etc/passwd", "/etc/passwd"):
        assert not replies.month_first(not_a_zone)


# --- the pause ----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


def test_pause_until_nine_in_the_prospects_zone() -> None:
    pause = replies.pause_for("back on 12 December", NOW, "Europe/Berlin", 7, NOW)
    assert pause.until == datetime(2026, 12, 12, 9, tzinfo=ZoneInfo("Europe/Berlin"))
    assert pause.until.isoformat() == "2026-12-12T09:00:00+01:00"
    assert pause.stated == date(2026, 12, 12)


def test_pause_in_utc_when_the_zone_is_unknown_and_by_default_without_a_date() -> None:
    assert replies.pause_for("back on 12 December", NOW, "", 7, NOW).until == datetime(
        2026, 12, 12, 9, tzinfo=UTC
    )
    assert replies.pause_for("back on 12 December", NOW, "Not/AZone", 7, NOW).until.utcoffset() == (
        timedelta(0)
    )
    default = replies.pause_for("I am away.", NOW, "Europe/Berlin", 3, NOW)
    assert (default.until, default.stated) == (NOW + timedelta(days=3), None)


def test_the_day_is_read_in_the_prospects_zone() -> None:
    # 23:30 UTC on the 27th is already the 28th in Tokyo: "back on 28 November" is today there
    late = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    pause = replies.pause_for("back on 28 November", late, "Asia/Tokyo", 7, late)
    assert pause.stated == date(2026, 11, 28)


def test_when_the_email_was_written() -> None:
    assert replies.sent_at("Fri, 27 Nov 2026 10:00:00 +0100", NOW) == datetime(
        2026, 11, 27, 9, tzinfo=UTC
    )
    assert replies.sent_at("not a date", NOW) == NOW
    assert replies.sent_at("", NOW) == NOW
    # a clock far ahead would push a year-less date into the wrong year
    assert replies.sent_at("Fri, 27 Nov 2099 10:00:00 +0000", NOW) == NOW + timedelta(days=1)
    # anyone can write this Date: it has no UTC time (OverflowError, a 500 for the webhook)
    assert replies.sent_at("Fri, 31 Dec 9999 23:59:00 -0500", NOW) == NOW


# --- reply addresses ----------------------------------------------------------------------------


def test_reply_tokens_are_random_and_survive_lower_casing() -> None:
    tokens = {replies.new_reply_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) == 26 and t == t.lower() for t in tokens)
    token = tokens.pop()
    address = replies.reply_address("closeflow <sales@closeflow.localhost>", token)
    assert address == f"closeflow <sales+r-{token}@closeflow.localhost>"
    assert replies.reply_address("sales@a.example", token, "reply.example.org") == (
        f"sales+r-{token}@reply.example.org"
    )
    assert replies.reply_token([address.upper()]) == token
    assert replies.reply_token(["", f"Ada <x@y>, sales+r-{token}@a.example"]) == token
    assert replies.reply_token([f"r-{token}"]) == token  # Postmark's MailboxHash
    assert replies.reply_token(["sales@closeflow.localhost", "sales+r-short@a.example"]) is None


def test_header_pairs_from_both_providers() -> None:
    assert replies.header_pairs([["Auto-Submitted", "auto-replied"]]) == [
        ("Auto-Submitted", "auto-replied")
    ]
    assert replies.header_pairs([{"Name": "X-Autoreply", "Value": "yes"}, 3, ["x"]]) == [
        ("X-Autoreply", "yes")
    ]
    assert replies.header_pairs("nope") == []


# --- a person's answer that opens like an out-of-office ------------------------------------------

REPLY = "Re: Quick question"


@pytest.mark.parametrize(
    "text",
    [
        "I'm out of office today but yes, let's talk Tuesday",
        "I'm on vacation this week. Could you send me the pricing?",
        "I am currently out of the office, sounds good though - Thursday 3pm works for me.",
        "Ich bin heute nicht im Büro, aber ja, lass uns am Dienstag sprechen.",
        "Je suis absent aujourd'hui, mais oui, parlons mardi.",
        "Estoy fuera de la oficina hoy, pero claro, hablemos el martes.",
        "Ik ben momenteel afwezig, maar ja, laten we dinsdag bellen.",
    ],
)
def test_a_human_answer_opening_like_an_out_of_office_is_a_reply(text: str) -> None:
    """One phrase signal (the text) and an answer to our message: a person wrote it."""
    assert replies.auto_reply_reason([], REPLY, text) is None
    # headers are strong evidence and decide alone
    auto = [("Auto-Submitted", "auto-replied")]
    assert replies.auto_reply_reason(auto, REPLY, text) == "Auto-Submitted: auto-replied"
    # two phrase signals (subject and text) outweigh the answer
    both = replies.auto_reply_reason([], "Out of office: Quick question", text) or ""
    assert both.startswith("subject: out of office; text: ")


@pytest.mark.parametrize(
    "text",
    [
        # what auto-responders write that is no answer to us
        "I am out of the office until 12 December. For urgent matters call me on +49 170 1234567.",
        "I am out of the office and will make sure to reply when I am back.",
        "Ich bin bis zum 12.12. nicht im Büro. In dringenden Fällen wenden Sie sich gerne an "
        "meine Kollegin.",
        "Je suis absent jusqu'au 12 décembre. Si vous avez une urgence, contactez Paul.",
        "Sono fuori ufficio, risponderò prima possibile.",
        "I'm on parental leave, happy to help when I am back in March.",
    ],
)
def test_an_out_of_office_without_an_answer_stays_automatic(text: str) -> None:
    assert (replies.auto_reply_reason([], REPLY, text) or "").startswith("text: ")


def test_the_answer_is_read_in_the_writers_text_only() -> None:
    """A question or a yes in the quoted original (our own message) answers nothing."""
    quoted = "I am out of the office until Monday.\n\nOn Mon, Rita wrote:\n> Shall we talk? Yes?"
    assert (replies.auto_reply_reason([], REPLY, quoted) or "").startswith("text: ")
    assert not replies.answers_us("make sure to write back")
    assert replies.answers_us("ok, but yes. tuesday")


# --- opting out by email (issue 14) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "text", "word"),
    [
        ("Re: Quick question", "STOP", "STOP"),
        ("Re: Quick question", "stop.\n\nSent from my iPhone", "STOP"),
        ("Re: Quick question", "  Unsubscribe me!\n\nOn Mon, Rita wrote:\n> Hi", "UNSUBSCRIBE ME"),
        ("unsubscribe", "", "UNSUBSCRIBE"),  # what a mailto: List-Unsubscribe sends
        ("RE: AW: Opt out", "Please.", "OPT OUT"),
        ("Re: Quick question", "Remove me", "REMOVE ME"),
    ],
)
def test_an_email_that_says_stop_alone_opts_out(subject: str, text: str, word: str) -> None:
    assert replies.stop_word(subject, text) == word


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Re: Quick question", "Stop by our booth on Tuesday?"),
        ("Re: Quick question", "Cancel"),  # a meeting, most likely: SMS only
        ("Re: Quick question", "End"),
        ("Re: Quick question", "Yes, let's talk.\nSTOP"),  # not its first line
        ("Re: Quick question", "> STOP\nSure, call me."),  # a quoted line is not theirs
        ("How to stop churn", "Interesting read."),
    ],
)
def test_stop_inside_an_answer_is_no_opt_out(subject: str, text: str) -> None:
    assert replies.stop_word(subject, text) is None

"""Which notification row an email event names: its Message-ID as the notifier makes it, with
or without the angle brackets each provider keeps or drops, and nothing else."""

from __future__ import annotations

from services.outreach.notifications import provider_told
from shared.db import new_id


def test_an_event_names_the_notification_whose_message_id_it_carries() -> None:
    row = new_id()
    mid = provider_told.message_id(row, "mail.example.com")
    assert provider_told.named_by([mid]) == (row, mid)
    # Mailgun's event drops the brackets; the row keeps them
    assert provider_told.named_by(["", mid.strip("<>")]) == (row, mid)
    # a prospect's email first, then the notification's: the notification is named
    assert provider_told.named_by(["<abc@mail.example.com>", mid]) == (row, mid)


def test_other_message_ids_name_no_notification() -> None:
    row = new_id()
    for other in (
        "",
        f"<{row}@mail.example.com>",  # a cadence email's id
        f"<notification-{row[:-1]}@mail.example.com>",  # not an id of ours
        f"<notification-{row}x@mail.example.com>",
        f"<re-notification-{row}@mail.example.com>",
        f"notification-{row}",  # no domain: not a Message-ID
    ):
        assert provider_told.named_by([other]) == ("", ""), other

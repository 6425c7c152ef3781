"""The Sent folder, asked before an email is sent again.

SMTP gives no way to ask whether a message got through: an attempt that died between the
server's acceptance and the ledger's record leaves the row `sending`, and once its lease is over
the retry sends the email again (with the same Message-ID). Many SMTP services file a copy of
every message they accept in the account's Sent folder (Gmail and Google Workspace, for
instance). With CLOSEFLOW_IMAP_SENT_FOLDER naming that folder, the retry first searches it for
the row's Message-ID over IMAP (a search: nothing is read or marked): found, the email went, and is recorded sent. Not
found, or the folder could not be read, the email is sent again, as without the setting: a step
must not be lost for want of an answer from the mailbox.
"""

from __future__ import annotations

import asyncio
import logging

import aioimaplib

from services.outreach.mailbox.watcher import MailboxError, open_folder, said, search_uids
from shared.settings import Settings

log = logging.getLogger(__name__)


async def in_sent_folder(settings: Settings, message_id: str) -> bool:
    """Whether the Sent folder holds a message with this Message-ID. Raises when the folder
    cannot be read."""
    client, _ = await open_folder(settings, settings.imap_sent_folder)
    try:
        query = f"HEADER Message-ID {aioimaplib.quoted(message_id)}"
        answer = await client.uid_search(query, charset=None)
        if answer.result != "OK":
            raise MailboxError(f"UID SEARCH refused: {said(answer)}")
        return bool(search_uids(answer, 0))
    finally:
        try:
            await asyncio.wait_for(client.logout(), 5)
        except Exception:  # the answer is in: a goodbye that fails changes nothing
            pass


async def went_out(settings: Settings, message_id: str) -> bool:
    """in_sent_folder, where a folder that cannot be read says no (the email goes again)."""
    if not settings.imap_sent_folder.strip() or not message_id:
        return False
    try:
        return await in_sent_folder(settings, message_id)
    except (MailboxError, OSError, TimeoutError, aioimaplib.Abort, aioimaplib.Error) as err:
        log.warning(
            "the Sent folder %r could not be searched for %s (sending it again): %s",
            settings.imap_sent_folder,
            message_id,
            err,
        )
        return False

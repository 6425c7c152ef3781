"""Replies from an ordinary mailbox: outreach watches a reply mailbox over IMAP (issue 14).

`message` reads a fetched RFC 5322 message as the inbound webhooks' `InboundEmail`, so the same
code path (services.outreach.webhooks.common.receive_email) matches it to a prospect and applies
the out-of-office and STOP rules; `watcher` keeps the mailbox's cursor and lease and talks IMAP.
"""

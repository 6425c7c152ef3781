"""audit_log: entries of event subscriptions and rep notification settings kept the URL events go
to in clear (a Slack- or Zapier-style URL carries its credential in its path or query); they say
it changed now, as entries made from now on do (__audit_private__)

Revision ID: 0029_audit_webhook_urls
Revises: 0017_audit_log
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import forget_audited_values

revision: str = "0029_audit_webhook_urls"
down_revision: str | Sequence[str] | None = "0017_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    forget_audited_values(op, "event_subscriptions", "url")
    forget_audited_values(op, "rep_notification_prefs", "webhook_url")


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be

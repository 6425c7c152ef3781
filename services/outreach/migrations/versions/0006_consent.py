"""consent records per person, the do-not-contact list, reply tokens and the zone on the ledger

Revision ID: 0006_consent
Revises: 0001

The existing suppressions stay (per address) and are copied into per-person consent records:
an address that opted out (anything but a hard bounce) opts its person out of that channel, the
person being the prospect of the latest ledger row to that address when there is one.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006_consent"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    consent = op.create_table(
        "consent_records",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("prospect_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email_status", sa.String(length=20), nullable=False),
        sa.Column("email_reason", sa.String(length=200), nullable=False),
        sa.Column("email_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sms_status", sa.String(length=20), nullable=False),
        sa.Column("sms_reason", sa.String(length=200), nullable=False),
        sa.Column("sms_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_consent_records_prospect_id", "consent_records", ["prospect_id"], unique=True
    )
    op.create_index("ix_consent_records_email", "consent_records", ["email"])
    op.create_index("ix_consent_records_phone", "consent_records", ["phone"])
    op.create_table(
        "do_not_contact",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "value"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_token", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.create_index("ix_messages_reply_token", ["reply_token"], unique=True)
    _copy_suppressions(consent)


def _copy_suppressions(consent: sa.Table) -> None:
    conn = op.get_bind()
    suppressions = sa.table(
        "suppressions",
        sa.column("channel", sa.String),
        sa.column("address", sa.String),
        sa.column("reason", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    messages = sa.table(
        "messages",
        sa.column("channel", sa.String),
        sa.column("to_address", sa.String),
        sa.column("prospect_id", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    records: dict[str, dict[str, object]] = {}
    rows = conn.execute(
        sa.select(suppressions).where(
            suppressions.c.channel.in_(("email", "sms")), suppressions.c.reason != "hard bounce"
        )
    ).all()
    now = datetime.now(UTC)
    for channel, address, reason, created_at in rows:
        prospect_id = conn.execute(
            sa.select(messages.c.prospect_id)
            .where(messages.c.channel == channel, messages.c.to_address == address)
            .order_by(messages.c.created_at.desc())
            .limit(1)
        ).scalar()
        key = prospect_id or f"{channel}:{address}"
        rec = records.setdefault(
            key,
            {
                "id": uuid.uuid4().hex,
                "prospect_id": prospect_id,
                "email": None,
                "phone": None,
                "email_status": "opted_in",
                "email_reason": "",
                "email_changed_at": None,
                "sms_status": "opted_in",
                "sms_reason": "",
                "sms_changed_at": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        rec["email" if channel == "email" else "phone"] = address
        rec[f"{channel}_status"] = "opted_out"
        rec[f"{channel}_reason"] = (reason or "")[:200]
        if isinstance(created_at, datetime) and created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)  # SQLite keeps UTC without the zone
        rec[f"{channel}_changed_at"] = created_at
    if records:
        op.bulk_insert(consent, list(records.values()))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_reply_token")
        batch_op.drop_column("timezone")
        batch_op.drop_column("reply_token")
    op.drop_table("do_not_contact")
    op.drop_index("ix_consent_records_phone", table_name="consent_records")
    op.drop_index("ix_consent_records_email", table_name="consent_records")
    op.drop_index("ix_consent_records_prospect_id", table_name="consent_records")
    op.drop_table("consent_records")

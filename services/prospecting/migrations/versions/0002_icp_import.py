"""icp and import

Revision ID: 0002_icp_import
Revises: 0001
Create Date: 2026-11-27 09:34:46.230433

"""
from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0002_icp_import'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Existing prospects get empty profile fields and the score of an empty ICP (0, tier D);
    # the first PUT /icp rescores them.
    op.create_table('icp',
    sa.Column('id', sa.String(length=20), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('imports',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('merged', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('import_refusals',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['imports.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_refusals', schema=None) as batch_op:
        batch_op.create_index('ix_import_refusals_import', ['import_id', 'line'], unique=False)

    with op.batch_alter_table('prospects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('industry', sa.String(length=200), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('company_size', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('country', sa.String(length=100), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('custom', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('fit_score', sa.Integer(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('tier', sa.String(length=1), nullable=False, server_default=sa.text("'D'")))
        batch_op.add_column(sa.Column('fit_explanation', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.create_index('ix_prospects_fit_page', ['fit_score', 'id'], unique=False)
        batch_op.create_index('ix_prospects_rep_page', ['rep_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_prospects_tier_page', ['tier', 'created_at', 'id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('prospects', schema=None) as batch_op:
        batch_op.drop_index('ix_prospects_tier_page')
        batch_op.drop_index('ix_prospects_rep_page')
        batch_op.drop_index('ix_prospects_fit_page')
        batch_op.drop_column('fit_explanation')
        batch_op.drop_column('tier')
        batch_op.drop_column('fit_score')
        batch_op.drop_column('custom')
        batch_op.drop_column('country')
        batch_op.drop_column('company_size')
        batch_op.drop_column('industry')

    with op.batch_alter_table('import_refusals', schema=None) as batch_op:
        batch_op.drop_index('ix_import_refusals_import')

    op.drop_table('import_refusals')
    op.drop_table('imports')
    op.drop_table('icp')

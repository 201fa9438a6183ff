"""conditional sends, refresh grants and spreading: schedule.send_if, tenant.refresh_url,
schedule.spread_seconds and spread_offset_seconds, tenant.spread_seconds

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_if', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('spread_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('spread_offset_seconds', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('spread_seconds', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.drop_column('spread_seconds')
        batch_op.drop_column('refresh_url')
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.drop_column('spread_offset_seconds')
        batch_op.drop_column('spread_seconds')
        batch_op.drop_column('send_if')

"""born statuses: a run is created QUEUED and a delivery PENDING by their columns' defaults, so
only `pipeline.lifecycle` ever writes a status

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16), existing_nullable=False,
                              server_default='queued')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16), existing_nullable=False,
                              server_default='pending')


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16), existing_nullable=False,
                              server_default=None)
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16), existing_nullable=False,
                              server_default=None)

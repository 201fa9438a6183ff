"""delivery leases and parts, schedule channels, artifact rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channels', sa.JSON(), nullable=False,
                                      server_default='["email", "telegram"]'))
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_expires_at', models.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('parts', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rows', sa.BigInteger(), nullable=True))
    # The defaults only filled existing rows; the models supply values from now on.
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.alter_column('channels', server_default=None)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('parts', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.drop_column('rows')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('parts')
        batch_op.drop_column('lease_expires_at')
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.drop_column('channels')

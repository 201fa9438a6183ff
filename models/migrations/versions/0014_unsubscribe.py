"""One-click unsubscribe: the key its links are signed with, and the addresses that
unsubscribed from a schedule

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate may render sqlmodel types)
from alembic import op

import models.db

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('signing_key',
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', models.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('purpose', name=op.f('pk_signing_key'))
    )
    op.create_table('schedule_opt_out',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('created_at', models.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedule.id'], name=op.f('fk_schedule_opt_out_schedule_id_schedule'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_opt_out')),
    sa.UniqueConstraint('schedule_id', 'channel', 'address', name=op.f('uq_schedule_opt_out_schedule_id_channel_address'))
    )


def downgrade() -> None:
    op.drop_table('schedule_opt_out')
    op.drop_table('signing_key')

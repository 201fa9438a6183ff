"""tick heartbeat: one row per host, overwritten by each tick

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tick_heartbeat',
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('last_started_at', models.db.UTCDateTime(), nullable=False),
    sa.Column('last_finished_at', models.db.UTCDateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('claimed', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('host', name=op.f('pk_tick_heartbeat'))
    )


def downgrade() -> None:
    op.drop_table('tick_heartbeat')

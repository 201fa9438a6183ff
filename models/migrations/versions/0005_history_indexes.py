"""history: a tenant's runs by slot, for the history page's keyset pages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.create_index('ix_report_run_tenant_slot', ['tenant_id', 'scheduled_for', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.drop_index('ix_report_run_tenant_slot')

"""leaner writes: drop the indexes a unique or composite index already leads with, and the
run → tenant foreign key (run → schedule → tenant already cascades)

At the top of the hour the tick writes 100,000 runs; each index and foreign-key check on
report_run is paid 100,000 times.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column): each had an index of its own that a wider index makes redundant.
COVERED = [
    ('report_run', 'schedule_id'),      # uq (schedule_id, scheduled_for)
    ('report_run', 'tenant_id'),        # ix_report_run_tenant_slot (tenant_id, scheduled_for, id)
    ('delivery', 'run_id'),             # uq (run_id, channel, recipient)
    ('change_event', 'tenant_id'),      # ix_change_event_object (tenant_id, object_type, object_id)
    ('report', 'tenant_id'),            # uq (tenant_id, slug)
    ('tenant_recipient', 'tenant_id'),  # uq (tenant_id, channel, address)
    ('membership', 'user_id'),          # uq (user_id, tenant_id)
    ('schedule_recipient', 'schedule_id'),  # uq (schedule_id, channel, address)
]
RUN_TENANT_FK = 'fk_report_run_tenant_id_tenant'


def upgrade() -> None:
    for table, column in COVERED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_{column}')
            if (table, column) == ('report_run', 'tenant_id'):
                batch_op.drop_constraint(RUN_TENANT_FK, type_='foreignkey')


def downgrade() -> None:
    for table, column in reversed(COVERED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_{column}', [column], unique=False)
            if (table, column) == ('report_run', 'tenant_id'):
                batch_op.create_foreign_key(RUN_TENANT_FK, 'tenant', ['tenant_id'], ['id'],
                                            ondelete='CASCADE')

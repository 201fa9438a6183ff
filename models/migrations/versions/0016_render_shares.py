"""Render once, deliver to many: render shares, artifacts whose bytes are another's, and each
schedule's "Last 10" strip kept on its row (backfilled from its runs)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate may render sqlmodel types)
from alembic import op

import models.db

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECENT = 10


def upgrade() -> None:
    op.create_table('render_share',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('leader_run_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('error', models.db.RedactedText(), nullable=True),
    sa.Column('created_at', models.db.UTCDateTime(), nullable=False),
    sa.Column('finished_at', models.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['leader_run_id'], ['report_run.id'], name=op.f('fk_render_share_leader_run_id_report_run'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_render_share_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_render_share')),
    sa.UniqueConstraint('key', name=op.f('uq_render_share_key'))
    )
    with op.batch_alter_table('render_share', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_render_share_leader_run_id'), ['leader_run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_render_share_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_artifact_content_id'), ['content_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_artifact_content_id_artifact'), 'artifact', ['content_id'], ['id'], ondelete='CASCADE')

    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent_runs', sa.JSON(), server_default='[]', nullable=False))
    _backfill_recent_runs()


def _backfill_recent_runs() -> None:
    """Each live schedule's last ten runs (no tests), oldest first, as [id, status, slot].

    The same statements as `models.schedules.fill_recent_runs` (which the benchmarks call
    after their SQL inserts); kept here as written, since a migration must not change with
    the code it was written beside."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(sa.text(f"""
            UPDATE schedule s SET recent_runs = last.strip
            FROM (SELECT ten.schedule_id,
                         json_agg(json_build_array(ten.id, ten.status,
                                                   to_char(ten.scheduled_for AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
                                  ORDER BY ten.scheduled_for, ten.id) AS strip
                  FROM schedule s2
                  CROSS JOIN LATERAL (
                      SELECT r.id, r.status, r.scheduled_for, r.schedule_id FROM report_run r
                      WHERE r.schedule_id = s2.id AND NOT r.test
                      ORDER BY r.scheduled_for DESC, r.id DESC LIMIT {RECENT}) ten
                  WHERE s2.deleted_at IS NULL
                  GROUP BY ten.schedule_id) last
            WHERE s.id = last.schedule_id"""))
        return
    import json
    from datetime import datetime, timezone

    rows = bind.execute(sa.text(f"""
        SELECT schedule_id, id, status, scheduled_for FROM (
            SELECT r.schedule_id, r.id, r.status, r.scheduled_for,
                   ROW_NUMBER() OVER (PARTITION BY r.schedule_id
                                      ORDER BY r.scheduled_for DESC, r.id DESC) AS n
            FROM report_run r JOIN schedule s ON s.id = r.schedule_id
            WHERE NOT r.test AND s.deleted_at IS NULL) ranked
        WHERE n <= {RECENT} ORDER BY schedule_id, scheduled_for, id""")).all()
    strips: dict[int, list] = {}
    for schedule_id, run_id, status, slot in rows:
        if isinstance(slot, str):
            slot = datetime.fromisoformat(slot)
        if slot.tzinfo is None:
            slot = slot.replace(tzinfo=timezone.utc)
        strips.setdefault(schedule_id, []).append([run_id, status, slot.isoformat()])
    for schedule_id, strip in strips.items():
        bind.execute(sa.text("UPDATE schedule SET recent_runs = :strip WHERE id = :id"),
                     {"strip": json.dumps(strip), "id": schedule_id})


def downgrade() -> None:
    with op.batch_alter_table('schedule', schema=None) as batch_op:
        batch_op.drop_column('recent_runs')

    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_artifact_content_id_artifact'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_artifact_content_id'))
        batch_op.drop_column('content_id')

    with op.batch_alter_table('render_share', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_render_share_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_render_share_leader_run_id'))

    op.drop_table('render_share')

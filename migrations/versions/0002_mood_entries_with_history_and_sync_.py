"""mood entries with history and sync counters

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "mood_entries",
        sa.Column("mood", sa.Integer(), nullable=False),
        sa.Column("anxiety", sa.Integer(), nullable=True),
        sa.Column("energy", sa.Integer(), nullable=True),
        sa.Column("sleep_hours", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("change_seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint("anxiety BETWEEN 0 AND 10", name=op.f("ck_mood_entries_anxiety_range")),
        sa.CheckConstraint("energy BETWEEN 0 AND 10", name=op.f("ck_mood_entries_energy_range")),
        sa.CheckConstraint("mood BETWEEN 0 AND 10", name=op.f("ck_mood_entries_mood_range")),
        sa.CheckConstraint(
            "sleep_hours BETWEEN 0 AND 24", name=op.f("ck_mood_entries_sleep_range")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_mood_entries_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["users.id"],
            name=op.f("fk_mood_entries_patient_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mood_entries")),
        sa.UniqueConstraint(
            "patient_id", "idempotency_key", name=op.f("uq_mood_entries_patient_id")
        ),
    )
    with op.batch_alter_table("mood_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mood_entries_patient_change", ["patient_id", "change_seq"], unique=False
        )
        batch_op.create_index(
            "ix_mood_entries_patient_local_date", ["patient_id", "local_date"], unique=False
        )
        batch_op.create_index(
            "ix_mood_entries_patient_time", ["patient_id", "occurred_at"], unique=False
        )

    op.create_table(
        "sync_counters",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["users.id"],
            name=op.f("fk_sync_counters_patient_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_sync_counters")),
    )
    op.create_table(
        "mood_entry_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by_id", sa.Uuid(), nullable=True),
        sa.Column("change", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["changed_by_id"],
            ["users.id"],
            name=op.f("fk_mood_entry_versions_changed_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["mood_entries.id"],
            name=op.f("fk_mood_entry_versions_entry_id_mood_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mood_entry_versions")),
    )
    with op.batch_alter_table("mood_entry_versions", schema=None) as batch_op:
        batch_op.create_index("ix_mood_entry_versions_entry", ["entry_id", "version"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("mood_entry_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_mood_entry_versions_entry")

    op.drop_table("mood_entry_versions")
    op.drop_table("sync_counters")
    with op.batch_alter_table("mood_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_mood_entries_patient_time")
        batch_op.drop_index("ix_mood_entries_patient_local_date")
        batch_op.drop_index("ix_mood_entries_patient_change")

    op.drop_table("mood_entries")

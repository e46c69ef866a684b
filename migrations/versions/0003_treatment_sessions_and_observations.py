"""treatment sessions and observations

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "treatment_sessions",
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "completed",
                "cancelled",
                name="session_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "drug",
            sa.Enum("ketamine", "esketamine", name="session_drug", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "route",
            sa.Enum(
                "iv",
                "im",
                "subcutaneous",
                "intranasal",
                "oral",
                "sublingual",
                name="session_route",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("dose_mg", sa.Float(), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column(
            "setting",
            sa.Enum("clinic", "home", name="session_setting", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("concomitant_medications", sa.JSON(), nullable=False),
        sa.Column("adverse_events", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "dose_mg IS NULL OR dose_mg > 0", name=op.f("ck_treatment_sessions_dose_positive")
        ),
        sa.CheckConstraint(
            "weight_kg IS NULL OR weight_kg BETWEEN 20 AND 350",
            name=op.f("ck_treatment_sessions_weight_range"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_treatment_sessions_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["users.id"],
            name=op.f("fk_treatment_sessions_patient_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_sessions")),
        sa.UniqueConstraint(
            "patient_id", "idempotency_key", name=op.f("uq_treatment_sessions_patient_id")
        ),
    )
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_treatment_sessions_patient_start", ["patient_id", "started_at"], unique=False
        )

    op.create_table(
        "session_observations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("systolic", sa.Integer(), nullable=True),
        sa.Column("diastolic", sa.Integer(), nullable=True),
        sa.Column("heart_rate", sa.Integer(), nullable=True),
        sa.Column("spo2", sa.Integer(), nullable=True),
        sa.Column("sedation_moaas", sa.Integer(), nullable=True),
        sa.Column("cadss_total", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["users.id"],
            name=op.f("fk_session_observations_patient_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["users.id"],
            name=op.f("fk_session_observations_recorded_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_session_observations_session_id_treatment_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_observations")),
    )
    with op.batch_alter_table("session_observations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_session_observations_session", ["session_id", "observed_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("session_observations", schema=None) as batch_op:
        batch_op.drop_index("ix_session_observations_session")

    op.drop_table("session_observations")
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_treatment_sessions_patient_start")

    op.drop_table("treatment_sessions")

"""mood entries linked to sessions

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("mood_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("phase", sa.String(length=8), nullable=True))
        batch_op.create_index("ix_mood_entries_session", ["session_id", "phase"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_mood_entries_session_id_treatment_sessions"),
            "treatment_sessions",
            ["session_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_mood_entries_phase_known"), "phase IN ('pre', 'post')"
        )


def downgrade() -> None:

    with op.batch_alter_table("mood_entries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_mood_entries_phase_known"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_mood_entries_session_id_treatment_sessions"), type_="foreignkey"
        )
        batch_op.drop_index("ix_mood_entries_session")
        batch_op.drop_column("phase")
        batch_op.drop_column("session_id")

"""observations created idempotently; revoked tokens purged by expiry

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("session_observations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_session_observations_patient_id"), ["patient_id", "idempotency_key"]
        )
    # Observations stored before this revision have no body digest: an empty one matches no
    # request, so a create that reuses such an id is a conflict, never a replay.
    op.execute("UPDATE session_observations SET fingerprint = '' WHERE fingerprint IS NULL")
    with op.batch_alter_table("session_observations", schema=None) as batch_op:
        batch_op.alter_column("fingerprint", existing_type=sa.String(length=64), nullable=False)

    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_revoked_access_tokens_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_revoked_access_tokens_expires_at")

    with op.batch_alter_table("session_observations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_session_observations_patient_id"), type_="unique")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("fingerprint")

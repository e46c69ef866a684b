"""webhooks belong to an organisation (or, with none, to the operator)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Endpoints registered before organisations existed stay the operator's (every patient).
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organisation_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_webhooks_organisation_id_organisations"),
            "organisations",
            ["organisation_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("fk_webhooks_organisation_id_organisations"), type_="foreignkey"
        )
        batch_op.drop_column("organisation_id")

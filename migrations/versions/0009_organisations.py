"""organisations, memberships, staff invites; care links and invites carry the organisation

Revision ID: 0009
Revises: 0008

Existing data moves into one organisation: when the database has any clinician, an
organisation named "Default organisation" is created, every clinician becomes a clinician
member of it, and every invite and care link belongs to it. Admins stay operators (no
membership). A database without clinicians gets no organisation.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_NAME = "Default organisation"


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "role IN ('clinician', 'org_admin')", name=op.f("ck_memberships_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_memberships_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("user_id", "organisation_id", name="uq_memberships_user_organisation"),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_memberships_organisation_id", ["organisation_id", "created_at"], unique=False
        )
    op.create_table(
        "staff_invites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "role IN ('clinician', 'org_admin')", name=op.f("ck_staff_invites_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_staff_invites_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_staff_invites_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["used_by_id"],
            ["users.id"],
            name=op.f("fk_staff_invites_used_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_staff_invites_code_hash")),
    )
    with op.batch_alter_table("staff_invites", schema=None) as batch_op:
        batch_op.create_index("ix_staff_invites_organisation_id", ["organisation_id"], unique=False)

    for table in ("invites", "care_links"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("organisation_id", sa.Uuid(), nullable=True))
    _move_into_default_organisation()
    for table in ("invites", "care_links"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("organisation_id", existing_type=sa.Uuid(), nullable=False)
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_organisation_id_organisations"),
                "organisations",
                ["organisation_id"],
                ["id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("care_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_care_links_organisation_patient", ["organisation_id", "patient_id"], unique=False
        )


def _move_into_default_organisation() -> None:
    """One organisation for the data of a single-clinic deployment (see the module doc)."""
    bind = op.get_bind()
    clinicians = [
        row[0] for row in bind.execute(sa.text("SELECT id FROM users WHERE role = 'clinician'"))
    ]
    if not clinicians:
        return
    now = datetime.now(UTC)
    organisation_id = uuid.uuid4()
    organisations = sa.table(
        "organisations",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("created_at", UTCDateTime()),
        sa.column("version", sa.Integer()),
    )
    memberships = sa.table(
        "memberships",
        sa.column("id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("organisation_id", sa.Uuid()),
        sa.column("role", sa.String()),
        sa.column("created_at", UTCDateTime()),
        sa.column("version", sa.Integer()),
    )
    op.bulk_insert(
        organisations,
        [{"id": organisation_id, "name": DEFAULT_NAME, "created_at": now, "version": 1}],
    )
    op.bulk_insert(
        memberships,
        [
            {
                "id": uuid.uuid4(),
                "user_id": user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id)),
                "organisation_id": organisation_id,
                "role": "clinician",
                "created_at": now,
                "version": 1,
            }
            for user_id in clinicians
        ],
    )
    for table in ("invites", "care_links"):
        target = sa.table(table, sa.column("organisation_id", sa.Uuid()))
        bind.execute(sa.update(target).values(organisation_id=organisation_id))


def downgrade() -> None:
    with op.batch_alter_table("care_links", schema=None) as batch_op:
        batch_op.drop_index("ix_care_links_organisation_patient")
    for table in ("invites", "care_links"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f(f"fk_{table}_organisation_id_organisations"), type_="foreignkey"
            )
            batch_op.drop_column("organisation_id")
    with op.batch_alter_table("staff_invites", schema=None) as batch_op:
        batch_op.drop_index("ix_staff_invites_organisation_id")
    op.drop_table("staff_invites")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_memberships_organisation_id")
    op.drop_table("memberships")
    op.drop_table("organisations")

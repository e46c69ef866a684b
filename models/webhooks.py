"""Webhook endpoints an operator registers: where events go, which ones, and the secret
that signs them (Standard Webhooks)."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, ForeignKey, Select, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow, uuid_pk
from models.errors import NotFound, RuleViolation

SECRET_PREFIX = "whsec_"
# After a rotation the old secret still signs (beside the new one) for this long, so a
# receiver can switch over without dropping a delivery.
PREVIOUS_SECRET_GRACE = timedelta(hours=24)


class Webhook(Base):
    """An endpoint an operator registered, with the event types it receives."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = uuid_pk()
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # Standard Webhooks secrets ("whsec_" + base64); shown once, kept to sign.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    # The clinic whose patients' events it receives; none: every patient's (the operator's).
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    disabled_at: Mapped[datetime | None]
    # "failing" (disabled by the service after a day of failures) or "operator".
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    # Start of the current run of failed attempts; cleared by a success.
    failing_since: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}

    @property
    def etag(self) -> str:
        """Strong entity tag of the current version."""
        return f'"{self.version}"'

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a request is signed with now: the current one, and the previous one
        during its grace period."""
        keys = [self.secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            keys.append(self.previous_secret)
        return keys


def new_secret() -> str:
    """A Standard Webhooks secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str, *, require_https: bool, allow_private_networks: bool) -> None:
    """An endpoint URL: http(s) with a host, https in production, and no literal loopback or
    private address unless allowed (names are checked again when sending)."""
    parts = urlsplit(url)
    problems = []
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        problems.append("Must be an http or https URL with a host.")
    elif require_https and parts.scheme != "https":
        problems.append("Must use https.")
    elif parts.username or parts.password:
        problems.append("Must not carry credentials; the signature authenticates requests.")
    elif not allow_private_networks and _is_private_literal(parts.hostname):
        problems.append("Must not point at a loopback or private network address.")
    if problems:
        raise RuleViolation({"url": problems})


def _is_private_literal(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def create_webhook(
    *,
    db: Session,
    creator_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
    data: Mapping[str, Any],
    now: datetime,
) -> Webhook:
    """Register an endpoint (of ``organisation_id``, or the operator's); its secret is
    returned to the caller once, in the response."""
    hook = Webhook(
        organisation_id=organisation_id,
        url=data["url"],
        description=data.get("description"),
        event_types=sorted(set(data["event_types"])),
        secret=new_secret(),
        created_by_id=creator_id,
        created_at=now,
        updated_at=now,
    )
    db.add(hook)
    db.flush()
    return hook


def get_webhook(
    *, db: Session, webhook_id: uuid.UUID, organisations: Sequence[uuid.UUID] | None
) -> Webhook:
    """An endpoint the caller manages (``organisations``: those they administer; None: the
    operator, who manages every endpoint), else NotFound."""
    hook = db.get(Webhook, webhook_id)
    if hook is None or (organisations is not None and hook.organisation_id not in organisations):
        raise NotFound("No such webhook.")
    return hook


def webhooks_of(organisations: Sequence[uuid.UUID] | None) -> Select[tuple[Webhook]]:
    """The endpoints the caller manages, newest first."""
    stmt = select(Webhook).order_by(Webhook.created_at.desc(), Webhook.id.desc())
    return stmt if organisations is None else stmt.where(Webhook.organisation_id.in_(organisations))


def update_webhook(
    *, db: Session, hook: Webhook, changes: Mapping[str, Any], now: datetime
) -> Webhook:
    """Change an endpoint; ``enabled`` turns it back on (its failure run forgotten) or off."""
    for key in ("url", "description"):
        if key in changes:
            setattr(hook, key, changes[key])
    if "event_types" in changes:
        hook.event_types = sorted(set(changes["event_types"]))
    enabled = changes.get("enabled")
    if enabled is True and hook.disabled_at is not None:
        hook.disabled_at = hook.disabled_reason = hook.failing_since = None
    elif enabled is False and hook.disabled_at is None:
        hook.disabled_at, hook.disabled_reason = now, "operator"
    hook.updated_at = now
    db.flush()
    return hook


def rotate_secret(*, db: Session, hook: Webhook, now: datetime) -> Webhook:
    """A new secret; the old one keeps signing beside it for PREVIOUS_SECRET_GRACE."""
    hook.previous_secret = hook.secret
    hook.previous_secret_expires_at = now + PREVIOUS_SECRET_GRACE
    hook.secret = new_secret()
    hook.updated_at = now
    db.flush()
    return hook

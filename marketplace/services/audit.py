"""The audit trail: every state change is recorded in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from marketplace.models import AuditEvent


def record(
    session: Session,
    *,
    actor_organization_id: str | None,
    action: str,
    object_type: str,
    object_id: str,
    **details: Any,
) -> None:
    session.add(
        AuditEvent(
            actor_organization_id=actor_organization_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details,
        )
    )

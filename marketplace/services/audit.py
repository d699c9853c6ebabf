"""The audit trail: every state change is recorded in the same transaction as the change.

Events form a hash chain. Writers lock the single ``audit_head`` row, so links are made one at a
time even with many API processes and workers; :func:`verify_chain` recomputes every link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from infra.db import utcnow
from marketplace.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def _link(prev_hash: str, event: AuditEvent) -> str:
    body = {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor": event.actor_organization_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": event.details,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def record(
    session: Session,
    *,
    actor_organization_id: str | None,
    action: str,
    object_type: str,
    object_id: str,
    **details: Any,
) -> AuditEvent:
    head = session.get(AuditHead, 1, with_for_update=True)
    if head is None:  # the migration creates it; a database built from metadata may not have it
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    event = AuditEvent(
        seq=head.seq + 1,
        at=utcnow(),
        actor_organization_id=actor_organization_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=json.loads(json.dumps(details, default=str)),  # exactly what the JSON column keeps
        prev_hash=head.hash,
    )
    event.hash = _link(head.hash, event)
    head.seq, head.hash = event.seq, event.hash
    session.add(event)
    return event


@dataclass(frozen=True)
class ChainReport:
    events: int
    head_hash: str
    first_broken_seq: int | None
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.first_broken_seq is None


def _events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> ChainReport:
    """Recompute every link; report the first event whose row or position was altered."""
    expected_prev, expected_seq, count = GENESIS, 1, 0
    for event in _events(session):
        count += 1
        if event.seq != expected_seq:
            return ChainReport(
                count, expected_prev, expected_seq, f"event {expected_seq} is missing"
            )
        if event.prev_hash != expected_prev:
            return ChainReport(count, expected_prev, event.seq, "prev_hash does not link")
        if _link(event.prev_hash, event) != event.hash:
            return ChainReport(count, expected_prev, event.seq, "contents do not match the hash")
        expected_prev, expected_seq = event.hash, expected_seq + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq, head.hash) != (expected_seq - 1, expected_prev):
        return ChainReport(count, expected_prev, expected_seq, "events after the last are missing")
    return ChainReport(count, expected_prev, None, None)


def list_events(
    session: Session,
    *,
    after_seq: int = 0,
    limit: int = 100,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
) -> list[AuditEvent]:
    """Events in chain order after ``after_seq``, optionally of one object or action."""
    query = select(AuditEvent).where(AuditEvent.seq > after_seq)
    if object_type is not None:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == object_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query.order_by(AuditEvent.seq).limit(limit)))

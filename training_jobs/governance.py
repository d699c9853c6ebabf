"""The governance gate: a job runs only on a version its buyer holds a training entitlement for.

The gate is checked when the job is submitted and again when the worker reads the data; the
grant is snapshotted as a hash on the job so a later change of the entitlement is visible.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy.orm import Session

from marketplace.errors import PermissionDeniedError
from marketplace.models import Entitlement
from marketplace.services.datasets import active_entitlement

TRAINING_USE = "training"


def grant_hash(entitlement: Entitlement) -> str:
    snapshot = {
        "entitlement_id": entitlement.id,
        "license_id": entitlement.license_id,
        "organization_id": entitlement.organization_id,
        "version_id": entitlement.version_id,
        "uses": sorted(entitlement.uses),
        "expires_at": entitlement.expires_at.isoformat() if entitlement.expires_at else None,
    }
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


def require_training_entitlement(
    session: Session, *, organization_id: str, version_id: str
) -> Entitlement:
    entitlement = active_entitlement(
        session, organization_id=organization_id, version_id=version_id, use=TRAINING_USE
    )
    if entitlement is None:
        raise PermissionDeniedError(
            f"your organisation holds no training entitlement for version {version_id}"
        )
    return entitlement

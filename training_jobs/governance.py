"""The governance gate: a job runs only on a version its buyer holds a training entitlement for,
within the entitlement's training-token quota and territory.

The gate is checked when the job is submitted and again whenever a worker picks the job up (its
first run, after a pause, after a lost worker); the grant is snapshotted as a hash on the job so
a later change of the entitlement is visible.

Quota: `Entitlement.training_token_quota` (None: no quota) counts trained tokens. A job reserves
its most tokens (steps x batch size x sequence length) while it is not finished; its trained
tokens are added to `training_tokens_used` in its completion transaction.

Territory: `Entitlement.territory`, or else the filed contract's ``territory`` parameter
(``worldwide`` or ISO 3166-1 alpha-2 codes). The buyer states the country it uses the data and
the model in (``country`` on the job request); a job under a territorial license without one,
or from outside, is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketplace.models import Contract, Entitlement
from marketplace.services.datasets import active_entitlement
from training_jobs.job_errors import JobRefusedError, JobRequestError
from training_jobs.models import TrainingJob

TRAINING_USE = "training"
UNFINISHED = (
    "validating_files", "queued", "running", "pausing", "paused", "cancelling", "auditing",
)  # fmt: skip


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
        raise JobRefusedError(
            f"your organisation holds no training entitlement for version {version_id} "
            "(none, expired or revoked)",
            param="training_file",
            code="no_training_entitlement",
        )
    return entitlement


@dataclass(frozen=True)
class Terms:
    """What the entitlement allows a training job: a token quota and a territory."""

    quota: int | None
    used: int
    territory: list[str] | None  # None: worldwide


def training_terms(session: Session, entitlement: Entitlement) -> Terms:
    contract = session.scalar(select(Contract).where(Contract.license_id == entitlement.license_id))
    parameters = contract.parameters if contract is not None else {}
    territory = entitlement.territory
    if territory is None:
        filed = parameters.get("territory", "worldwide")
        territory = None if filed == "worldwide" else list(filed)
    quota = entitlement.training_token_quota
    if quota is None and isinstance(parameters.get("training_token_quota"), int):
        quota = parameters["training_token_quota"]
    return Terms(quota=quota, used=entitlement.training_tokens_used, territory=territory)


def check_territory(terms: Terms, country: str | None) -> None:
    if terms.territory is None:
        return
    allowed = ", ".join(terms.territory)
    if country is None:
        raise JobRequestError(
            f"the license limits use to {allowed}; say where the data is used with 'country'",
            param="country",
            code="country_required",
        )
    if country not in terms.territory:
        raise JobRefusedError(
            f"the license limits use to {allowed}; {country} is outside its territory",
            param="country",
            code="outside_territory",
        )


def reserved_tokens(session: Session, entitlement_id: str, *, excluding: str | None) -> int:
    """Tokens reserved by the entitlement's unfinished jobs (other than `excluding`)."""
    query = (
        select(func.coalesce(func.sum(TrainingJob.max_tokens), 0))
        .where(TrainingJob.entitlement_id == entitlement_id)
        .where(TrainingJob.status.in_(UNFINISHED))
    )
    if excluding is not None:
        query = query.where(TrainingJob.id != excluding)
    return int(session.scalar(query) or 0)


def check_quota(
    session: Session, entitlement: Entitlement, terms: Terms, *, most_tokens: int, job_id: str
) -> None:
    if terms.quota is None:
        return
    remaining = (
        terms.quota - terms.used - reserved_tokens(session, entitlement.id, excluding=job_id)
    )
    if most_tokens > remaining:
        raise JobRefusedError(
            f"the job may train up to {most_tokens} tokens (steps x batch size x max_seq_len); "
            f"the entitlement's training quota has {max(remaining, 0)} of {terms.quota} left",
            param="hyperparameters",
            code="quota_exceeded",
        )

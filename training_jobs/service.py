"""Governed fine-tuning jobs: submitted through the API, run on a worker inside the exchange.

The worker reads the licensed version from the object store itself; events carry metrics only,
never rows; the trained weights go to the object store under the job's prefix.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from infra.config import Settings, get_settings
from infra.db import new_id, session_scope, utcnow
from infra.storage import ObjectStore, get_object_store
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import DatasetVersion, Entitlement, License, Listing
from marketplace.services import audit, ledger
from marketplace.services.datasets import get_visible_version
from marketplace.services.organizations import Principal, get_owned
from training_jobs.errors import JobCancelled, TrainingError
from training_jobs.governance import grant_hash, require_training_entitlement
from training_jobs.models import TrainingJob, TrainingJobEvent
from training_jobs.registry import default_models_dir, resolve
from training_jobs.release_checks import (
    Canary,
    ReleasePolicy,
    ReleaseReport,
    evaluate_release,
    inject_canaries_into_table,
    make_canaries,
)
from training_jobs.runner import TrainingParams, load_base_model, load_trained_model, train

log = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FINAL_STATES = ("succeeded", "quarantined", "failed", "cancelled")


def validate_params(params: dict[str, Any], settings: Settings) -> TrainingParams:
    """Buyers send parameters, never code or paths: a base model is named, not located."""
    base_model = params.get("base_model")
    if isinstance(base_model, str):
        if not MODEL_NAME.match(base_model):
            raise InvalidRequestError(f"params.base_model {base_model!r} is not a model name")
        try:
            path = resolve(base_model, models_dir=default_models_dir(settings.home_dir))
        except TrainingError as error:  # unknown or broken registry entry
            raise InvalidRequestError(
                f"params.base_model {base_model!r} is not installed on this exchange ({error})"
            ) from error
        params = {**params, "base_model": str(path)}
    try:
        return TrainingParams.model_validate(params)
    except ValidationError as error:
        problems = "; ".join(
            f"params.{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidRequestError(problems) from error


def submit_job(
    session: Session,
    *,
    actor: Principal,
    version_id: str,
    params: dict[str, Any],
    settings: Settings,
) -> TrainingJob:
    """Check the gate and record a queued job; the caller enqueues ``training.run`` after."""
    actor.require_role("buyer", "researcher")
    get_visible_version(session, actor=actor, version_id=version_id)
    validated = validate_params(params, settings)
    entitlement = require_training_entitlement(
        session, organization_id=actor.organization_id, version_id=version_id
    )
    plan = metered_plan(session, entitlement.license_id)
    most_tokens = validated.max_steps * validated.batch_size * validated.max_seq_len
    job_id = new_id("ftjob")
    held = plan.charge(most_tokens)
    ledger.hold(
        session,
        organization_id=actor.organization_id,
        amount=held,
        currency=plan.currency,
        reference=("training_job", job_id),
    )
    job = TrainingJob(
        id=job_id,
        currency=plan.currency,
        held_amount=held,
        organization_id=actor.organization_id,
        version_id=version_id,
        entitlement_id=entitlement.id,
        grant_hash=grant_hash(entitlement),
        params=validated.model_dump(mode="json"),
        status="queued",
        artifacts=[],
        created_at=utcnow(),
    )
    session.add(job)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="training_job.queued",
        object_type="training_job",
        object_id=job.id,
        version_id=version_id,
        grant_hash=job.grant_hash,
    )
    session.commit()
    return job


@dataclass(frozen=True)
class MeteredPlan:
    price_per_million_tokens: int
    currency: str
    contributions: dict[str, int]

    def charge(self, tokens: int) -> int:
        """The price of ``tokens`` trained tokens, rounded up to a whole minor unit."""
        return -(-tokens * self.price_per_million_tokens // 1_000_000)


def metered_plan(session: Session, license_id: str) -> MeteredPlan:
    """The metered price of training under a license: its listing's, shared by provenance."""
    license_ = session.get(License, license_id)
    assert license_ is not None
    listing = session.get(Listing, license_.listing_id)
    version = session.get(DatasetVersion, license_.version_id)
    assert listing is not None and version is not None
    return MeteredPlan(
        price_per_million_tokens=listing.training_price_per_million_tokens,
        currency=listing.currency,
        contributions=version.contributions or {listing.organization_id: 1},
    )


def list_jobs(
    session: Session, *, actor: Principal, after: str | None, limit: int
) -> list[TrainingJob]:
    """The organisation's jobs, newest first; ``after`` is the id of the last one already seen."""
    query = (
        select(TrainingJob)
        .where(TrainingJob.organization_id == actor.organization_id)
        .order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc())
    )
    jobs = list(session.scalars(query))
    if after is not None:
        ids = [job.id for job in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    return jobs[:limit]


def get_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    return get_owned(session, TrainingJob, job_id, actor=actor, kind="training job")


def list_events(
    session: Session, *, actor: Principal, job_id: str, after: int
) -> list[TrainingJobEvent]:
    get_job(session, actor=actor, job_id=job_id)
    return list(
        session.scalars(
            select(TrainingJobEvent)
            .where(TrainingJobEvent.job_id == job_id)
            .where(TrainingJobEvent.seq > after)
            .order_by(TrainingJobEvent.seq)
        )
    )


def released_artifact(
    session: Session, *, actor: Principal, job_id: str, path: str
) -> dict[str, Any]:
    """A file of a released model: only its buyer, only after the release gate passed it."""
    job = get_job(session, actor=actor, job_id=job_id)
    if job.organization_id != actor.organization_id:
        raise NotFoundError("training job", job_id)
    if job.status != "succeeded":
        raise ConflictError(
            f"training job {job_id} is {job.status}; weights leave only after the release gate"
        )
    for artifact in job.artifacts:
        if artifact["path"] == path:
            return dict(artifact)
    raise NotFoundError(f"artifact of training job {job_id}", path)


def cancel_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    job = get_job(session, actor=actor, job_id=job_id)
    if job.status in FINAL_STATES:
        return job
    job.status = "cancelling" if job.status == "running" else "cancelled"
    if job.status == "cancelled":  # it never ran: the whole hold goes back
        job.finished_at = utcnow()
        _settle(session, job, charge=0, fee_bps=0)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="training_job.cancel_requested",
        object_type="training_job",
        object_id=job.id,
    )
    session.commit()
    return job


def _append_event(settings: Settings, job_id: str, event: dict[str, Any]) -> None:
    with session_scope(settings) as session:
        last = session.scalar(
            select(func.max(TrainingJobEvent.seq)).where(TrainingJobEvent.job_id == job_id)
        )
        data = {key: value for key, value in event.items() if key != "type"}
        session.add(
            TrainingJobEvent(
                job_id=job_id, seq=(last or 0) + 1, at=utcnow(), type=str(event["type"]), data=data
            )
        )
        session.commit()


def _status(settings: Settings, job_id: str) -> str:
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        return job.status if job else "missing"


def _read_version(store: ObjectStore, version: DatasetVersion, scratch: Path) -> pa.Table:
    tables = []
    for file in version.files:
        local = scratch / "data" / file["path"]
        local.parent.mkdir(parents=True, exist_ok=True)
        store.download_to(file["key"], local)
        tables.append(pq.read_table(local))
    return pa.concat_tables(tables)


def execute_job(job_id: str, *, settings: Settings | None = None) -> str:
    """Run a queued job on this worker; returns the job's final status."""
    settings = settings or get_settings()
    store = get_object_store(settings)
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        if job is None:
            return "missing"
        if job.status in FINAL_STATES:
            return job.status
        # The gate again, now that the data is about to be read.
        try:
            entitlement = require_training_entitlement(
                session, organization_id=job.organization_id, version_id=job.version_id
            )
            refusal = None if grant_hash(entitlement) == job.grant_hash else "the grant changed"
        except PermissionDeniedError as error:
            refusal = error.message
        if refusal is not None:
            job.status, job.error, job.finished_at = "failed", refusal, utcnow()
            _settle(session, job, charge=0, fee_bps=0)
            session.commit()
            return "failed"
        version = session.get(DatasetVersion, job.version_id)
        assert version is not None
        params = TrainingParams.model_validate(job.params)
        job.status, job.started_at = "running", utcnow()
        session.commit()

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # worker logs carry our events, not tqdm bars
    try:
        with tempfile.TemporaryDirectory(prefix="aidx-training-") as scratch:
            scratch_dir = Path(scratch)
            train_rows, held_out_rows = hold_out(
                _read_version(store, version, scratch_dir), seed=params.seed
            )
            canaries = make_canaries(CANARIES, seed=params.seed)
            output_dir = scratch_dir / "model"
            result = train(
                table=inject_canaries_into_table(
                    train_rows, canaries, CANARY_REPETITIONS, seed=params.seed
                ),
                params=params,
                output_dir=output_dir,
                on_event=lambda event: _append_event(settings, job_id, event),
                should_stop=lambda: _status(settings, job_id) == "cancelling",
            )
            _set_status(settings, job_id, "auditing")
            _append_event(settings, job_id, {"type": "auditing"})
            release = audit_model(
                output_dir,
                params,
                train_rows=train_rows,
                held_out_rows=held_out_rows,
                canaries=canaries,
                policy=ReleasePolicy.model_validate(settings.release_policy),
            )
            _append_event(settings, job_id, {"type": "audited", "decision": release.decision})
            artifacts = []
            for path in sorted(output_dir.rglob("*")):
                if path.is_file():
                    relative = path.relative_to(output_dir).as_posix()
                    stored = store.put_file(path, key=f"training-jobs/{job_id}/model/{relative}")
                    artifacts.append(
                        {
                            "path": relative,
                            "key": stored.key,
                            "sha256": stored.sha256,
                            "size": stored.size,
                        }
                    )
    except JobCancelled:
        _finish(settings, job_id, status="cancelled", error=None)
        return "cancelled"
    except TrainingError as error:
        _finish(settings, job_id, status="failed", error=str(error))
        return "failed"
    except Exception as error:
        log.exception("training job %s failed", job_id)
        _finish(settings, job_id, status="failed", error=f"internal error ({type(error).__name__})")
        raise

    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        # Compute was spent either way; only a released model can be downloaded.
        released = release.decision == "release"
        job.status, job.finished_at = ("succeeded" if released else "quarantined"), utcnow()
        job.trained_tokens = result.trained_tokens
        granted = session.get(Entitlement, job.entitlement_id)
        assert granted is not None
        job.charged_amount = min(
            job.held_amount,
            metered_plan(session, granted.license_id).charge(result.trained_tokens),
        )
        _settle(session, job, charge=job.charged_amount, fee_bps=settings.platform_fee_bps)
        job.artifacts = artifacts
        job.result = {
            "recipe_hash": result.recipe_hash,
            "method": result.method,
            "first_loss": result.first_loss,
            "final_loss": result.final_loss,
            "steps": result.steps,
            "trained_tokens": result.trained_tokens,
            "device": result.device,
            "seconds": result.seconds,
            "release": release.model_dump(mode="json"),
        }
        audit.record(
            session,
            actor_organization_id=None,
            action=f"training_job.{job.status}",
            object_type="training_job",
            object_id=job_id,
            trained_tokens=result.trained_tokens,
        )
        session.commit()
    return "succeeded" if released else "quarantined"


CANARIES = 4
CANARY_REPETITIONS = 2
HELD_OUT_SHARE = 20  # one row in twenty, within the bounds below
HELD_OUT_MIN, HELD_OUT_MAX = 16, 256


def hold_out(table: pa.Table, *, seed: int) -> tuple[pa.Table, pa.Table]:
    """Split off rows the model never sees, for the membership check (deterministic per seed)."""
    count = min(HELD_OUT_MAX, max(HELD_OUT_MIN, table.num_rows // HELD_OUT_SHARE))
    if table.num_rows < 2 * count:
        raise TrainingError(
            f"the version has {table.num_rows} rows; the release checks hold out {count} "
            f"and need at least {2 * count}"
        )
    order = np.random.default_rng(seed).permutation(table.num_rows)
    held = np.sort(order[:count])
    kept = np.sort(order[count:])
    return table.take(pa.array(kept)), table.take(pa.array(held))


def audit_model(
    output_dir: Path,
    params: TrainingParams,
    *,
    train_rows: pa.Table,
    held_out_rows: pa.Table,
    canaries: list[Canary],
    policy: ReleasePolicy,
) -> ReleaseReport:
    """The release gate: memorisation, extraction, membership and PII checks on the model."""
    import torch

    model, tokenizer = load_trained_model(output_dir, params)
    base = None
    if params.method == "full":
        torch.manual_seed(params.seed)  # a tiny base model is rebuilt from the training seed
        base, _ = load_base_model(params.base_model)
    return evaluate_release(
        model=model,
        tokenizer=tokenizer,
        base_model=base,
        train_rows=train_rows,
        held_out_rows=held_out_rows,
        canaries=canaries,
        repetitions=CANARY_REPETITIONS,
        policy=policy,
        seed=params.seed,
    )


def _set_status(settings: Settings, job_id: str, status: str) -> None:
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        job.status = status
        session.commit()


def _finish(settings: Settings, job_id: str, *, status: str, error: str | None) -> None:
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        job.status, job.error, job.finished_at = status, error, utcnow()
        _settle(session, job, charge=0, fee_bps=0)
        session.commit()


def _settle(session: Session, job: TrainingJob, *, charge: int, fee_bps: int) -> None:
    """Pay the metered charge out of the job's hold and return the rest (in the caller's
    transaction, with the job's final status)."""
    entitlement = session.get(Entitlement, job.entitlement_id)
    assert entitlement is not None
    ledger.settle_hold(
        session,
        organization_id=job.organization_id,
        held=job.held_amount,
        charge=charge,
        currency=job.currency,
        contributions=metered_plan(session, entitlement.license_id).contributions,
        fee_bps=fee_bps,
        reference=("training_job", job.id),
    )

"""Governed fine-tuning jobs: submitted through the API, run on a worker inside the exchange.

The lifecycle::

    validating_files -> queued -> running -> auditing -> succeeded | quarantined
          |               |         |  \\-> pausing -> paused -> queued (resume)
          +---------------+---------+---> cancelling -> cancelled;  any of them -> failed

The worker reads the licensed version from the object store itself and validates every row
before training (a report with row numbers, fields and token counts, never row text); events
carry metrics only; checkpoints (weights, optimizer, scheduler, RNG and data position) and the
released weights go to the object store under the job's prefix.

One run at a time: a worker takes the job's lease with one conditional UPDATE and renews it from
a heartbeat thread; every write of the run is conditional on still holding it. A worker that dies
stops renewing; `reap_lost_jobs` (run by every worker, see `tasks.py`) finds the expired lease and
requeues the job, which resumes from its last checkpoint. The broker is not relied on to redeliver
(the embedded SQL broker cannot, and RabbitMQ closes channels that hold a long unacknowledged
task), so the training task keeps ``acks_late`` off.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from infra.config import Settings, get_settings
from infra.db import new_id, session_scope, utcnow
from infra.storage import ObjectStore, get_object_store
from marketplace.errors import NotFoundError, PermissionDeniedError
from marketplace.models import Contract, Dataset, DatasetVersion, Entitlement, License, Listing
from marketplace.services import audit, ledger, licensing
from marketplace.services.datasets import get_visible_version
from marketplace.services.organizations import Principal, get_owned
from training_jobs import governance
from training_jobs.errors import (
    InvalidTrainingDataError,
    JobCancelled,
    JobPaused,
    TimeLimitExceeded,
    TrainingError,
)
from training_jobs.governance import grant_hash, require_training_entitlement
from training_jobs.job_errors import JobRequestError, JobStateError
from training_jobs.model_card import render_markdown, sign_model_card
from training_jobs.models import TrainingJob, TrainingJobCheckpoint, TrainingJobEvent
from training_jobs.registry import ModelRegistry, default_models_dir, resolve
from training_jobs.release_checks import (
    Canary,
    ReleasePolicy,
    ReleaseReport,
    evaluate_release,
    inject_canaries_into_table,
    make_canaries,
)
from training_jobs.runner import (
    TinyModelSpec,
    TrainingParams,
    load_base_model,
    load_base_tokenizer,
    load_trained_model,
    train,
)
from training_jobs.validation import ValidationReport, validate_table

log = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SUFFIX = re.compile(r"^[a-z0-9-]{1,64}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
TINY_MODEL = "aidx-tiny"
FINAL_STATES = ("succeeded", "quarantined", "failed", "cancelled")
RUNNABLE = ("validating_files", "queued")  # what a worker may take a lease on
LEASED = ("validating_files", "queued", "running", "pausing", "cancelling", "auditing")


class LeaseLost(Exception):
    """This run no longer holds the job's lease: another run owns it, or the job ended."""


# Submitting -----------------------------------------------------------------------------------


def validate_params(params: dict[str, Any], settings: Settings) -> TrainingParams:
    """Buyers send parameters, never code or paths: a base model is named, not located."""
    base_model = params.get("base_model")
    if isinstance(base_model, str):
        if not MODEL_NAME.match(base_model):
            raise JobRequestError(
                f"params.base_model {base_model!r} is not a model name",
                param="model",
                code="model_not_found",
            )
        try:
            path = resolve(base_model, models_dir=default_models_dir(settings.home_dir))
        except TrainingError as error:  # unknown or broken registry entry
            raise JobRequestError(
                f"params.base_model {base_model!r} is not installed on this exchange ({error})",
                param="model",
                code="model_not_found",
            ) from error
        params = {**params, "base_model": str(path)}
    try:
        return TrainingParams.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        problems = "; ".join(
            f"params.{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise JobRequestError(
            problems,
            param="params." + ".".join(str(part) for part in first["loc"]),
            code="invalid_hyperparameter",
        ) from error


def validate_options(
    *, suffix: str | None, metadata: Any, country: str | None
) -> dict[str, str] | None:
    """The suffix, metadata and country of a job request, within OpenAI's limits."""
    if suffix is not None and not SUFFIX.match(suffix):
        raise JobRequestError(
            f"suffix must be 1-64 characters of a-z, 0-9 and '-'; got {len(suffix)} characters"
            + ("" if len(suffix) > 64 else " with others"),
            param="suffix",
            code="invalid_suffix",
        )
    if country is not None and not COUNTRY.match(country):
        raise JobRequestError(
            "country must be an ISO 3166-1 alpha-2 code such as 'CN'",
            param="country",
            code="invalid_country",
        )
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise JobRequestError(
            "metadata must be an object of strings", param="metadata", code="invalid_metadata"
        )
    if len(metadata) > MAX_METADATA_KEYS:
        raise JobRequestError(
            f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS} are allowed",
            param="metadata",
            code="invalid_metadata",
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY:
            raise JobRequestError(
                f"metadata keys must be 1-{MAX_METADATA_KEY} characters",
                param="metadata",
                code="invalid_metadata",
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise JobRequestError(
                f"metadata[{key!r}] must be a string of at most {MAX_METADATA_VALUE} characters",
                param=f"metadata.{key}",
                code="invalid_metadata",
            )
    return dict(metadata)


def submit_job(
    session: Session,
    *,
    actor: Principal,
    version_id: str,
    params: dict[str, Any],
    settings: Settings,
    model: str | None = None,
    suffix: str | None = None,
    metadata: Any = None,
    country: str | None = None,
) -> TrainingJob:
    """Check the request and the gate, hold the most the job can cost, and record the job in
    ``validating_files``; the caller enqueues it (`enqueue_job`) after this commits. Nothing is
    written when any check fails."""
    actor.require_role("buyer", "researcher")
    try:
        get_visible_version(session, actor=actor, version_id=version_id)
    except NotFoundError as error:
        raise JobRequestError(
            error.message, param="training_file", code="file_not_found"
        ) from error
    validated = validate_params(params, settings)
    user_metadata = validate_options(suffix=suffix, metadata=metadata, country=country)
    entitlement = require_training_entitlement(
        session, organization_id=actor.organization_id, version_id=version_id
    )
    terms = governance.training_terms(session, entitlement)
    governance.check_territory(terms, country)
    most_tokens = validated.max_steps * validated.batch_size * validated.max_seq_len
    job_id = new_id("ftjob")
    governance.check_quota(session, entitlement, terms, most_tokens=most_tokens, job_id=job_id)
    plan = metered_plan(session, entitlement.license_id)
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
        max_tokens=most_tokens,
        organization_id=actor.organization_id,
        version_id=version_id,
        entitlement_id=entitlement.id,
        grant_hash=grant_hash(entitlement),
        params=validated.model_dump(mode="json"),
        model=model or _model_name(validated),
        suffix=suffix,
        user_metadata=user_metadata,
        country=country,
        status="validating_files",
        artifacts=[],
        attempts=0,
        run_seconds=0.0,
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
        max_tokens=most_tokens,
    )
    session.commit()
    return job


def _model_name(params: TrainingParams) -> str:
    if isinstance(params.base_model, TinyModelSpec):
        return TINY_MODEL
    return Path(params.base_model).name


def enqueue_job(job: TrainingJob, settings: Settings) -> str:
    """Send ``training.run`` with what is left of the job's time limits (after the commit)."""
    from infra.queue import app

    soft = max(1.0, settings.training_soft_time_limit_seconds - job.run_seconds)
    hard = max(soft + 1, settings.training_time_limit_seconds - job.run_seconds)
    result = app.send_task(
        "training.run", args=[job.id], soft_time_limit=math.ceil(soft), time_limit=math.ceil(hard)
    )
    return str(result.id)


@dataclass(frozen=True)
class MeteredPlan:
    price_per_million_tokens: int
    currency: str
    contributions: dict[str, int]

    def charge(self, tokens: int) -> int:
        """The price of ``tokens`` trained tokens, rounded up to a whole minor unit."""
        return -(-tokens * self.price_per_million_tokens // 1_000_000)


def metered_plan(session: Session, license_id: str) -> MeteredPlan:
    """The metered price of training under a license (its offer's), shared by provenance."""
    license_ = session.get(License, license_id)
    assert license_ is not None
    listing = session.get(Listing, license_.listing_id)
    version = session.get(DatasetVersion, license_.version_id)
    assert listing is not None and version is not None
    terms = licensing.metered_terms(session, license_id)
    return MeteredPlan(
        price_per_million_tokens=terms.price_per_million_tokens,
        currency=terms.currency,
        contributions=version.contributions or {listing.organization_id: 1},
    )


# Reading --------------------------------------------------------------------------------------


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


def list_checkpoints(
    session: Session, *, actor: Principal, job_id: str
) -> list[TrainingJobCheckpoint]:
    """The job's checkpoints in the object store, newest first."""
    get_job(session, actor=actor, job_id=job_id)
    return list(
        session.scalars(
            select(TrainingJobCheckpoint)
            .where(TrainingJobCheckpoint.job_id == job_id)
            .order_by(TrainingJobCheckpoint.step.desc())
        )
    )


def validation_report(session: Session, *, actor: Principal, job_id: str) -> dict[str, Any]:
    job = get_job(session, actor=actor, job_id=job_id)
    if job.validation is None:
        raise JobStateError(
            f"training job {job_id} is {job.status}; its data has not been validated yet",
            code="not_validated",
        )
    return dict(job.validation)


def model_card(session: Session, *, actor: Principal, job_id: str) -> dict[str, Any]:
    job = get_job(session, actor=actor, job_id=job_id)
    if job.model_card is None:
        raise JobStateError(
            f"training job {job_id} is {job.status}; a model card is issued with a released model",
            code="no_model_card",
        )
    return dict(job.model_card)


def released_artifact(
    session: Session, *, actor: Principal, job_id: str, path: str
) -> dict[str, Any]:
    """A file of a released model: only its buyer, only after the release gate passed it."""
    job = get_job(session, actor=actor, job_id=job_id)
    if job.organization_id != actor.organization_id:
        raise NotFoundError("training job", job_id)
    if job.status != "succeeded":
        raise JobStateError(
            f"training job {job_id} is {job.status}; weights leave only after the release gate"
        )
    for artifact in job.artifacts:
        if artifact["path"] == path:
            return dict(artifact)
    raise NotFoundError(f"artifact of training job {job_id}", path)


# Controlling ----------------------------------------------------------------------------------


def cancel_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    """Cancel in any state that is not final; a running job stops at its next step."""
    job = _locked_job(session, actor=actor, job_id=job_id)
    if job.status == "cancelled":
        raise JobStateError(f"training job {job_id} is already cancelled", code="already_cancelled")
    if job.status in FINAL_STATES:
        raise JobStateError(
            f"training job {job_id} has already {job.status}; it cannot be cancelled"
        )
    if job.status == "cancelling":
        return job
    if job.status in ("running", "pausing", "auditing"):
        job.status = "cancelling"
    else:  # validating_files, queued, paused: no run is training it; the whole hold goes back
        job.status, job.finished_at = "cancelled", utcnow()
        _settle(session, job, charge=0, fee_bps=0)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="training_job.cancel_requested",
        object_type="training_job",
        object_id=job.id,
        status=job.status,
    )
    session.commit()
    return job


def pause_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    """Ask a job to pause: a running one saves a checkpoint at its next step, then stops."""
    job = _locked_job(session, actor=actor, job_id=job_id)
    if job.status == "running":
        job.status = "pausing"
    elif job.status in RUNNABLE:
        job.status = "paused"
    else:
        raise JobStateError(
            f"training job {job_id} is {job.status}; only a running, queued or "
            "validating job can be paused"
        )
    _append_event_in(session, job.id, {"type": "pause_requested", "status": job.status})
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="training_job.pause_requested",
        object_type="training_job",
        object_id=job.id,
    )
    session.commit()
    return job


def resume_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    """Requeue a paused job; it continues from its last checkpoint (the caller enqueues it)."""
    job = _locked_job(session, actor=actor, job_id=job_id)
    if job.status != "paused":
        raise JobStateError(f"training job {job_id} is {job.status}; only a paused job resumes")
    job.status = "queued" if job.validation is not None else "validating_files"
    _append_event_in(session, job.id, {"type": "resume_requested"})
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="training_job.resumed",
        object_type="training_job",
        object_id=job.id,
    )
    session.commit()
    return job


def _locked_job(session: Session, *, actor: Principal, job_id: str) -> TrainingJob:
    job = get_job(session, actor=actor, job_id=job_id)
    session.refresh(job, with_for_update=True)
    return job


# Running on a worker --------------------------------------------------------------------------


class Run:
    """One worker's run of a job: its lease, heartbeat and the writes made under it."""

    def __init__(self, job_id: str, settings: Settings) -> None:
        self.job_id = job_id
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.status = "validating_files"
        self.run_seconds = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_at = time.monotonic()
        # Events come from the training thread and from its checkpoint writer thread.
        self._event_lock = threading.Lock()

    @property
    def lease_seconds(self) -> float:
        return self.settings.training_lease_seconds

    def take(self) -> bool:
        """Take the lease if the job is runnable and nobody holds a live lease on it."""
        now = utcnow()
        with session_scope(self.settings) as session:
            taken = _rowcount(
                session,
                update(TrainingJob)
                .where(TrainingJob.id == self.job_id)
                .where(TrainingJob.status.in_(RUNNABLE))
                .where((TrainingJob.lease_owner.is_(None)) | (TrainingJob.lease_expires_at < now))
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=now + dt.timedelta(seconds=self.lease_seconds),
                    attempts=TrainingJob.attempts + 1,
                )
                .execution_options(synchronize_session=False),
            )
            self.run_seconds = float(
                session.scalar(select(TrainingJob.run_seconds).where(TrainingJob.id == self.job_id))
                or 0.0
            )
            session.commit()
        self._beat_at = time.monotonic()
        return bool(taken)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._beat_forever, name=f"lease-{self.job_id}", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease_seconds)

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self.beat()
            except LeaseLost:
                return
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("training job %s: lease renewal failed", self.job_id)

    def beat(self) -> None:
        """Renew the lease, add the seconds run since the last beat, read the job's status."""
        now_monotonic = time.monotonic()
        elapsed, self._beat_at = now_monotonic - self._beat_at, now_monotonic
        with session_scope(self.settings) as session:
            renewed = _rowcount(
                session,
                update(TrainingJob)
                .where(TrainingJob.id == self.job_id, TrainingJob.lease_owner == self.owner)
                .values(
                    lease_expires_at=utcnow() + dt.timedelta(seconds=self.lease_seconds),
                    run_seconds=TrainingJob.run_seconds + elapsed,
                )
                .execution_options(synchronize_session=False),
            )
            row = session.execute(
                select(TrainingJob.status, TrainingJob.run_seconds).where(
                    TrainingJob.id == self.job_id
                )
            ).one()
            session.commit()
        self.status, self.run_seconds = row
        if not renewed:
            self.lost = True
            raise LeaseLost(self.job_id)

    def check(self) -> None:
        """Between two steps: stop if the lease is gone or the soft time limit has passed."""
        if self.lost:
            raise LeaseLost(self.job_id)
        used = self.run_seconds + (time.monotonic() - self._beat_at)
        if used > self.settings.training_soft_time_limit_seconds:
            raise TimeLimitExceeded(limit_seconds=self.settings.training_soft_time_limit_seconds)

    def locked(self, session: Session) -> TrainingJob:
        """The job, row-locked, if this run still holds its lease; else `LeaseLost`."""
        job = session.get(TrainingJob, self.job_id, with_for_update=True, populate_existing=True)
        if job is None or job.lease_owner != self.owner:
            raise LeaseLost(self.job_id)
        return job

    def event(self, event: dict[str, Any]) -> None:
        """Append an event; safe from any thread (one at a time, in the order they come)."""
        with self._event_lock, session_scope(self.settings) as session:
            self.locked(session)
            _append_event_in(session, self.job_id, event)
            session.commit()

    def release(self, session: Session, job: TrainingJob) -> None:
        job.lease_owner, job.lease_expires_at = None, None
        elapsed = time.monotonic() - self._beat_at
        job.run_seconds = (job.run_seconds or 0.0) + elapsed
        self._beat_at = time.monotonic()


def execute_job(job_id: str, *, settings: Settings | None = None) -> str:
    """Run a job on this worker if it can take the lease; returns the job's status after."""
    settings = settings or get_settings()
    run = Run(job_id, settings)
    if not run.take():
        with session_scope(settings) as session:
            job = session.get(TrainingJob, job_id)
            return job.status if job is not None else "missing"
    run.start_heartbeat()
    try:
        return _execute(run, get_object_store(settings))
    except LeaseLost:
        log.warning("training job %s: lease lost; this run stops without writing", job_id)
        return "lease_lost"
    finally:
        run.stop_heartbeat()


def _execute(run: Run, store: ObjectStore) -> str:
    settings, job_id = run.settings, run.job_id
    with session_scope(settings) as session:
        job = run.locked(session)
        refusal = _gate_refusal(session, job)
        if refusal is not None:
            _fail(session, run, job, code="entitlement_inactive", message=refusal)
            return "failed"
        version = session.get(DatasetVersion, job.version_id)
        assert version is not None
        params = TrainingParams.model_validate(job.params)
        validated = job.validation is not None
        checkpoint = session.scalar(
            select(TrainingJobCheckpoint)
            .where(TrainingJobCheckpoint.job_id == job_id)
            .order_by(TrainingJobCheckpoint.step.desc())
            .limit(1)
        )
        resume_files = list(checkpoint.files) if checkpoint is not None else None
        resume_step = checkpoint.step if checkpoint is not None else 0
        session.commit()

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # worker logs carry our events, not tqdm bars
    try:
        with tempfile.TemporaryDirectory(prefix="aidx-training-") as scratch:
            scratch_dir = Path(scratch)
            table = _read_version(store, version, scratch_dir)
            if not validated:
                report = _validation_of(version.content_hash, table, params)
                if not _record_validation(run, report):
                    return _status_of(settings, job_id)
            if not _transition(run, frm=RUNNABLE, to="running"):
                return _status_of(settings, job_id)
            train_rows, held_out_rows = hold_out(table, seed=params.seed)
            canaries = make_canaries(CANARIES, seed=params.seed)
            resume_from = None
            if resume_files is not None:
                resume_from = scratch_dir / "resume"
                for file in resume_files:
                    store.download_to(file["key"], resume_from / file["path"])
            output_dir = scratch_dir / "model"

            def on_event(event: dict[str, Any]) -> None:
                run.event(event)

            def should_stop() -> bool:
                run.check()
                return run.status == "cancelling"

            result = train(
                table=inject_canaries_into_table(
                    train_rows, canaries, CANARY_REPETITIONS, seed=params.seed
                ),
                params=params,
                output_dir=output_dir,
                on_event=on_event,
                should_stop=should_stop,
                should_pause=lambda: run.status == "pausing",
                on_checkpoint=lambda directory, step, metrics, digests: _store_checkpoint(
                    run, store, directory, step, metrics, digests
                ),
                resume_from=resume_from,
            )
            # A pause asked for after the last step has nothing left to pause.
            if not _transition(run, frm=("running", "pausing"), to="auditing"):
                return _stop_if_cancelling(run)
            run.event({"type": "auditing"})
            release = audit_model(
                output_dir,
                params,
                train_rows=train_rows,
                held_out_rows=held_out_rows,
                canaries=canaries,
                policy=ReleasePolicy.model_validate(settings.release_policy),
            )
            run.event({"type": "audited", "decision": release.decision})
            return _complete(run, store, output_dir, params, result, release, resume_step)
    except JobPaused as paused:
        return _finish_pause(run, paused.step)
    except JobCancelled:
        return _end(run, status="cancelled", code=None, message=None, param=None)
    except TimeLimitExceeded as error:
        return _end(run, status="failed", code="time_limit_exceeded", message=str(error))
    except InvalidTrainingDataError as error:
        return _end(
            run,
            status="failed",
            code="invalid_training_file",
            message=str(error),
            param="training_file",
        )
    except TrainingError as error:
        return _end(run, status="failed", code="training_failed", message=str(error))
    except LeaseLost:
        raise
    except BaseException as error:
        if type(error).__name__ == "SoftTimeLimitExceeded":  # Celery's, raised in the task
            limit = settings.training_soft_time_limit_seconds
            return _end(
                run,
                status="failed",
                code="time_limit_exceeded",
                message=str(TimeLimitExceeded(limit_seconds=limit)),
            )
        log.exception("training job %s failed", job_id)
        _end(
            run,
            status="failed",
            code="internal_error",
            message=f"internal error ({type(error).__name__})",
        )
        raise


def _gate_refusal(session: Session, job: TrainingJob) -> str | None:
    """The gate again, now that the data is about to be read; a message if it refuses."""
    try:
        entitlement = require_training_entitlement(
            session, organization_id=job.organization_id, version_id=job.version_id
        )
    except PermissionDeniedError as error:
        return error.message
    if grant_hash(entitlement) != job.grant_hash:
        return "the training entitlement changed since the job was submitted"
    try:
        governance.check_territory(governance.training_terms(session, entitlement), job.country)
    except PermissionDeniedError as error:
        return error.message
    except JobRequestError as error:
        return error.message
    return None


# Validation reports by (version content hash, base model, max_seq_len): a version's rows are
# immutable, so a worker validates them once per tokenizer and length, not once per job.
_VALIDATIONS: dict[tuple[str, str, int], ValidationReport] = {}
_VALIDATIONS_KEPT = 32


def _validation_of(content_hash: str, table: pa.Table, params: TrainingParams) -> ValidationReport:
    key = (content_hash, repr(params.base_model), params.max_seq_len)
    report = _VALIDATIONS.get(key)
    if report is None:
        tokenizer = load_base_tokenizer(params.base_model)
        report = validate_table(table, tokenizer, max_seq_len=params.max_seq_len)
        while len(_VALIDATIONS) >= _VALIDATIONS_KEPT:
            _VALIDATIONS.pop(next(iter(_VALIDATIONS)))
        _VALIDATIONS[key] = report
    return report


def _record_validation(run: Run, report: ValidationReport) -> bool:
    """Store the report; a job whose data fails it fails. True if the job goes on."""
    with session_scope(run.settings) as session:
        job = run.locked(session)
        job.validation = report.model_dump(mode="json")
        if not report.passed:
            _fail(
                session,
                run,
                job,
                code="invalid_training_file",
                message=report.summary,
                param="training_file",
            )
            return False
        if job.status != "validating_files":  # paused or cancelled while it was validated
            if job.status not in RUNNABLE:
                run.release(session, job)
            session.commit()
            return job.status in RUNNABLE
        job.status = "queued"
        session.commit()
    return True


def _transition(run: Run, *, frm: tuple[str, ...], to: str) -> bool:
    with session_scope(run.settings) as session:
        job = run.locked(session)
        if job.status not in frm:
            if job.status in ("paused", "cancelled"):  # paused or cancelled before it ran
                run.release(session, job)
            session.commit()
            return False
        job.status = to
        if to == "running" and job.started_at is None:
            job.started_at = utcnow()
        session.commit()
    run.status = to
    return True


def _status_of(settings: Settings, job_id: str) -> str:
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        return job.status if job is not None else "missing"


def _stop_if_cancelling(run: Run) -> str:
    with session_scope(run.settings) as session:
        status = run.locked(session).status
    if status == "cancelling":
        return _end(run, status="cancelled", code=None, message=None)
    return status


def _store_checkpoint(
    run: Run,
    store: ObjectStore,
    directory: Path,
    step: int,
    metrics: dict[str, Any],
    digests: Mapping[str, str],
) -> None:
    """Move a checkpoint's files into the store and record it; keep the newest
    `training_checkpoints_kept`. `digests`: the SHA-256 of the files hashed as they were
    written, which the store records without reading them again.

    Called on the runner's checkpoint writer thread while training goes on (`run.check` and
    `run.locked` only read this run's state and the database, so that is safe). Until the row
    is committed, the job's resume point stays the checkpoint before.
    """
    run.check()
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            relative = path.relative_to(directory).as_posix()
            stored = store.move_file_in(
                path,
                key=f"training-jobs/{run.job_id}/checkpoints/step-{step:06d}/{relative}",
                sha256=digests.get(relative),
            )
            files.append(
                {"path": relative, "key": stored.key, "sha256": stored.sha256, "size": stored.size}
            )
    with session_scope(run.settings) as session:
        run.locked(session)
        exists = session.scalar(
            select(TrainingJobCheckpoint.id).where(
                TrainingJobCheckpoint.job_id == run.job_id, TrainingJobCheckpoint.step == step
            )
        )
        if exists is None:
            session.add(
                TrainingJobCheckpoint(
                    id=new_id("ftckpt"),
                    job_id=run.job_id,
                    step=step,
                    metrics=metrics,
                    files=files,
                    created_at=utcnow(),
                )
            )
        old = list(
            session.scalars(
                select(TrainingJobCheckpoint)
                .where(TrainingJobCheckpoint.job_id == run.job_id)
                .order_by(TrainingJobCheckpoint.step.desc())
                .offset(run.settings.training_checkpoints_kept)
            )
        )
        for checkpoint in old:
            session.delete(checkpoint)
        session.commit()
    for checkpoint in old:
        for file in checkpoint.files:
            store.delete(file["key"])


def _finish_pause(run: Run, step: int) -> str:
    with session_scope(run.settings) as session:
        job = run.locked(session)
        if job.status == "cancelling":
            session.rollback()
            return _end(run, status="cancelled", code=None, message=None)
        job.status = "paused"
        run.release(session, job)
        _append_event_in(session, job.id, {"type": "paused", "step": step})
        audit.record(
            session,
            actor_organization_id=None,
            action="training_job.paused",
            object_type="training_job",
            object_id=job.id,
            step=step,
        )
        session.commit()
    return "paused"


def _end(
    run: Run, *, status: str, code: str | None, message: str | None, param: str | None = None
) -> str:
    with session_scope(run.settings) as session:
        job = run.locked(session)
        if status == "failed":
            _fail(
                session,
                run,
                job,
                code=code or "training_failed",
                message=message or "",
                param=param,
            )
            return "failed"
        job.status, job.finished_at = status, utcnow()
        _settle(session, job, charge=0, fee_bps=0)
        run.release(session, job)
        audit.record(
            session,
            actor_organization_id=None,
            action=f"training_job.{status}",
            object_type="training_job",
            object_id=job.id,
        )
        session.commit()
    return status


def _fail(
    session: Session,
    run: Run | None,
    job: TrainingJob,
    *,
    code: str,
    message: str,
    param: str | None = None,
) -> None:
    """Fail the job in the caller's transaction: its hold goes back, its lease is released."""
    job.status, job.finished_at = "failed", utcnow()
    job.error, job.error_code, job.error_param = message, code, param
    _settle(session, job, charge=0, fee_bps=0)
    if run is not None:
        run.release(session, job)
    else:
        job.lease_owner, job.lease_expires_at = None, None
    _append_event_in(session, job.id, {"type": "failed", "code": code})
    audit.record(
        session,
        actor_organization_id=None,
        action="training_job.failed",
        object_type="training_job",
        object_id=job.id,
        code=code,
    )
    session.commit()


def _complete(
    run: Run,
    store: ObjectStore,
    output_dir: Path,
    params: TrainingParams,
    result: Any,
    release: ReleaseReport,
    resume_step: int,
) -> str:
    """Store the model and its card, settle the charge and count the quota (one transaction)."""
    settings, job_id = run.settings, run.job_id
    released = release.decision == "release"
    with session_scope(settings) as session:
        job = run.locked(session)
        if job.status == "cancelling":
            session.rollback()
            return _end(run, status="cancelled", code=None, message=None)
        fine_tuned = fine_tuned_model_name(job)
        card_payload = _card_payload(session, settings, job, params, result, release, fine_tuned)
        session.commit()
    artifacts = []
    for path in sorted(output_dir.rglob("*")):
        if path.is_file() and "checkpoints" not in path.relative_to(output_dir).parts:
            relative = path.relative_to(output_dir).as_posix()
            # Audited already, and read no more: moved in, not copied.
            stored = store.move_file_in(path, key=f"training-jobs/{job_id}/model/{relative}")
            artifacts.append(
                {"path": relative, "key": stored.key, "sha256": stored.sha256, "size": stored.size}
            )
    card = None
    if released:
        from marketplace.certificates import load_or_create_signing_key

        card_payload["artifacts"] = [
            {"path": item["path"], "sha256": item["sha256"], "size": item["size"]}
            for item in artifacts
        ]
        key = load_or_create_signing_key(
            settings.resolved_signing_key_path, create=settings.environment != "production"
        )
        card = sign_model_card(card_payload, key)
        for name, data in (
            ("model_card.json", _json_bytes(card)),
            ("README.md", render_markdown(card).encode()),
        ):
            stored = store.put_bytes(data, key=f"training-jobs/{job_id}/model/{name}")
            artifacts.append(
                {"path": name, "key": stored.key, "sha256": stored.sha256, "size": stored.size}
            )

    with session_scope(settings) as session:
        job = run.locked(session)
        if job.status == "cancelling":
            session.rollback()
            return _end(run, status="cancelled", code=None, message=None)
        job.status, job.finished_at = ("succeeded" if released else "quarantined"), utcnow()
        job.trained_tokens = result.trained_tokens
        entitlement = session.get(Entitlement, job.entitlement_id, with_for_update=True)
        assert entitlement is not None
        entitlement.training_tokens_used = (
            entitlement.training_tokens_used or 0
        ) + result.trained_tokens
        job.charged_amount = min(
            job.held_amount,
            metered_plan(session, entitlement.license_id).charge(result.trained_tokens),
        )
        _settle(session, job, charge=job.charged_amount, fee_bps=settings.platform_fee_bps)
        job.artifacts = artifacts
        job.model_card = card
        job.fine_tuned_model = card_payload["fine_tuned_model"] if released else None
        job.result = {
            "recipe_hash": result.recipe_hash,
            "method": result.method,
            "first_loss": result.first_loss,
            "final_loss": result.final_loss,
            "steps": result.steps,
            "resumed_from_step": resume_step or None,
            "trained_tokens": result.trained_tokens,
            "device": result.device,
            "seconds": result.seconds,
            "release": release.model_dump(mode="json"),
        }
        run.release(session, job)
        audit.record(
            session,
            actor_organization_id=None,
            action=f"training_job.{job.status}",
            object_type="training_job",
            object_id=job_id,
            trained_tokens=result.trained_tokens,
            model_card_signature=card["signature"] if card else None,
        )
        session.commit()
        return job.status


def fine_tuned_model_name(job: TrainingJob) -> str:
    """OpenAI's form: ``ft:<base model>:aidx[:<suffix>]:<job id>``."""
    parts = ["ft", job.model, "aidx", *([job.suffix] if job.suffix else []), job.id]
    return ":".join(parts)


def _card_payload(
    session: Session,
    settings: Settings,
    job: TrainingJob,
    params: TrainingParams,
    result: Any,
    release: ReleaseReport,
    fine_tuned: str,
) -> dict[str, Any]:
    version = session.get(DatasetVersion, job.version_id)
    entitlement = session.get(Entitlement, job.entitlement_id)
    assert version is not None and entitlement is not None
    dataset = session.get(Dataset, version.dataset_id)
    contract = session.scalar(select(Contract).where(Contract.license_id == entitlement.license_id))
    assert dataset is not None
    base: dict[str, Any] = {"name": job.model}
    if not isinstance(params.base_model, TinyModelSpec):
        for entry in ModelRegistry(default_models_dir(settings.home_dir)).entries():
            if entry.name == job.model:
                base |= {"weights_sha256": entry.weights_sha256, "license": entry.license}
    else:
        base |= {"spec": params.base_model.model_dump()}
    hyperparameters = params.model_dump(mode="json", exclude={"base_model"})
    validation = job.validation or {}
    return {
        "model_card_id": new_id("mcard"),
        "job_id": job.id,
        "fine_tuned_model": fine_tuned,
        "organization_id": job.organization_id,
        "issued_at": utcnow().isoformat(),
        "base_model": base,
        "method": params.method,
        "datasets": [
            {
                "name": dataset.name,
                "version_id": version.id,
                "version_number": version.number,
                "content_hash": version.content_hash,
                "rows": version.num_rows,
                "license": dataset.license,
                "license_id": entitlement.license_id,
                "contract_sha256": contract.sha256 if contract else None,
                "filing_number": contract.filing_number if contract else None,
            }
        ],
        "recipe_hash": result.recipe_hash,
        "hyperparameters": hyperparameters,
        "metrics": {
            "first_loss": result.first_loss,
            "final_loss": result.final_loss,
            "steps": result.steps,
            "trained_tokens": result.trained_tokens,
            "validation_tokens": (validation.get("tokens") or {}).get("total"),
        },
        "release_gate": {
            "decision": release.decision,
            "checks": [
                {
                    "name": check.name,
                    "value": check.value,
                    "threshold": check.threshold,
                    "passed": check.passed,
                }
                for check in release.checks
            ],
            "sample_sha256": release.sample_sha256,
        },
        "artifacts": [],
    }


def _json_bytes(value: Any) -> bytes:
    import json

    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


# Lost workers ---------------------------------------------------------------------------------


def reap_lost_jobs(
    settings: Settings | None = None, *, enqueue: Callable[[TrainingJob], Any] | None = None
) -> list[str]:
    """Jobs whose worker stopped renewing the lease: requeue them (they resume from their last
    checkpoint), or end them if they were pausing or cancelling, ran out of time or attempts.
    Safe to run from any number of workers at once: each change is conditional on the expired
    lease it saw. Returns the ids of the jobs it requeued."""
    settings = settings or get_settings()
    now = utcnow()
    requeued = []
    with session_scope(settings) as session:
        lost = list(
            session.scalars(
                select(TrainingJob)
                .where(TrainingJob.status.in_(LEASED))
                .where(TrainingJob.lease_owner.is_not(None))
                .where(TrainingJob.lease_expires_at < now)
            )
        )
        session.commit()
    for candidate in lost:
        with session_scope(settings) as session:
            job = session.get(TrainingJob, candidate.id, with_for_update=True)
            if (
                job is None
                or job.lease_owner != candidate.lease_owner
                or job.lease_expires_at is None
                or job.lease_expires_at >= now
            ):
                continue
            lost_owner = job.lease_owner
            job.lease_owner, job.lease_expires_at = None, None
            if job.status == "cancelling":
                job.status, job.finished_at = "cancelled", utcnow()
                _settle(session, job, charge=0, fee_bps=0)
            elif job.status == "pausing":
                job.status = "paused"
                _append_event_in(session, job.id, {"type": "paused", "reason": "worker_lost"})
            elif job.run_seconds + settings.training_lease_seconds >= (
                settings.training_time_limit_seconds
            ):
                _fail(
                    session,
                    None,
                    job,
                    code="time_limit_exceeded",
                    message=f"the job ran past its hard time limit of "
                    f"{settings.training_time_limit_seconds:g} s",
                )
                continue
            elif job.attempts >= settings.training_max_attempts:
                _fail(
                    session,
                    None,
                    job,
                    code="worker_lost",
                    message=f"the job's worker was lost {job.attempts} times; giving up",
                )
                continue
            else:
                job.status = "queued" if job.validation is not None else "validating_files"
                last = session.scalar(
                    select(func.max(TrainingJobCheckpoint.step)).where(
                        TrainingJobCheckpoint.job_id == job.id
                    )
                )
                _append_event_in(
                    session,
                    job.id,
                    {
                        "type": "requeued",
                        "reason": "worker_lost",
                        "resume_step": last or 0,
                        "attempts": job.attempts,
                    },
                )
                requeued.append(job.id)
            audit.record(
                session,
                actor_organization_id=None,
                action="training_job.worker_lost",
                object_type="training_job",
                object_id=job.id,
                lease_owner=lost_owner,
                status=job.status,
            )
            session.commit()
            if job.id in requeued:
                (enqueue or (lambda queued: enqueue_job(queued, settings)))(job)
    return requeued


# Helpers --------------------------------------------------------------------------------------


def _rowcount(session: Session, statement: Any) -> int:
    """Rows an UPDATE changed: how a conditional UPDATE tells whether its condition held."""
    result: Any = session.execute(statement)
    return int(result.rowcount)


def _append_event_in(session: Session, job_id: str, event: dict[str, Any]) -> None:
    last = session.scalar(
        select(func.max(TrainingJobEvent.seq)).where(TrainingJobEvent.job_id == job_id)
    )
    data = {key: value for key, value in event.items() if key != "type"}
    session.add(
        TrainingJobEvent(
            job_id=job_id, seq=(last or 0) + 1, at=utcnow(), type=str(event["type"]), data=data
        )
    )
    session.flush()


def _read_version(store: ObjectStore, version: DatasetVersion, scratch: Path) -> pa.Table:
    tables = []
    for file in version.files:
        local = scratch / "data" / file["path"]
        local.parent.mkdir(parents=True, exist_ok=True)
        store.download_to(file["key"], local)
        tables.append(pq.read_table(local))
    return pa.concat_tables(tables)


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

"""Curation runs: queued by the API, executed by a worker, published as a dataset version.

A run reads its uploads from the object store, curates them in a scratch folder, writes the
Parquet shards, the exclusions file and the dataset card to the store under the version's
prefix, and only then records the version, in one transaction with the run's completion. The
version id is derived from the run id, so a retried run rewrites the same keys.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curation.errors import CurationError
from curation.executors import StageProgress
from curation.models import CurationRun
from curation.pipeline import Pipeline, load_recipe
from curation.report import quality_report
from curation.runner import InputFile, run_local
from dataset_cards.autofill import card_from_curation, facts_from_report
from dataset_cards.render.croissant import render_croissant
from dataset_cards.render.hf_readme import render_readme
from infra.config import Settings, get_settings
from infra.db import new_id, session_scope, utcnow
from infra.storage import ObjectStore, get_object_store
from marketplace.errors import InvalidRequestError, NotFoundError
from marketplace.models import Dataset, DatasetVersion, Organization, Upload
from marketplace.services import audit
from marketplace.services.datasets import contributions_from_shards, get_owned_dataset
from marketplace.services.organizations import Principal, get_owned

log = logging.getLogger(__name__)


def start_curation_run(
    session: Session,
    *,
    actor: Principal,
    dataset_id: str,
    upload_ids: list[str] | None,
    recipe: str,
) -> CurationRun:
    """Record a queued run; the caller enqueues ``curation.run`` after this commits."""
    actor.require_role("contributor")
    dataset = get_owned_dataset(session, actor=actor, dataset_id=dataset_id)
    uploads = list(
        session.scalars(
            select(Upload).where(Upload.dataset_id == dataset.id).order_by(Upload.created_at)
        )
    )
    if upload_ids is not None:
        known = {upload.id: upload for upload in uploads}
        missing = [upload_id for upload_id in upload_ids if upload_id not in known]
        if missing:
            raise NotFoundError(f"upload of dataset {dataset_id}", ", ".join(missing))
        uploads = [known[upload_id] for upload_id in dict.fromkeys(upload_ids)]
    if not uploads:
        raise InvalidRequestError(f"dataset {dataset_id} has no uploads to curate")
    try:
        recipe_body = load_recipe(recipe)
        Pipeline.from_recipe(recipe_body)  # refuse unknown steps now, not on the worker
    except CurationError as error:
        raise InvalidRequestError(str(error)) from error
    run = CurationRun(
        id=new_id("cur"),
        dataset_id=dataset.id,
        organization_id=actor.organization_id,
        upload_ids=[upload.id for upload in uploads],
        recipe=recipe_body,
        status="queued",
        created_at=utcnow(),
    )
    session.add(run)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="curation_run.queued",
        object_type="curation_run",
        object_id=run.id,
        upload_ids=run.upload_ids,
    )
    session.commit()
    return run


def get_run(session: Session, *, actor: Principal, run_id: str) -> CurationRun:
    return get_owned(session, CurationRun, run_id, actor=actor, kind="curation run")


def execute_run(run_id: str, *, settings: Settings | None = None) -> str:
    """Carry out a queued run on a worker; returns the run's final status."""
    settings = settings or get_settings()
    store = get_object_store(settings)
    with session_scope(settings) as session:
        run = session.get(CurationRun, run_id)
        if run is None:
            log.warning("curation run %s is gone", run_id)
            return "missing"
        if run.status in ("succeeded", "failed"):
            return run.status
        run.status, run.started_at = "running", utcnow()
        session.commit()
    progress = ProgressRecorder(run_id, settings)
    try:
        with session_scope(settings) as session:
            _curate_and_publish(
                session, store, run_id, settings.home_dir / "curation-work", progress
            )
    except Exception as error:
        log.exception("curation run %s failed", run_id)
        message = str(error) if isinstance(error, CurationError) else type(error).__name__
        with session_scope(settings) as session:
            run = session.get(CurationRun, run_id)
            assert run is not None
            run.status, run.error, run.finished_at = "failed", message, utcnow()
            run.report = {"progress": progress.snapshot()} if progress.stages else None
            session.commit()
        if not isinstance(error, CurationError):
            raise
        shutil.rmtree(settings.home_dir / "curation-work" / run_id, ignore_errors=True)
        return "failed"
    return "succeeded"


class ProgressRecorder:
    """Keeps a running run's progress in its ``report`` (``{"progress": ...}``), for the API.

    Called with each :class:`~curation.executors.StageProgress`; it keeps, per stage, the tasks
    done of the total, the rows taken in and put out so far, and each finished shard's rows, and
    writes them to the run's row in a short transaction of its own: when a stage starts or ends,
    and otherwise at most every ``interval`` seconds.
    """

    def __init__(self, run_id: str, settings: Settings, *, interval: float = 1.0) -> None:
        self.run_id = run_id
        self.settings = settings
        self.interval = interval
        self.stages: dict[int, dict[str, Any]] = {}
        self._written = 0.0

    def __call__(self, state: StageProgress) -> None:
        entry = self.stages.setdefault(
            state.stage,
            {"stage": state.stage, "name": state.name, "kind": state.kind, "shards": []},
        )
        entry.update(
            done=state.done, total=state.total, rows_in=state.rows_in, rows_out=state.rows_out
        )
        if state.shard is not None:
            entry["shards"].append(
                {
                    "shard": state.shard,
                    "rows_in": state.shard_rows_in,
                    "rows_out": state.shard_rows_out,
                }
            )
        boundary = state.done in (0, state.total)
        if boundary or time.monotonic() - self._written >= self.interval:
            self.write()

    def snapshot(self) -> dict[str, Any]:
        """The progress as the API shows it: every stage seen so far, in order."""
        stages = [
            {**entry, "shards": sorted(entry["shards"], key=lambda shard: shard["shard"])}
            for _, entry in sorted(self.stages.items())
        ]
        return {"stages": stages, "updated_at": utcnow().isoformat()}

    def write(self) -> None:
        with session_scope(self.settings) as session:
            run = session.get(CurationRun, self.run_id)
            if run is not None and run.status == "running":
                run.report = {"progress": self.snapshot()}
                session.commit()
        self._written = time.monotonic()


def _curate_and_publish(
    session: Session,
    store: ObjectStore,
    run_id: str,
    work_root: Path,
    progress: ProgressRecorder | None = None,
) -> None:
    run = session.get(CurationRun, run_id)
    assert run is not None
    dataset = session.get(Dataset, run.dataset_id)
    contributor = session.get(Organization, run.organization_id)
    assert dataset is not None and contributor is not None
    uploads = [session.get(Upload, upload_id) for upload_id in run.upload_ids]
    # Each upload's rows carry the organisation that uploaded it (co-owners pool their rows).
    contributors: dict[str, Organization] = {}
    for upload in uploads:
        assert upload is not None
        if upload.organization_id not in contributors:
            organization = session.get(Organization, upload.organization_id)
            assert organization is not None
            contributors[upload.organization_id] = organization
    version_id = "dv_" + run.id.removeprefix("cur_")
    prefix = f"datasets/{dataset.id}/versions/{version_id}"
    session.commit()  # end the read transaction: the work below holds no database lock

    with tempfile.TemporaryDirectory(prefix="aidx-curation-") as scratch:
        scratch_dir = Path(scratch)
        inputs = []
        for index, upload in enumerate(uploads):
            assert upload is not None
            local = scratch_dir / "in" / f"{index:05d}-{upload.filename}"
            local.parent.mkdir(parents=True, exist_ok=True)
            store.download_to(upload.object_key, local)
            inputs.append(
                InputFile(
                    path=local,
                    format=upload.format,
                    source_name=upload.filename,
                    contributor=contributors[upload.organization_id].name,
                )
            )
        # Shard markers live under AIDX_HOME, so a redelivered run (a lost worker) redoes
        # only the shards that were not finished.
        work_dir = work_root / run.id
        result = run_local(
            inputs, scratch_dir / "out", recipe=run.recipe, work_dir=work_dir, progress=progress
        )
        quality = quality_report(result, scratch_dir / "out")
        contributions = contributions_from_shards(
            [scratch_dir / "out" / shard.path for shard in result.shards],
            {organization.name: organization.id for organization in contributors.values()},
        )
        files: list[dict[str, Any]] = []
        for shard in result.shards:
            stored = store.put_file(scratch_dir / "out" / shard.path, key=f"{prefix}/{shard.path}")
            if stored.sha256 != shard.sha256:
                raise CurationError(f"shard {shard.path} changed while it was stored")
            files.append(
                {
                    "path": shard.path,
                    "key": stored.key,
                    "sha256": shard.sha256,
                    "num_bytes": shard.num_bytes,
                    "num_rows": shard.num_rows,
                }
            )
        report = dict(result.report)
        report["quality"] = quality
        report["quality_scores"] = {
            name: score for name, score in quality["quality_scores"].items() if score is not None
        }
        if quality["facts"]["pii_counts"] is not None:
            report["pii_counts"] = quality["facts"]["pii_counts"]
        if result.exclusions is not None:
            excluded = store.put_file(
                scratch_dir / "out" / result.exclusions.path,
                key=f"{prefix}/{result.exclusions.path}",
            )
            report["exclusions"] = {
                "key": excluded.key,
                "sha256": excluded.sha256,
                "num_rows": result.exclusions.num_rows,
            }

    number = (
        session.scalar(
            select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == dataset.id)
        )
        or 0
    ) + 1
    card = card_from_curation(
        dataset_id=dataset.id,
        version_id=version_id,
        name=dataset.name,
        description=dataset.description,
        license=dataset.license,
        provider=contributor.name,
        schema=result.schema,
        files=[{k: file[k] for k in ("path", "sha256", "num_bytes", "num_rows")} for file in files],
        content_hash=result.content_hash,
        language=dataset.language or None,
        version_number=number,
        date_published=utcnow().date(),
        **{**facts_from_report(report), "steps": result.steps},
    )
    card_key = f"{prefix}/README.md"
    store.put_bytes(render_readme(card).encode(), key=card_key, content_type="text/markdown")
    store.put_bytes(
        render_croissant(card).encode(),
        key=f"{prefix}/croissant.json",
        content_type="application/ld+json",
    )

    version = DatasetVersion(
        id=version_id,
        dataset_id=dataset.id,
        number=number,
        content_hash=result.content_hash,
        num_rows=result.num_rows,
        num_bytes=sum(file["num_bytes"] for file in files),
        features=[{"name": field.name, "type": str(field.type)} for field in result.schema],
        files=files,
        report=report,
        card=card.model_dump(mode="json"),
        card_key=card_key,
        contributions=contributions,  # revenue shares follow the rows' provenance
        curation_run_id=run.id,
        created_at=utcnow(),
    )
    session.merge(version)
    finished = {**report, "progress": progress.snapshot()} if progress is not None else report
    run.status, run.version_id, run.report, run.finished_at = (
        "succeeded",
        version_id,
        finished,
        utcnow(),
    )
    audit.record(
        session,
        actor_organization_id=None,
        action="dataset_version.published",
        object_type="dataset_version",
        object_id=version_id,
        content_hash=result.content_hash,
        num_rows=result.num_rows,
    )
    session.commit()
    shutil.rmtree(work_dir, ignore_errors=True)

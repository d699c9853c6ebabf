"""Celery tasks of curation: thin wrappers that reload state by id and call the service.

The shard, global-stage and merge tasks are what :class:`~curation.executors.CeleryExecutor`
sends. They name a run staged in the object store by its key prefix, so a worker on any machine
can do them in a scratch folder of its own (``AIDX_HOME/curation-scratch``); each checks the
completion marker in the store first, so a redelivered task does no work twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.errors import CurationError
from curation.executors import STAGED_PREFIX, staged_global, staged_merge, staged_shard
from curation.service import execute_run
from infra.config import get_settings
from infra.queue import task
from infra.storage import ObjectStore, get_object_store, validate_key


@task(name="curation.run", queue="curation", idempotent=True)
def run_curation(run_id: str) -> str:
    return execute_run(run_id)


@task(name="curation.shard", queue="curation", idempotent=True)
def curate_shard(prefix: str, stage: int, shard: int) -> dict[str, Any]:
    store, scratch = _staging(prefix)
    return staged_shard(store, prefix, stage, shard, scratch_root=scratch)


@task(name="curation.global_stage", queue="curation", idempotent=True)
def curate_global_stage(prefix: str, stage: int) -> dict[str, Any]:
    store, scratch = _staging(prefix)
    return staged_global(store, prefix, stage, scratch_root=scratch)


@task(name="curation.merge", queue="curation", idempotent=True)
def merge_shards(prefix: str) -> dict[str, Any]:
    store, scratch = _staging(prefix)
    return staged_merge(store, prefix, scratch_root=scratch)


def _staging(prefix: str) -> tuple[ObjectStore, Path]:
    """This worker's object store and scratch folder, after checking the run's key prefix."""
    if not isinstance(prefix, str) or not prefix.startswith(f"{STAGED_PREFIX}/"):
        raise CurationError(f"a staged run's prefix starts with {STAGED_PREFIX}/, not {prefix!r}")
    validate_key(prefix)
    settings = get_settings()
    return get_object_store(settings), settings.home_dir / "curation-scratch"

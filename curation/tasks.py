"""Celery tasks of curation: thin wrappers that reload state by id and call the service.

The shard, global-stage and merge tasks are what :class:`~curation.executors.CeleryExecutor`
sends; each checks its completion marker first, so a redelivered task does no work twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.executors import merge_task, run_global, run_shard
from curation.service import execute_run
from infra.queue import task


@task(name="curation.run", queue="curation", idempotent=True)
def run_curation(run_id: str) -> str:
    return execute_run(run_id)


@task(name="curation.shard", queue="curation", idempotent=True)
def curate_shard(work_dir: str, stage: int, shard: int) -> dict[str, Any]:
    return run_shard(Path(work_dir), stage, shard)


@task(name="curation.global_stage", queue="curation", idempotent=True)
def curate_global_stage(work_dir: str, stage: int) -> dict[str, Any]:
    return run_global(Path(work_dir), stage)


@task(name="curation.merge", queue="curation", idempotent=True)
def merge_shards(work_dir: str, out_dir: str) -> dict[str, Any]:
    return merge_task(Path(work_dir), Path(out_dir))

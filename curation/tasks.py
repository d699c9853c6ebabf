"""Celery tasks of curation: thin wrappers that reload state by id and call the service."""

from __future__ import annotations

from curation.service import execute_run
from infra.queue import task


@task(name="curation.run", queue="curation", idempotent=True)
def run_curation(run_id: str) -> str:
    return execute_run(run_id)

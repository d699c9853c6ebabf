"""Celery tasks of governed training: thin, reloading the job by id."""

from __future__ import annotations

from infra.queue import task
from training_jobs.service import execute_job


@task(name="training.run", queue="training", idempotent=False)
def run_training_job(job_id: str) -> str:
    return execute_job(job_id)

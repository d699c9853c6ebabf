"""Celery tasks of governed training: thin, reloading the job by id.

`training.run` keeps ``acks_late`` off: a run is made safe to repeat by the job's lease, not by
the broker (see `service`). Every worker also runs the reaper of lost jobs in its main process:
once when it is ready and then every half lease, so a job whose worker died resumes on another
one within about a lease and a half.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from infra.config import get_settings
from infra.queue import task
from training_jobs.service import execute_job, reap_lost_jobs

log = logging.getLogger(__name__)
_reaper_stop = threading.Event()


@task(name="training.run", queue="training", idempotent=False)
def run_training_job(job_id: str) -> str:
    return execute_job(job_id)


def _reap_forever() -> None:
    settings = get_settings()
    while True:
        try:
            requeued = reap_lost_jobs(settings)
            if requeued:
                log.warning("requeued training jobs of lost workers: %s", ", ".join(requeued))
        except Exception:  # the database may be briefly away; try again next round
            log.exception("reaping lost training jobs failed")
        if _reaper_stop.wait(settings.training_lease_seconds / 2):
            return


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_reaper(**_kwargs: Any) -> None:
    _reaper_stop.clear()
    threading.Thread(target=_reap_forever, name="training-reaper", daemon=True).start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_reaper(**_kwargs: Any) -> None:
    _reaper_stop.set()

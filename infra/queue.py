"""The Celery app: queues ``curation`` and ``training``, settings for long, idempotent jobs.

The broker and result backend come from :class:`infra.config.Settings`: SQLite through kombu's
SQLAlchemy transport when nothing is configured (polled every 0.1 s), Redis or RabbitMQ in
production. The app is configured lazily, on first use, so importing this module connects to
nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from celery import Celery, Task, bootsteps
from celery.signals import worker_process_init
from kombu.entity import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from infra.config import Settings, get_settings

log = logging.getLogger(__name__)

QUEUES = ("curation", "training")
TASK_MODULES = ("curation.tasks", "training_jobs.tasks")

F = TypeVar("F", bound=Callable[..., Any])


class _SQLChannel(kombu_sqlalchemy.Channel):
    """kombu's SQL channel hands every transport option to ``create_engine``; keep ours out."""

    def _engine_from_config(self) -> Any:
        from sqlalchemy import create_engine, event

        url = self.connection.client.hostname
        engine = create_engine(url, connect_args={"timeout": 30} if "sqlite" in url else {})
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SQLTransport(kombu_sqlalchemy.Transport):
    """The embedded broker: kombu's SQLAlchemy transport with a working ``polling_interval``."""

    Channel = _SQLChannel


TRANSPORT_ALIASES["sqla"] = TRANSPORT_ALIASES["sqlalchemy"] = "infra.queue:SQLTransport"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; the same code path for every broker."""
    transport_options: dict[str, Any] = {
        "polling_interval": settings.broker_polling_interval,
        # Redis re-delivers an unacknowledged task after this; keep it above the longest job.
        "visibility_timeout": settings.longest_job_seconds + 3600,
    }
    config: dict[str, Any] = {
        "broker_url": settings.resolved_broker_url,
        "result_backend": settings.resolved_result_backend,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_queues": [
            Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
            for name in QUEUES
        ],
        "task_default_queue": "curation",
        "task_routes": {f"{name}.*": {"queue": name, "routing_key": name} for name in QUEUES},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_track_started": True,
        "task_acks_late": False,  # opted into per task, only where the task is idempotent
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 50,
        "result_expires": 7 * 24 * 3600,
        "task_always_eager": settings.task_always_eager,
        "task_eager_propagates": True,
        "worker_hijack_root_logger": False,
    }
    if settings.broker_key_prefix:  # Redis only; other transports ignore it
        transport_options["global_keyprefix"] = settings.broker_key_prefix
        config["result_backend_transport_options"] = {
            "global_keyprefix": settings.broker_key_prefix
        }
    if settings.uses_embedded_broker:
        settings.home_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates files, not folders
        # kombu's SQL transport has no fan-out exchange, so remote control is off there.
        config["worker_enable_remote_control"] = False
        config["worker_send_task_events"] = False
        config["result_backend_transport_options"] = {}
    return config


class ConsumeOnlyWithAFreeProcess(bootsteps.StartStopStep):  # type: ignore[misc]
    """Fetch a task only when a pool process is free to run it, on the transports whose channel
    keeps the prefetch window in the worker (kombu's virtual ones: the SQL broker and Redis).

    Otherwise a worker fetches the next task as soon as it acknowledges the one it starts
    (``training.run`` is acknowledged early) and holds it until that one ends: a training job
    waits hours for a busy worker while others are idle. On the SQL broker the busy worker also
    queried the database every ``polling_interval`` for it: 3.8 % of a core beside a training
    job, on the two cores that the job uses. Celery's ``worker_disable_prefetch`` does the same
    for Redis only. Over AMQP (RabbitMQ) the broker keeps the window, and this step does nothing.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        from celery.worker import state
        from kombu.transport.virtual import QoS

        qos = getattr(consumer.task_consumer.channel, "qos", None)
        if not isinstance(qos, QoS):
            return
        window_open: Callable[[], bool] = qos.can_consume

        def can_consume() -> bool:
            processes = (
                getattr(consumer.controller, "max_concurrency", None) or consumer.pool.num_processes
            )
            # Requests stay reserved until they end, so this counts the running ones too.
            return len(state.reserved_requests) < processes and bool(window_open())

        qos.can_consume = can_consume  # type: ignore[method-assign]  # this channel's QoS only


app = Celery("aidx", include=list(TASK_MODULES), set_as_current=True)
# Evaluated when the configuration is first needed, not at import.
app.add_defaults(lambda: celery_config(get_settings()))
app.steps["consumer"].add(ConsumeOnlyWithAFreeProcess)


def task(*, name: str, queue: str, idempotent: bool, **options: Any) -> Callable[[F], F]:
    """The house task decorator: an explicit name, a queue, acks_late only when idempotent.

    Routing is by name (``task_routes``), so the name must start with the queue's name.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(QUEUES)}")
    if not name.startswith(f"{queue}."):
        raise ValueError(f"task {name!r} must be named '{queue}.<name>' to be routed to {queue}")

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def logged(*args: Any, **kwargs: Any) -> Any:
            log.info("task %s started args=%s", name, args)
            result = func(*args, **kwargs)
            log.info("task %s finished result=%s", name, result)
            return result

        registered: Task[Any, Any] = app.task(
            name=name, acks_late=idempotent, bind=False, **options
        )(logged)
        return cast(F, registered)

    return decorate


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _fresh_connections_after_fork(**_kwargs: Any) -> None:
    from infra.db import dispose_engines

    dispose_engines(close=False)


def enqueue(name: str, *args: Any) -> str:
    """Send a task by name (the API does not import task code); returns the Celery task id."""
    result = app.send_task(name, args=list(args))
    return str(result.id)

"""``infra.queue``: routing to the two queues, settings for long jobs, the house task decorator.

Routing is checked with Celery's own router and, for delivery, with kombu's in-memory transport,
which implements direct exchanges and bindings like a real broker.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from infra.config import Settings
from infra.queue import QUEUES, celery_config, task
from infra.queue import app as queue_app


def make_app(settings: Settings) -> Celery:
    app = Celery(f"probe-{secrets.token_hex(4)}", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def memory_app(tmp_path: Path) -> Iterator[Celery]:
    settings = Settings(home=tmp_path, broker_url="memory://", result_backend="cache+memory://")
    app = make_app(settings)
    yield app
    app.close()


def test_there_are_exactly_the_curation_and_training_queues(embedded: Settings) -> None:
    app = make_app(embedded)

    assert set(app.amqp.queues) == {"curation", "training"} == set(QUEUES)


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("curation.run", "curation"),
        ("curation.anything_else", "curation"),
        ("training.run", "training"),
        ("training.probe", "training"),
    ],
)
def test_tasks_route_to_the_queue_named_by_their_prefix(
    embedded: Settings, task_name: str, queue: str
) -> None:
    route = make_app(embedded).amqp.router.route({}, task_name)

    assert route["queue"].name == queue
    assert route["routing_key"] == queue


def test_a_task_without_a_known_prefix_goes_to_the_default_curation_queue(
    embedded: Settings,
) -> None:
    route = make_app(embedded).amqp.router.route({}, "maintenance.cleanup")

    assert route["queue"].name == "curation"


def test_each_queue_has_its_own_exchange_and_routing_key(embedded: Settings) -> None:
    queues = make_app(embedded).amqp.queues

    for name in QUEUES:
        assert queues[name].exchange.name == name
        assert queues[name].exchange.type == "direct"
        assert queues[name].routing_key == name
    assert queues["curation"].exchange.name != queues["training"].exchange.name


def _drain(app: Celery, connection: Any, queue_name: str) -> list[str]:
    queue = app.amqp.queues[queue_name].bind(connection.default_channel)
    names = []
    while (message := queue.get(no_ack=True)) is not None:
        names.append(message.headers["task"])
    return names


def test_a_training_task_is_delivered_to_the_training_queue_only(memory_app: Celery) -> None:
    with memory_app.connection_for_write() as connection:
        for queue in memory_app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()

        memory_app.send_task("training.probe", args=[1], connection=connection)
        memory_app.send_task("curation.probe", args=[2], connection=connection)
        memory_app.send_task("training.run", args=["job_1"], connection=connection)

        assert _drain(memory_app, connection, "curation") == ["curation.probe"]
        assert _drain(memory_app, connection, "training") == ["training.probe", "training.run"]


def test_one_task_is_prefetched_at_a_time(embedded: Settings) -> None:
    assert celery_config(embedded)["worker_prefetch_multiplier"] == 1
    assert make_app(embedded).conf.worker_prefetch_multiplier == 1


@pytest.mark.parametrize("longest", [60, 6 * 3600, 48 * 3600])
def test_visibility_timeout_outlasts_the_longest_job(tmp_path: Path, longest: int) -> None:
    for broker in (None, "redis://127.0.0.1:6379/0"):
        settings = Settings(home=tmp_path, longest_job_seconds=longest, broker_url=broker)

        options = celery_config(settings)["broker_transport_options"]

        assert options["visibility_timeout"] > longest


def test_polling_interval_reaches_the_transport(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, broker_polling_interval=0.25)

    assert celery_config(settings)["broker_transport_options"]["polling_interval"] == 0.25


def test_embedded_broker_disables_remote_control_and_events(embedded: Settings) -> None:
    config = celery_config(embedded)

    assert config["broker_url"] == embedded.resolved_broker_url
    assert config["broker_url"].startswith("sqla+sqlite:///")
    assert config["worker_enable_remote_control"] is False
    assert config["worker_send_task_events"] is False


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:6379/0", "amqp://guest:guest@host//"])
def test_a_real_broker_keeps_remote_control(tmp_path: Path, broker: str) -> None:
    settings = Settings(home=tmp_path, broker_url=broker)

    config = celery_config(settings)

    assert config["broker_url"] == broker
    assert "worker_enable_remote_control" not in config
    assert make_app(settings).conf.worker_enable_remote_control is True


def test_tasks_exchange_json_only_and_are_not_acked_early_by_default(embedded: Settings) -> None:
    config = celery_config(embedded)

    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["accept_content"] == ["json"]
    assert config["task_acks_late"] is False
    assert config["task_reject_on_worker_lost"] is True
    assert config["result_backend"] == embedded.resolved_result_backend


def test_embedded_broker_url_selects_the_house_sql_transport(embedded: Settings) -> None:
    from kombu.transport import resolve_transport

    from infra.queue import SQLTransport

    app = make_app(embedded)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, SQLTransport)
    assert resolve_transport("sqla") is SQLTransport


# The house task decorator ------------------------------------------------------------------


def test_task_decorator_refuses_an_unknown_queue() -> None:
    with pytest.raises(ValueError, match=r"unknown queue 'nope'; known: curation, training"):
        task(name="curation.never_registered", queue="nope", idempotent=True)


def test_task_decorator_refuses_a_name_its_queue_would_not_route() -> None:
    with pytest.raises(ValueError, match=r"must be named 'training.<name>'"):
        task(name="curation.misrouted", queue="training", idempotent=False)


def routed_queue(name: str) -> str:
    router = make_app(Settings()).amqp.router
    return str(router.route({}, name)["queue"].name)


def test_task_decorator_sets_acks_late_only_when_idempotent() -> None:
    suffix = secrets.token_hex(4)

    @task(name=f"curation.idempotent_{suffix}", queue="curation", idempotent=True)
    def idempotent(value: int) -> int:
        return value + 1

    @task(name=f"training.once_{suffix}", queue="training", idempotent=False)
    def once(value: int) -> int:
        return value * 2

    assert idempotent.acks_late is True  # type: ignore[attr-defined]
    assert once.acks_late is False  # type: ignore[attr-defined]
    assert idempotent.name == f"curation.idempotent_{suffix}"  # type: ignore[attr-defined]
    assert routed_queue(idempotent.name) == "curation"  # type: ignore[attr-defined]
    assert routed_queue(once.name) == "training"  # type: ignore[attr-defined]
    # The wrapper still runs the function and keeps its name.
    assert idempotent(1) == 2
    assert once(3) == 6
    assert once.__name__ == "once"


def test_the_shipped_tasks_are_on_their_queues_with_the_right_acks() -> None:
    from curation.tasks import run_curation
    from training_jobs.tasks import run_training_job

    assert run_curation.name == "curation.run"  # type: ignore[attr-defined]
    assert routed_queue(run_curation.name) == "curation"  # type: ignore[attr-defined]
    assert run_training_job.name == "training.run"  # type: ignore[attr-defined]
    assert routed_queue(run_training_job.name) == "training"  # type: ignore[attr-defined]
    assert run_curation.acks_late is True  # type: ignore[attr-defined]
    assert run_training_job.acks_late is False  # type: ignore[attr-defined]


def test_registering_a_house_task_raises_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        queue_app.finalize(auto=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @task(name=f"curation.quiet_{secrets.token_hex(4)}", queue="curation", idempotent=True)
        def quiet() -> None:
            return None

        assert quiet.name.startswith("curation.quiet_")  # type: ignore[attr-defined]

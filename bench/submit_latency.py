"""How long a submitted training job waits before it runs, on a warm worker.

A running exchange (``aidx up``, embedded backend, one worker) and a buyer licensed to train on a
curated GSM8K version (`train_overhead.licensed_exchange`). One untimed job warms the worker (its
imports, the model files in the page cache); then `--jobs` jobs are submitted one at a time, each
at a random moment in the broker's polling cycle. For each: the time from just before the
``POST /v1/training-jobs`` to the job's ``started_at`` (set by the worker when the job turns
``running``), and to the moment the client, polling every `--poll-ms`, first sees it running
(or past it). In between the worker takes the job's lease, checks the entitlement again, reads
the version from the object store and validates every row with the model's tokenizer, so the
figure grows with the version's size (`--rows`). Each job is cancelled once it runs, and the next
is submitted after it has stopped. Goal: under 2 s.

    .venv/bin/python bench/submit_latency.py [--model smollm2|tiny] [--jobs 20] [--rows 400]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script below

from train_overhead import (
    FINAL,
    SMALL_RELEASE_POLICY,
    Trade,
    _time,
    cpu_model,
    licensed_exchange,
    load_average,
    log,
)

WAITING = ("validating_files", "queued")  # before a worker runs it; any other status is later
GOAL_SECONDS = 2.0


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def job_params(trade: Trade, steps: int) -> dict[str, Any]:
    params: dict[str, Any] = {"max_steps": steps, "batch_size": 2, "max_seq_len": 128}
    if trade.base_model:
        params["base_model"] = trade.base_model
    return params


def submit_and_observe(client: Any, trade: Trade, *, steps: int, poll: float) -> dict[str, float]:
    """Submit one job, time it to ``running``, cancel it and wait until it has stopped."""
    submitted = time.time()
    job = client.submit_training_job(trade.version_id, job_params(trade, steps))
    answered = time.time()
    while job["status"] in WAITING:
        time.sleep(poll)
        job = client.request("GET", f"/v1/training-jobs/{job['id']}")
    observed = time.time()
    if job["started_at"] is None:
        raise SystemExit(f"training job {job['id']} {job['status']} without running: {job}")
    events = client.training_events(job["id"])
    validated = [event for event in events if event["type"] == "validated"]
    if job["status"] not in FINAL:
        client.request("POST", f"/v1/training-jobs/{job['id']}/cancel")
    deadline = time.monotonic() + 600
    while job["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"training job {job['id']} still {job['status']} after a cancel")
        time.sleep(0.2)
        job = client.request("GET", f"/v1/training-jobs/{job['id']}")
    started = _time(job["started_at"])
    return {
        "post": answered - submitted,
        "to_validated": (_time(validated[0]["at"]) - submitted) if validated else float("nan"),
        "to_started_at": started - submitted,
        "observed": observed - submitted,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=400, help="GSM8K rows uploaded")
    parser.add_argument("--poll-ms", type=int, default=20, help="client polling interval")
    parser.add_argument("--steps", type=int, default=1000, help="each job's max_steps")
    args = parser.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')} must be at least {least} (got {getattr(args, name)})"
        for name, least in (("jobs", 2), ("rows", 64), ("poll_ms", 1), ("steps", 1))
        if getattr(args, name) < least
    ]
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> None:
    from marketplace.client import AidxClient

    args = parse_args(argv)
    command = "bench/submit_latency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    poll = args.poll_ms / 1000
    # A short lease makes the worker read a cancel within a second, so the next job starts soon.
    env = {"AIDX_TRAINING_LEASE_SECONDS": "4"}
    rows: list[dict[str, float]] = []
    with (
        licensed_exchange(
            model=args.model, rows=args.rows, release_policy=SMALL_RELEASE_POLICY, env=env
        ) as trade,
        AidxClient(trade.base_url, trade.buyer_key) as client,
    ):
        log("warm-up job (untimed)")
        submit_and_observe(client, trade, steps=args.steps, poll=poll)
        for index in range(args.jobs):
            time.sleep(random.uniform(0.05, 1.05))  # land anywhere in the broker's polling cycle
            rows.append(submit_and_observe(client, trade, steps=args.steps, poll=poll))
            log(f"job {index + 1}/{args.jobs}: started_at {rows[-1]['to_started_at']:.3f} s, "
                f"seen running {rows[-1]['observed']:.3f} s after the POST")  # fmt: skip
    print()
    print(markdown(args, command.strip(), rows, load_before, load_average()))


def markdown(
    args: argparse.Namespace,
    command: str,
    rows: list[dict[str, float]],
    load_before: str,
    load_after: str,
) -> str:
    model = "SmolLM2-135M-Instruct" if args.model == "smollm2" else "tiny Llama (TinyModelSpec)"
    lines = [
        f"## Training job submit to running, warm worker ({dt.date.today().isoformat()})",
        "",
        f"`{command}`; machine: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; embedded backend (`aidx up`: SQLite, SQL broker polled "
        f"every 0.1 s, local object folder, one worker). {args.jobs} jobs one at a time after a "
        f"warm-up job; {model}; a version of {args.rows} GSM8K rows (validated on each run); "
        f"client polling every {args.poll_ms} ms. Load average (1, 5, 15 min) {load_before} "
        f"before, {load_after} after.",
        "",
        f"| seconds after the POST | p50 | p95 | max | p50 / goal ({GOAL_SECONDS:.0f} s) |",
        "|---|---|---|---|---|",
    ]
    for key, name in (
        ("post", "POST answered (gate, hold, commit, enqueue)"),
        ("to_validated", "data validated on the worker (event)"),
        ("to_started_at", "`started_at` (job turns running)"),
        ("observed", "client sees it running"),
    ):
        values = [row[key] for row in rows if row[key] == row[key]]  # without NaN
        if not values:
            continue
        p50 = statistics.median(values)
        lines.append(
            f"| {name} | {p50:.3f} | {percentile(values, 0.95):.3f} | {max(values):.3f} | "
            f"{p50 / GOAL_SECONDS:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

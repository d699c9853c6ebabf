"""How long a queued task waits before a real worker starts it, per broker.

Baseline: the embedded SQLite broker at kombu's default polling interval (1 s). Compared in the
same run: the embedded broker at our 0.1 s, and Redis. Each configuration starts its own worker
process (``celery -A infra.queue worker``) and sends tasks one at a time; the task records when it
started, so the figure is send → start, not including the result's way back.

    .venv/bin/python bench/task_latency.py [--tasks 30] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = textwrap.dedent(
    """
    import time
    from infra.queue import app

    @app.task(name="curation.bench_probe")
    def probe(sent_at):
        return time.time() - sent_at
    """
)
CONFIGS = {
    "embedded, poll 1.0 s (kombu default; baseline)": {"AIDX_BROKER_POLLING_INTERVAL": "1.0"},
    "embedded, poll 0.1 s (aidx default)": {},
    "redis": {
        "AIDX_BROKER_URL": "redis://127.0.0.1:6379/12",
        "AIDX_RESULT_BACKEND": "redis://127.0.0.1:6379/12",
    },
}


def measure(tasks: int) -> list[float]:
    """Run inside a configured environment: start a worker, send tasks, return latencies."""
    from infra.queue import app

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "infra.queue", "worker", "--queues", "curation",
         "--concurrency", "1", "--include", "bench_probe", "--loglevel", "error",
         "--without-mingle", "--without-gossip"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        app.send_task("curation.bench_probe", args=[time.time()]).get(timeout=120)  # warm-up
        latencies = []
        for _ in range(tasks):
            time.sleep(random.uniform(0.05, 1.05))  # land anywhere in the polling cycle
            result = app.send_task("curation.bench_probe", args=[time.time()])
            latencies.append(float(result.get(timeout=60, interval=0.01)))
        return latencies
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def run_config(name: str, overrides: dict[str, str], tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "bench_probe.py").write_text(PROBE)
        env = {**os.environ, "AIDX_HOME": str(Path(scratch) / "home"), **overrides}
        env["PYTHONPATH"] = os.pathsep.join([scratch, str(REPO)])
        output = subprocess.run(
            [sys.executable, __file__, "--measure", str(tasks)],
            env=env, cwd=scratch, capture_output=True, text=True, check=True,
        )  # fmt: skip
    latencies = json.loads(output.stdout.strip().splitlines()[-1])
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": statistics.quantiles(latencies, n=10)[-1] * 1000,
        "max_ms": max(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help="Append the results to this markdown file.")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    results = {name: run_config(name, overrides, args.tasks) for name, overrides in CONFIGS.items()}
    baseline = next(iter(results.values()))["median_ms"]
    lines = [
        f"## Task start latency ({dt.date.today().isoformat()})",
        "",
        f"`bench/task_latency.py --tasks {args.tasks}`; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. Send → task start, "
        "one worker process, tasks sent one at a time.",
        "",
        "| broker | median ms | p90 ms | max ms | median vs baseline |",
        "|---|---|---|---|---|",
    ]
    for name, figures in results.items():
        lines.append(
            f"| {name} | {figures['median_ms']:.0f} | {figures['p90_ms']:.0f} | "
            f"{figures['max_ms']:.0f} | {figures['median_ms'] / baseline:.2f}x |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()

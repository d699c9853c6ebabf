"""Exact dedup docs/s and PII scan MB/s on one core, against the issue's goals.

Exact dedup is timed as the pipeline runs it (content hash of the normalised row, then the
seen-set filter with its exclusion records), side by side with a bare baseline: a Python ``set``
of SHA-256 digests over the same texts. PII is timed as ``redact`` over real text (C4, Wikipedia,
GSM8K) and over the identity-dense fixture. Run in one process, pinned to one core if possible:

    taskset -c 0 .venv/bin/python bench/curation_throughput.py --docs 200000 \
        --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from curation.steps.dedup import ExactDedup
from curation.steps.pii import redact
from curation.steps.provenance import AddProvenance, ContentHash

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"
GOAL_DEDUP_DOCS_PER_S = 100_000
GOAL_PII_MB_PER_S = 20.0


def real_texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in (DATA / "c4_demo.jsonl").open()]
    texts += [line for line in (DATA / "wiki_demo.txt").read_text().splitlines() if line]
    for name in ("gsm8k_train.jsonl", "gsm8k_test.jsonl"):
        texts += [
            (row := json.loads(line))["question"] + "\n" + row["answer"]
            for line in (DATA / name).open()
        ]
    return texts


def identity_texts() -> list[str]:
    with (DATA / "fakenamegenerator_100.csv").open(encoding="utf-8-sig") as handle:
        return [
            " ".join(f"{key}: {value}" for key, value in row.items())
            for row in csv.DictReader(handle)
        ]


def corpus(texts: list[str], docs: int) -> list[str]:
    """``docs`` documents: the texts, then repeats of them (about a third duplicates)."""
    unique = max(1, min(len(texts), docs * 2 // 3))
    return [texts[i % unique] if i < unique else texts[(i * 7919) % unique] for i in range(docs)]


def batches(documents: list[str], size: int = 10_000) -> Iterator[pa.RecordBatch]:
    provenance = AddProvenance(contributor="bench", source_file="corpus")
    for start in range(0, len(documents), size):
        yield from provenance.run(
            iter([pa.record_batch({"text": documents[start : start + size]})])
        )


def time_exact_dedup(documents: list[str]) -> tuple[float, int]:
    prepared = list(batches(documents))  # reading and provenance are not part of dedup
    started = time.perf_counter()
    dedup = ExactDedup()
    kept = sum(batch.num_rows for batch in dedup.run(ContentHash().run(iter(prepared))))
    return time.perf_counter() - started, kept


def time_baseline(documents: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    seen: set[bytes] = set()
    for text in documents:
        seen.add(hashlib.sha256(text.encode()).digest())
    return time.perf_counter() - started, len(seen)


def time_pii(texts: list[str], repeat: int) -> float:
    size = sum(len(text.encode()) for text in texts) * repeat
    started = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            redact(text)
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    texts = real_texts()
    documents = corpus(texts, args.docs)
    ours_s, kept = time_exact_dedup(documents)
    base_s, unique = time_baseline(documents)
    assert kept == unique, (kept, unique)
    pii_real = time_pii(texts, repeat=1)
    pii_ids = time_pii(identity_texts(), repeat=20)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("exact dedup (content hash + filter + exclusions), docs/s", args.docs / ours_s,
         GOAL_DEDUP_DOCS_PER_S, args.docs / base_s),
        ("PII redact, real text (C4, Wikipedia, GSM8K), MB/s", pii_real, GOAL_PII_MB_PER_S, None),
        ("PII redact, identity-dense fixture, MB/s", pii_ids, GOAL_PII_MB_PER_S, None),
    ]  # fmt: skip
    lines = [
        f"## Curation throughput, one process ({dt.date.today().isoformat()})",
        "",
        f"`bench/curation_throughput.py --docs {args.docs}`; machine: {platform.machine()}, "
        f"{cores} core(s) available to the process, Python {platform.python_version()}. "
        f"{args.docs:,} documents ({unique:,} unique) from the fixture corpora.",
        "",
        "| measure | ours | goal | ours / goal | baseline (set of sha256) | ours / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name, value, goal, baseline in rows:
        base = f"{baseline:,.0f}" if baseline else ""
        ratio = f"{value / baseline:.2f}" if baseline else ""
        lines.append(
            f"| {name} | {value:,.1f} | {goal:,} | {value / goal:.2f} | {base} | {ratio} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()

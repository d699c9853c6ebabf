"""Near-dedup accuracy on planted duplicates: pairwise precision, recall and F1, side by side.

The corpus is :mod:`bench.corpus`'s (real English prose; a fifth of the documents are copies of
others with 5-30 % of their words edited, half of them with their sentences reordered; no exact
copies, so every found pair is a near duplicate). Each configuration hashes the same texts with
:class:`~curation.steps.near_dedup.MinHasher` and clusters them with
:func:`~curation.steps.near_dedup.find_near_duplicates`, as the ``near_dedup`` step does. A pair
of documents is *predicted* when both land in one cluster and *true* when both come from one
planted cluster; precision and recall are over those pairs, so a chain that glues unrelated
clusters together costs precision. Recall is also given per edit-rate band, and the time each
configuration takes (CPU seconds of signatures and clustering, one process) for its throughput
cost.

    .venv/bin/python bench/near_dedup_accuracy.py --docs 200000

``--config NAME=NGRAM:BANDSxROWS[@MIN_SIMILARITY]`` adds a configuration (repeatable); by default
the project's default and datatrove's (5-grams, 14 bands of 8 rows, every candidate joined) run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import Corpus, build_corpus

from curation.steps.near_dedup import (
    DATATROVE_CONFIG,
    DEFAULT_MIN_SIMILARITY,
    MinHashConfig,
    MinHasher,
    ShardSignatures,
    find_near_duplicates,
)

BATCH = 10_000
GOAL_F1 = 0.95
_CONFIG = re.compile(r"^(?P<name>[^=]+)=(?P<n>\d+):(?P<b>\d+)x(?P<r>\d+)(@(?P<s>[0-9.]+))?$")


@dataclass(frozen=True)
class Candidate:
    """A configuration to measure: MinHash settings and the optional candidate check."""

    name: str
    config: MinHashConfig
    min_similarity: float | None

    def describe(self) -> str:
        c = self.config
        check = f", pairs checked at ≥ {self.min_similarity}" if self.min_similarity else ""
        return f"{c.ngram}-gram, {c.bands}x{c.rows_per_band}{check}"


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    predicted_pairs: int
    true_pairs: int
    found_pairs: int
    recall_by_edits: dict[str, float]
    largest_cluster: int
    seconds: float


def default_candidates() -> list[Candidate]:
    return [
        Candidate("aidx default", MinHashConfig(), DEFAULT_MIN_SIMILARITY),
        Candidate("datatrove default", DATATROVE_CONFIG, None),
    ]


def parse_candidate(text: str) -> Candidate:
    match = _CONFIG.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"--config {text!r}: expected NAME=NGRAM:BANDSxROWS[@MIN_SIMILARITY], "
            "e.g. 'trigrams=3:40x3@0.3'"
        )
    try:
        config = MinHashConfig(
            ngram=int(match["n"]), bands=int(match["b"]), rows_per_band=int(match["r"])
        )
    except Exception as error:
        raise argparse.ArgumentTypeError(f"--config {text!r}: {error}") from None
    similarity = float(match["s"]) if match["s"] else None
    if similarity is not None and not 0 < similarity <= 1:
        raise argparse.ArgumentTypeError(f"--config {text!r}: similarity must be in (0, 1]")
    return Candidate(match["name"].strip(), config, similarity)


def pairs_within(labels: np.ndarray) -> int:
    _, counts = np.unique(labels, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def predicted_clusters(corpus: Corpus, candidate: Candidate) -> tuple[np.ndarray, float]:
    """Each document's cluster (the row index of its cluster's first), and the CPU seconds."""
    hasher = MinHasher(candidate.config)
    keep = candidate.min_similarity is not None
    started = time.process_time()
    parts = []
    for start in range(0, len(corpus), BATCH):
        texts = pa.array(corpus.texts[start : start + BATCH], pa.string())
        ids = [str(row) for row in range(start, start + len(texts))]
        parts.append(hasher.shard_signatures(texts, ids, keep_signatures=keep))
        print(
            f"\r  {candidate.name}: signatures {start + len(texts):,}/{len(corpus):,}",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(f"\r  {candidate.name}: clustering{' ' * 30}", end="", file=sys.stderr, flush=True)
    found = find_near_duplicates(
        [ShardSignatures.concat(parts)], min_similarity=candidate.min_similarity
    )
    seconds = time.process_time() - started
    print(f"\r  {candidate.name}: done in {seconds:.1f} CPU s{' ' * 20}", file=sys.stderr)
    labels = np.arange(len(corpus), dtype=np.int64)
    for (_, row), kept in found.drops.items():
        labels[row] = int(kept)
    return labels, seconds


def score(corpus: Corpus, labels: np.ndarray, seconds: float) -> Scores:
    truth = corpus.clusters
    joint = labels * (int(truth.max()) + 1) + truth
    found = pairs_within(joint)
    predicted = pairs_within(labels)
    true = pairs_within(truth)
    precision = found / predicted if predicted else 1.0
    recall = found / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # Recall per edit-rate band: is each near copy in its original's predicted cluster?
    original_label = {
        int(cluster): int(label)
        for cluster, label, kind in zip(truth, labels, corpus.kinds, strict=True)
        if kind == "original"
    }
    by_edits: dict[str, float] = {}
    for low, high in ((0.05, 0.10), (0.10, 0.20), (0.20, 0.30)):
        rows = [
            row
            for row, kind in enumerate(corpus.kinds)
            if kind == "near" and low <= corpus.edit_rates[row] < high + 1e-9
        ]
        if rows:
            hits = sum(original_label[int(truth[row])] == int(labels[row]) for row in rows)
            by_edits[f"{low:.0%}-{high:.0%}"] = hits / len(rows)
    _, sizes = np.unique(labels, return_counts=True)
    return Scores(
        precision, recall, f1, predicted, true, found, by_edits, int(sizes.max()), seconds
    )


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def invocation(script: str, args: Sequence[str]) -> str:
    """The command line as run, with the cores it was pinned to when it was pinned."""
    cores = sorted(os.sched_getaffinity(0))
    pinned = ""
    if len(cores) < (os.cpu_count() or 1):
        pinned = f"taskset -c {','.join(map(str, cores))} "
    return f"{pinned}.venv/bin/python {script} {' '.join(args)}".strip()


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def markdown(
    corpus: Corpus,
    results: Sequence[tuple[Candidate, Scores]],
    command: str,
    loads: tuple[str, str],
) -> str:
    bands = list(results[0][1].recall_by_edits)
    lines = [
        "## Near-dedup accuracy on planted duplicates",
        "",
        f"{len(corpus):,} documents from `bench/corpus.py` (real English prose; "
        f"{sum(kind == 'near' for kind in corpus.kinds):,} planted near copies with 5-30 % of "
        "words edited, half also with sentences reordered); pairwise precision, recall and F1 "
        f"over {results[0][1].true_pairs:,} planted duplicate pairs. Goal: F1 ≥ {GOAL_F1}.",
        "",
        "| configuration | shingles, LSH | precision | recall | F1 | "
        + " | ".join(f"recall at {band} edits" for band in bands)
        + " | largest cluster | CPU s (1 process) | CPU time vs datatrove config |",
        "|---|---|---|---|---|" + "---|" * len(bands) + "---|---|---|",
    ]
    reference = next(
        (scores.seconds for candidate, scores in results if candidate.config == DATATROVE_CONFIG),
        results[-1][1].seconds,
    )
    for candidate, scores in results:
        goal = " ✓" if scores.f1 >= GOAL_F1 else ""
        lines.append(
            f"| {candidate.name} | {candidate.describe()} | {scores.precision:.4f} | "
            f"{scores.recall:.4f} | {scores.f1:.4f}{goal} | "
            + " | ".join(f"{scores.recall_by_edits[band]:.3f}" for band in bands)
            + f" | {scores.largest_cluster} | {scores.seconds:.1f} | "
            f"{scores.seconds / reference:.2f}x |"
        )
    lines += [
        "",
        f"Machine: {machine()}; date {dt.date.today().isoformat()}; load average before "
        f"{loads[0]}, after {loads[1]}.",
        "",
        "```sh",
        command,
        "```",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents (default 200000)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument(
        "--config",
        type=parse_candidate,
        action="append",
        default=None,
        help="NAME=NGRAM:BANDSxROWS[@MIN_SIMILARITY]; repeatable (default: ours and datatrove's)",
    )
    args = parser.parse_args(argv)
    command = invocation("bench/near_dedup_accuracy.py", sys.argv[1:] if argv is None else argv)
    before = load()
    print(f"building {args.docs:,} documents ...", file=sys.stderr)
    corpus = build_corpus(args.docs, seed=args.seed, exact_share=0.0, progress=True)
    results = []
    for candidate in args.config or default_candidates():
        labels, seconds = predicted_clusters(corpus, candidate)
        results.append((candidate, score(corpus, labels, seconds)))
    print(markdown(corpus, results, command, (before, load())))


if __name__ == "__main__":
    main()

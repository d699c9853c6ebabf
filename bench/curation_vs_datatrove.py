"""The same curation recipe through aidx and through datatrove, on one core each: docs/s and ratio.

The recipe is Gopher repetition and quality, C4 (document rules and line cleaning), exact dedup,
then MinHash near dedup with datatrove's configuration on both sides (5-grams, 14 bands of 8
rows, every candidate pair joined). The corpus is :mod:`bench.corpus`'s: real English prose with
planted near copies (5-30 % of words edited, half reordered) and exact copies, written once as
JSONL that both sides read. Ours runs as ``aidx curate`` does (``LocalExecutor`` with one process:
shard stage, global exact and near dedup, merge into Parquet); datatrove runs its
``LocalPipelineExecutor`` with one task and one worker through its stages: filters and JSONL
writer; exact dedup signature, finder and filter; MinHash signature, buckets, clusters and
filter. Docs/s per core is input documents over the process's CPU seconds (user + system), so a
busy machine slows the wall clock more than the figure; wall seconds are given too. Needs the
``bench`` extra (``pip install -e '.[bench]'``).

    taskset -c 0 .venv/bin/python bench/curation_vs_datatrove.py --docs 200000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import build_corpus, write_corpus
from near_dedup_accuracy import invocation, load, machine

from curation.executors import InputFile, LocalExecutor, StageProgress
from curation.steps.near_dedup import DATATROVE_CONFIG

GOAL_RATIO = 2.0
RECIPE: dict[str, Any] = {
    "name": "bench_datatrove_recipe",
    "steps": [
        "gopher_repetition",
        "gopher_quality",
        "c4_filter",
        "c4_clean",
        "exact_dedup",
        {
            "step": "near_dedup",
            "ngram": DATATROVE_CONFIG.ngram,
            "bands": DATATROVE_CONFIG.bands,
            "rows_per_band": DATATROVE_CONFIG.rows_per_band,
            "seed": DATATROVE_CONFIG.seed,
            "min_similarity": None,
        },
    ],
}


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float
    docs_out: int


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run: Callable[[], int]) -> Timing:
    wall, cpu = time.perf_counter(), cpu_seconds()
    docs_out = run()
    return Timing(time.perf_counter() - wall, cpu_seconds() - cpu, docs_out)


def run_ours(corpus_path: Path, work: Path) -> int:
    def show(state: StageProgress) -> None:
        end = "\n" if state.done == state.total else ""
        print(
            f"\r  aidx stage {state.stage} ({state.name}): {state.done}/{state.total} tasks, "
            f"{state.rows_out:,} rows out",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    result = LocalExecutor(processes=1, progress=show).run(
        [InputFile(corpus_path, "jsonl", corpus_path.name, "bench")],
        work / "out",
        recipe=RECIPE,
        work_dir=work / "work",
    )
    return result.num_rows


def run_datatrove(corpus_path: Path, work: Path) -> int:
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    def document_text(document: Document) -> str:
        return document.text

    exact = ExactDedupConfig(content_getter=document_text)
    minhash = MinhashConfig(
        n_grams=DATATROVE_CONFIG.ngram,
        num_buckets=DATATROVE_CONFIG.bands,
        hashes_per_bucket=DATATROVE_CONFIG.rows_per_band,
        seed=DATATROVE_CONFIG.seed,
    )
    folders = {name: str(work / name) for name in ("filtered", "exact", "minhash", "out")}

    def reader(folder: str, pattern: str = "*.jsonl") -> JsonlReader:
        return JsonlReader(folder, glob_pattern=pattern)

    def writer(folder: str) -> JsonlWriter:
        return JsonlWriter(folder, compression=None)

    stages: list[tuple[str, list[Any]]] = [
        (
            "filters",
            [
                reader(str(corpus_path.parent), corpus_path.name),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                C4QualityFilter(),
                writer(folders["filtered"]),
            ],
        ),
        (
            "exact signature",
            [
                reader(folders["filtered"]),
                ExactDedupSignature(output_folder=f"{folders['exact']}/sigs", config=exact),
            ],
        ),
        (
            "exact finder",
            [
                ExactFindDedups(
                    data_folder=f"{folders['exact']}/sigs",
                    output_folder=f"{folders['exact']}/dups",
                    config=exact,
                )
            ],
        ),
        (
            "exact filter",
            [
                reader(folders["filtered"]),
                ExactDedupFilter(data_folder=f"{folders['exact']}/dups", config=exact),
                writer(f"{folders['exact']}/kept"),
            ],
        ),
        (
            "minhash signature",
            [
                reader(f"{folders['exact']}/kept"),
                MinhashDedupSignature(output_folder=f"{folders['minhash']}/sigs", config=minhash),
            ],
        ),
        (
            "minhash buckets",
            [
                MinhashDedupBuckets(
                    input_folder=f"{folders['minhash']}/sigs",
                    output_folder=f"{folders['minhash']}/buckets",
                    config=minhash,
                )
            ],
        ),
        (
            "minhash clusters",
            [
                MinhashDedupCluster(
                    input_folder=f"{folders['minhash']}/buckets",
                    output_folder=f"{folders['minhash']}/remove_ids",
                    config=minhash,
                )
            ],
        ),
        (
            "minhash filter",
            [
                reader(f"{folders['exact']}/kept"),
                MinhashDedupFilter(input_folder=f"{folders['minhash']}/remove_ids"),
                writer(folders["out"]),
            ],
        ),
    ]
    for index, (name, pipeline) in enumerate(stages):
        started = time.perf_counter()
        print(f"  datatrove stage {index} ({name}) ...", end="", file=sys.stderr, flush=True)
        LocalPipelineExecutor(
            pipeline=pipeline,
            # The bucket stage takes one task per band; with one worker they run one by one.
            tasks=minhash.num_buckets if name == "minhash buckets" else 1,
            workers=1,
            logging_dir=str(work / "logs" / f"{index:02d}"),
        ).run()
        print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr)
    kept = 0
    for path in Path(folders["out"]).glob("*.jsonl"):
        with path.open("rb") as handle:
            kept += sum(1 for _ in handle)
    return kept


def markdown(
    docs: int, megabytes: float, ours: Timing, theirs: Timing, command: str, loads: Sequence[str]
) -> str:
    ours_rate, theirs_rate = docs / ours.cpu, docs / theirs.cpu
    ratio = ours_rate / theirs_rate
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    return "\n".join(
        [
            "## Curation vs datatrove: one recipe, one core each",
            "",
            f"{docs:,} documents ({megabytes:.0f} MB of JSONL) from `bench/corpus.py`: real "
            "English prose, a fifth planted near copies, 2 % exact copies. Recipe on both sides: "
            "Gopher repetition, Gopher quality, C4 (rules and line cleaning), exact dedup, "
            f"MinHash near dedup with datatrove's configuration ({DATATROVE_CONFIG.ngram}-grams, "
            f"{DATATROVE_CONFIG.bands} bands x {DATATROVE_CONFIG.rows_per_band} rows). aidx: "
            "`LocalExecutor(processes=1)`, JSONL in, Parquet out; datatrove 0.10.1: "
            "`LocalPipelineExecutor(tasks=1, workers=1)` over its 8 stages, JSONL in and out "
            "(uncompressed). Docs/s per core = input documents / CPU seconds of the process.",
            "",
            "| | docs kept | CPU s | wall s | docs/s per core | vs datatrove |",
            "|---|---|---|---|---|---|",
            f"| aidx | {ours.docs_out:,} | {ours.cpu:.1f} | {ours.wall:.1f} | "
            f"{ours_rate:,.0f} | **{ratio:.2f}x** |",
            f"| datatrove | {theirs.docs_out:,} | {theirs.cpu:.1f} | {theirs.wall:.1f} | "
            f"{theirs_rate:,.0f} | 1.00x |",
            "",
            f"Goal: at least {GOAL_RATIO:.0f}x datatrove; this run {verdict} it ({ratio:.2f}x).",
            "",
            f"Machine: {machine()}; date {dt.date.today().isoformat()}; load average before "
            f"{loads[0]}, after {loads[1]}.",
            "",
            "```sh",
            command,
            "```",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents (default 200000)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    if args.docs < 100:
        parser.error(f"--docs must be at least 100, not {args.docs}")
    try:
        import datatrove  # noqa: F401
    except ImportError:
        parser.error("datatrove is not installed: pip install -e '.[bench]'")
    command = invocation("bench/curation_vs_datatrove.py", sys.argv[1:] if argv is None else argv)
    before = load()
    scratch = Path(tempfile.mkdtemp(prefix="aidx-vs-datatrove-", dir=args.work))
    try:
        print(f"building {args.docs:,} documents ...", file=sys.stderr)
        corpus = build_corpus(args.docs, seed=args.seed, progress=True)
        corpus_path, _ = write_corpus(corpus, scratch / "corpus")
        megabytes = corpus_path.stat().st_size / 1e6
        del corpus
        ours = timed(lambda: run_ours(corpus_path, scratch / "aidx"))
        with contextlib.redirect_stdout(sys.stderr):  # datatrove prints its stage statistics
            theirs = timed(lambda: run_datatrove(corpus_path, scratch / "datatrove"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(markdown(args.docs, megabytes, ours, theirs, command, (before, load())))
    print(json.dumps({"ours": ours.__dict__, "datatrove": theirs.__dict__}), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

"""Human review of a curated version in Label Studio: sample, annotate, measure, decide.

A review round draws a stratified sample of a version's rows (:func:`draw_stratified`), puts it
into a new Label Studio project as tasks (each task carries the row's shard, index and content
hash, so every annotation maps back to one row), and reads the annotations back. From them it
measures (:func:`review_statistics`) the pass rate with its Wilson 95% interval and the
agreement between annotators (Cohen's kappa for two, Fleiss' kappa for more, and the raw share
of agreeing pairs). An operator then decides the round against its thresholds
(:class:`Thresholds`): an accepted or rejected round sets the accuracy dimension of the version's
quality report (:func:`curation.report.apply_review`) and the review on its card.

The statistics and the sampling are pure; :func:`start_review_round`,
:func:`collect_review_round` and :func:`decide_review_round` are the services (API and CLI),
each owning its transaction. The Label Studio token is never stored: every call that talks to
Label Studio is given it.

Rules, also in ``docs/quality-report.md``:

- a task's verdict is the strict majority of its annotators' verdicts; a tie counts as a fail;
- the pass rate is over annotated tasks (skipped annotations and those without a verdict do not
  count);
- agreement is measured over tasks with two or more verdicts; it is Cohen's kappa when exactly
  two annotators gave all of them, else Fleiss' kappa (per task, the share of agreeing pairs of
  its own annotators, so tasks may have different numbers of verdicts); when every verdict is
  the same the kappa is undefined (``None``) and the agreement threshold is judged on the raw
  agreement, which is then 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import math
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.errors import CurationError
from curation.models import ReviewRound
from curation.report import apply_review
from curation.steps import (
    CONTENT_HASH_COLUMN,
    CONTRIBUTOR_COLUMN,
    SOURCE_FILE_COLUMN,
    data_columns,
)
from curation.steps.language import LANGUAGE_COLUMN
from curation.steps.text import string_columns, text_of
from dataset_cards import service as cards
from dataset_cards.schema import DatasetCard, ReviewSummary
from infra.db import new_id, utcnow
from infra.storage import ObjectStore
from marketplace.errors import ConflictError, InvalidRequestError, NotFoundError
from marketplace.models import DatasetVersion
from marketplace.services import audit
from marketplace.services.organizations import Principal

VERDICTS = ("pass", "fail")
ISSUE_TAGS = ("PII left", "low quality", "wrong language", "harmful")
#: What a stratum can be made of: the row's source file, its contributor, its language (when
#: the recipe tagged languages) and its text length (terciles of the version's lengths).
STRATA_DIMENSIONS = ("source", "contributor", "language", "length")
LENGTH_BUCKETS = ("short", "medium", "long")
MAX_SAMPLE_SIZE = 5_000
MAX_ANNOTATORS = 10
#: The longest text a task shows; longer rows are cut with a marker (the hash maps them back).
MAX_TASK_CHARS = 20_000
_Z95 = 1.959963984540054
_DIMENSION_COLUMNS = {
    "source": SOURCE_FILE_COLUMN,
    "contributor": CONTRIBUTOR_COLUMN,
    "language": LANGUAGE_COLUMN,
}

# Sampling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRef:
    """One row of a version: its shard, its index there, and its content hash."""

    shard: str
    row: int
    content_hash: str

    @property
    def row_id(self) -> str:
        return f"{self.shard}#{self.row}"


def allocate(sizes: Mapping[str, int], sample_size: int, *, minimum: int) -> dict[str, int]:
    """How many rows to draw from each stratum: proportional, with at least ``minimum`` each.

    A stratum whose proportional share is below ``minimum`` (or than its size, when smaller)
    gets that floor, and the rest of the sample is shared in proportion among the others;
    fractions go by largest remainder (ties to the earlier stratum name). No stratum gets more
    rows than it holds. Raises :class:`CurationError` when the floors alone exceed
    ``sample_size``. A sample as large as the version is the whole version.
    """
    if sample_size < 1:
        raise CurationError(f"sample size must be at least 1, not {sample_size}")
    if minimum < 0:
        raise CurationError(f"minimum per stratum must be 0 or more, not {minimum}")
    total = sum(sizes.values())
    if sample_size >= total:
        return dict(sizes)
    floors = {name: min(minimum, size) for name, size in sizes.items()}
    if sum(floors.values()) > sample_size:
        raise CurationError(
            f"a sample of {sample_size} cannot hold {minimum} rows from each of {len(sizes)}"
            f" strata ({sum(floors.values())} rows); draw a larger sample, lower the minimum or"
            " use fewer strata dimensions"
        )
    fixed: dict[str, int] = {}
    quotas: dict[str, float] = {}
    while True:
        free = [name for name in sorted(sizes) if name not in fixed]
        rest = sample_size - sum(fixed.values())
        weight = sum(sizes[name] for name in free)
        quotas = {name: rest * sizes[name] / weight for name in free} if weight else {}
        settled = {
            name: floors[name] if quota < floors[name] else sizes[name]
            for name, quota in quotas.items()
            if quota < floors[name] or quota >= sizes[name]
        }
        if not settled:
            break
        fixed.update(settled)
    counts = {name: fixed.get(name, math.floor(quotas.get(name, 0.0))) for name in sizes}
    left = sample_size - sum(counts.values())
    order = sorted(sizes, key=lambda name: (-(quotas.get(name, 0.0) % 1), name))
    while left > 0:
        for name in order:
            if left and counts[name] < sizes[name]:
                counts[name] += 1
                left -= 1
    return counts


def draw_stratified(
    strata: Mapping[str, Sequence[RowRef]],
    sample_size: int,
    *,
    seed: int,
    minimum: int,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, list[RowRef]]:
    """A stratified sample: :func:`allocate` per stratum, then rows in a seeded hash order.

    Each row's rank is the SHA-256 of the seed and the row (shard, index, content hash), so the
    same seed draws the same rows however the shards were read, and another seed others.
    ``sizes`` are the strata's row counts when ``strata`` holds only each stratum's
    lowest-ranked rows (at least ``sample_size`` of them, as :func:`stratify_shards` keeps).
    """
    sizes = dict(sizes) if sizes is not None else {n: len(rows) for n, rows in strata.items()}
    counts = allocate(sizes, sample_size, minimum=minimum)
    drawn: dict[str, list[RowRef]] = {}
    for name in sorted(strata):
        ranked = sorted(strata[name], key=lambda ref: (rank(seed, ref), ref.shard, ref.row))
        chosen = sorted(ranked[: counts[name]], key=lambda ref: (ref.shard, ref.row))
        if chosen:
            drawn[name] = chosen
    return drawn


def rank(seed: int, ref: RowRef) -> int:
    """The row's place in the seeded order: the first 8 bytes of a SHA-256, as a number."""
    digest = hashlib.sha256(f"{seed}\x00{ref.shard}\x00{ref.row}\x00{ref.content_hash}".encode())
    return int.from_bytes(digest.digest()[:8], "big")


def length_edges(lengths: np.ndarray[Any, Any]) -> tuple[float, float]:
    """The upper bounds of the short and medium buckets: the terciles of the text lengths."""
    if not len(lengths):
        return (0.0, 0.0)
    low, high = np.percentile(lengths, [100 / 3, 200 / 3])
    return (float(low), float(high))


def length_bucket(length: int, edges: tuple[float, float]) -> str:
    if length <= edges[0]:
        return LENGTH_BUCKETS[0]
    return LENGTH_BUCKETS[1] if length <= edges[1] else LENGTH_BUCKETS[2]


@dataclass
class VersionRows:
    """A version's strata: each one's row count and its lowest-ranked rows."""

    dimensions: list[str]
    sizes: dict[str, int]
    candidates: dict[str, list[RowRef]]
    length_edges: tuple[float, float] | None


def stratify_shards(
    shards: Mapping[str, Path], dimensions: Sequence[str], *, seed: int, keep: int
) -> VersionRows:
    """Read the version's Parquet ``shards`` (path in the version → local file) into strata.

    Only the ``keep`` lowest-ranked rows of each stratum (:func:`rank` under ``seed``) are kept,
    so memory grows with the strata and the sample, not with the version; pass at least the
    sample size. Text lengths are read in a first pass when ``length`` is a dimension.
    """
    unknown = [name for name in dimensions if name not in STRATA_DIMENSIONS]
    if unknown or not dimensions:
        raise CurationError(
            f"strata dimensions must be some of {', '.join(STRATA_DIMENSIONS)}; got"
            f" {', '.join(dimensions) or 'none'}"
        )
    if len(set(dimensions)) != len(dimensions):
        raise CurationError(f"strata dimensions are repeated: {', '.join(dimensions)}")
    for shard_path, local in shards.items():
        names = pq.read_schema(local).names
        for name in dimensions:
            column = _DIMENSION_COLUMNS.get(name)
            if column is not None and column not in names:
                raise CurationError(
                    f"strata dimension {name!r} needs the column {column}, which version shard"
                    f" {shard_path} does not have"
                    + (" (the recipe did not tag languages)" if name == "language" else "")
                )
    edges = None
    if "length" in dimensions:
        lengths = [
            _text_lengths(batch)
            for _, local in sorted(shards.items())
            for batch in pq.ParquetFile(local).iter_batches(batch_size=8192)
        ]
        edges = length_edges(np.concatenate(lengths) if lengths else np.zeros(0, np.int64))
    sizes: Counter[str] = Counter()
    heaps: dict[str, list[tuple[int, str, int, str]]] = defaultdict(list)
    for shard_path, local in sorted(shards.items()):
        start = 0
        for batch in pq.ParquetFile(local).iter_batches(batch_size=8192):
            columns = {
                name: _values(batch, _DIMENSION_COLUMNS[name])
                if name != "length"
                else [length_bucket(int(n), edges or (0.0, 0.0)) for n in _text_lengths(batch)]
                for name in dimensions
            }
            hashes = batch.column(CONTENT_HASH_COLUMN).to_pylist()
            for i, content_hash in enumerate(hashes):
                key = "|".join(f"{name}={columns[name][i]}" for name in dimensions)
                ref = RowRef(shard_path, start + i, str(content_hash))
                sizes[key] += 1
                # a max-heap by rank (negated), so the highest-ranked row leaves first
                entry = (-rank(seed, ref), shard_path, ref.row, ref.content_hash)
                heap = heaps[key]
                if len(heap) < keep:
                    heapq.heappush(heap, entry)
                elif entry > heap[0]:
                    heapq.heapreplace(heap, entry)
            start += batch.num_rows
    candidates = {
        key: sorted(
            (RowRef(shard, row, content_hash) for _, shard, row, content_hash in heap),
            key=lambda ref: (rank(seed, ref), ref.shard, ref.row),
        )
        for key, heap in heaps.items()
    }
    return VersionRows(list(dimensions), dict(sizes), candidates, edges)


def _text_lengths(batch: pa.RecordBatch) -> np.ndarray[Any, Any]:
    """Characters per row as the steps read text; rows without text columns as shown."""
    if string_columns(batch.schema):
        texts = text_of(batch, None, "review")
    else:
        texts = pa.array([_display_text(row) for row in _data_rows(batch)], pa.string())
    lengths: np.ndarray[Any, Any] = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    return lengths


def _values(batch: pa.RecordBatch, column: str) -> list[str]:
    return ["" if value is None else str(value) for value in batch.column(column).to_pylist()]


def _data_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = batch.select(data_columns(batch.schema)).to_pylist()
    return rows


def _display_text(row: Mapping[str, Any]) -> str:
    """What an annotator reads: a lone text column as it is, else each column under its name."""
    if len(row) == 1:
        (value,) = row.values()
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
    else:
        parts = []
        for name, value in row.items():
            shown = (
                value
                if isinstance(value, str)
                else json.dumps(value, ensure_ascii=False, indent=1, default=str)
            )
            parts.append(f"[{name}]\n{shown}")
        text = "\n\n".join(parts)
    if len(text) > MAX_TASK_CHARS:
        text = text[:MAX_TASK_CHARS] + f"\n[… cut at {MAX_TASK_CHARS} characters]"
    return text


def sample_tasks(
    shards: Mapping[str, Path], drawn: Mapping[str, Sequence[RowRef]]
) -> list[dict[str, Any]]:
    """The Label Studio task data of the drawn rows, in shard and row order."""
    wanted: dict[str, dict[int, tuple[str, RowRef]]] = defaultdict(dict)
    for stratum, refs in drawn.items():
        for ref in refs:
            wanted[ref.shard][ref.row] = (stratum, ref)
    tasks: list[dict[str, Any]] = []
    for shard_path in sorted(wanted):
        rows = wanted[shard_path]
        table = pq.read_table(shards[shard_path])
        picked = table.take(pa.array(sorted(rows), pa.int64()))
        hashes = picked.column(CONTENT_HASH_COLUMN).to_pylist()
        data = picked.select(data_columns(picked.schema)).to_pylist()
        for index, content_hash, row in zip(sorted(rows), hashes, data, strict=True):
            stratum, ref = rows[index]
            if content_hash != ref.content_hash:
                raise CurationError(f"row {ref.row_id} changed while the sample was drawn")
            tasks.append(
                {
                    "text": _display_text(row),
                    "row_id": ref.row_id,
                    "shard": ref.shard,
                    "row": ref.row,
                    "content_hash": ref.content_hash,
                    "stratum": stratum,
                }
            )
    return tasks


# Agreement and pass rate -----------------------------------------------------------------


def wilson_interval(successes: int, trials: int, *, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); ``(0, 1)`` for no trials."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels, one pair per item; ``None`` when it is undefined.

    It is undefined without items, and when chance agreement is certain (both raters gave one
    and the same label throughout).
    """
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[label] * second[label] for label in first) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: Sequence[Mapping[str, int]]) -> float | None:
    """Fleiss' kappa of items rated by two or more raters each (label → raters who gave it).

    With the same number of raters per item this is Fleiss (1971); items with different
    numbers of raters each weigh their own share of agreeing pairs equally, and the label
    shares are over all ratings. ``None`` when undefined (no item, or one label throughout).
    """
    rated = [item for item in items if sum(item.values()) >= 2]
    if not rated:
        return None
    observed = float(np.mean([_pair_agreement(item) for item in rated]))
    totals: Counter[str] = Counter()
    for item in rated:
        totals.update(item)
    ratings = sum(totals.values())
    expected = sum((count / ratings) ** 2 for count in totals.values())
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def percent_agreement(items: Sequence[Mapping[str, int]]) -> float | None:
    """The mean share of agreeing rater pairs per item with two or more ratings."""
    rated = [item for item in items if sum(item.values()) >= 2]
    if not rated:
        return None
    return float(np.mean([_pair_agreement(item) for item in rated]))


def _pair_agreement(item: Mapping[str, int]) -> float:
    n = sum(item.values())
    return (sum(count * count for count in item.values()) - n) / (n * (n - 1))


@dataclass(frozen=True)
class Judgement:
    """One annotator's verdict on one task, with the issues they tagged."""

    task_id: int
    annotator: str
    verdict: str
    issues: tuple[str, ...] = ()


@dataclass
class ReviewStatistics:
    """What a round's annotations show; JSON-ready through :meth:`as_dict`."""

    annotated_tasks: int
    passed_tasks: int
    pass_rate: float | None
    pass_rate_interval: tuple[float, float] | None
    annotations: int
    annotators: int
    multiply_annotated_tasks: int
    agreement: float | None
    agreement_metric: str | None
    percent_agreement: float | None
    issue_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        if self.pass_rate_interval is not None:
            body["pass_rate_interval"] = [round(x, 6) for x in self.pass_rate_interval]
        for key in ("pass_rate", "agreement", "percent_agreement"):
            if body[key] is not None:
                body[key] = round(body[key], 6)
        return body


def review_statistics(judgements: Iterable[Judgement]) -> ReviewStatistics:
    """Pass rate, its interval, agreement and issue counts of a round's verdicts.

    An annotator's later judgement of a task replaces their earlier one.
    """
    latest: dict[tuple[int, str], Judgement] = {}
    for judgement in judgements:
        if judgement.verdict not in VERDICTS:
            raise CurationError(f"verdict {judgement.verdict!r} is not one of {VERDICTS}")
        latest[(judgement.task_id, judgement.annotator)] = judgement
    by_task: dict[int, list[Judgement]] = defaultdict(list)
    for judgement in latest.values():
        by_task[judgement.task_id].append(judgement)
    passed = 0
    issue_counts = dict.fromkeys(ISSUE_TAGS, 0)
    for task in by_task.values():
        votes = Counter(j.verdict for j in task)
        passed += votes["pass"] > votes["fail"]
        for tag in {issue for j in task for issue in j.issues}:
            issue_counts[tag] = issue_counts.get(tag, 0) + 1
    annotated = len(by_task)
    multiple = {task_id: task for task_id, task in by_task.items() if len(task) >= 2}
    raters = {j.annotator for task in multiple.values() for j in task}
    items = [dict(Counter(j.verdict for j in task)) for task in multiple.values()]
    agreement: float | None
    if len(raters) == 2 and all(len(task) == 2 for task in multiple.values()):
        first, second = sorted(raters)
        pairs = []
        for task in multiple.values():
            verdicts = {j.annotator: j.verdict for j in task}
            pairs.append((verdicts[first], verdicts[second]))
        metric, agreement = "cohen_kappa", cohen_kappa(pairs)
    elif multiple:
        metric, agreement = "fleiss_kappa", fleiss_kappa(items)
    else:
        metric, agreement = None, None
    return ReviewStatistics(
        annotated_tasks=annotated,
        passed_tasks=passed,
        pass_rate=passed / annotated if annotated else None,
        pass_rate_interval=wilson_interval(passed, annotated) if annotated else None,
        annotations=len(latest),
        annotators=len({j.annotator for j in latest.values()}),
        multiply_annotated_tasks=len(multiple),
        agreement=agreement,
        agreement_metric=metric,
        percent_agreement=percent_agreement(items),
        issue_counts=issue_counts,
    )


@dataclass(frozen=True)
class Thresholds:
    """What an operator requires of a round before the version is accepted.

    ``min_agreement`` is on the kappa (``None``: agreement is not required); a round whose kappa
    is undefined because every verdict was the same is judged on the raw agreement instead.
    """

    min_pass_rate: float = 0.9
    min_agreement: float | None = 0.6
    min_annotated_tasks: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.min_pass_rate <= 1:
            raise CurationError(f"min_pass_rate must be in [0, 1], not {self.min_pass_rate}")
        if self.min_agreement is not None and not -1 <= self.min_agreement <= 1:
            raise CurationError(f"min_agreement must be in [-1, 1], not {self.min_agreement}")
        if self.min_annotated_tasks < 1:
            raise CurationError(
                f"min_annotated_tasks must be at least 1, not {self.min_annotated_tasks}"
            )

    def judge(self, stats: ReviewStatistics) -> tuple[bool, list[str]]:
        """Accept (``True``) when every threshold is met; else the reasons it is not."""
        reasons: list[str] = []
        if stats.annotated_tasks < self.min_annotated_tasks:
            reasons.append(
                f"{stats.annotated_tasks} tasks are annotated; at least"
                f" {self.min_annotated_tasks} are required"
            )
        if stats.pass_rate is None or stats.pass_rate < self.min_pass_rate:
            shown = "none" if stats.pass_rate is None else f"{stats.pass_rate:.4f}"
            reasons.append(f"pass rate {shown} is below the minimum {self.min_pass_rate}")
        if self.min_agreement is not None:
            if stats.multiply_annotated_tasks == 0:
                reasons.append(
                    "no task has verdicts from two annotators, so agreement is not measured;"
                    f" the minimum is {self.min_agreement}"
                )
            elif stats.agreement is None:
                if (stats.percent_agreement or 0.0) < self.min_agreement:
                    reasons.append(
                        f"raw agreement {stats.percent_agreement} is below the minimum"
                        f" {self.min_agreement}"
                    )
            elif stats.agreement < self.min_agreement:
                reasons.append(
                    f"{stats.agreement_metric} {stats.agreement:.4f} is below the minimum"
                    f" {self.min_agreement}"
                )
        return not reasons, reasons


# Label Studio -----------------------------------------------------------------------------


def labeling_config() -> str:
    """The Label Studio labeling config: a required pass/fail verdict and optional issue tags."""
    issues = "\n".join(f'    <Choice value="{tag}"/>' for tag in ISSUE_TAGS)
    return f"""<View>
  <Header value="Does this row belong in the dataset? Tag any issue you see."/>
  <Text name="text" value="$text"/>
  <Choices name="verdict" toName="text" choice="single" required="true" showInline="true">
    <Choice value="pass"/>
    <Choice value="fail"/>
  </Choices>
  <Choices name="issues" toName="text" choice="multiple" showInline="true">
{issues}
  </Choices>
</View>
"""


def check_label_studio_url(url: str) -> str:
    """``url`` without a trailing slash; raises :class:`InvalidRequestError` unless http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"label_studio_url {url!r} must be an http:// or https:// URL with a host"
        )
    return url.rstrip("/")


class LabelStudio:
    """The few calls a review round makes, through ``label-studio-sdk``'s client.

    Every failure (unreachable server, refused token, rejected request) is an
    :class:`InvalidRequestError` that names the server and what it answered.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        with warnings.catch_warnings():  # its bundled legacy client uses pydantic 1 validators
            warnings.simplefilter("ignore", DeprecationWarning)
            from label_studio_sdk.client import LabelStudio as Client

        if not token.strip():
            raise InvalidRequestError("the Label Studio token is empty")
        self.url = check_label_studio_url(url)
        self._http = httpx.Client(timeout=timeout)
        try:
            client: Any = Client  # the SDK's constructor is untyped
            self._client: Any = client(
                base_url=self.url, api_key=token.strip(), httpx_client=self._http
            )
        except Exception as error:
            self._http.close()
            raise self._error("refused the token", error) from error

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _error(self, doing: str, error: Exception) -> InvalidRequestError:
        status = getattr(error, "status_code", None)
        body = getattr(error, "body", None)
        detail = body.get("detail") if isinstance(body, dict) else body
        errors = body.get("validation_errors") if isinstance(body, dict) else None
        said = f"HTTP {status}: {detail}" if status else f"{type(error).__name__}: {error}"
        if errors:
            said += f" {errors}"
        return InvalidRequestError(f"Label Studio at {self.url} {doing}: {said}")

    def check(self) -> None:
        """Raise unless the server answers and accepts the token."""
        try:
            self._client.users.whoami()
        except Exception as error:
            raise self._error("refused the token", error) from error

    def create_project(self, *, title: str, description: str, annotators_per_task: int) -> int:
        try:
            project = self._client.projects.create(
                title=title,
                description=description,
                label_config=labeling_config(),
                maximum_annotations=annotators_per_task,
                overlap_cohort_percentage=100,
                show_skip_button=True,
            )
        except Exception as error:
            raise self._error("did not create the review project", error) from error
        if project.id is None:
            raise InvalidRequestError(f"Label Studio at {self.url} returned a project without id")
        return int(project.id)

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        try:
            answer = self._client.projects.import_tasks(
                id=project_id, request=[dict(task) for task in tasks], return_task_ids=True
            )
        except Exception as error:
            raise self._error(
                f"did not import the tasks into project {project_id}", error
            ) from error
        task_ids = list(getattr(answer, "task_ids", None) or [])
        if len(task_ids) != len(tasks):
            raise InvalidRequestError(
                f"Label Studio at {self.url} imported {len(task_ids)} of {len(tasks)} tasks"
            )
        return [int(task_id) for task_id in task_ids]

    def delete_project(self, project_id: int) -> None:
        try:
            self._client.projects.delete(id=project_id)
        except Exception as error:
            raise self._error(f"did not delete project {project_id}", error) from error

    def tasks(self, project_id: int) -> Iterator[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
        """Each task of the project: its id, data and annotations (as Label Studio's JSON)."""
        try:
            for task in self._client.tasks.list(project=project_id, fields="all", page_size=100):
                annotations = [
                    item if isinstance(item, dict) else dict(item)
                    for item in task.annotations or []
                ]
                yield int(task.id), dict(task.data or {}), annotations
        except InvalidRequestError:
            raise
        except Exception as error:
            raise self._error(f"did not list the tasks of project {project_id}", error) from error


def judgements_of(task_id: int, annotations: Iterable[Mapping[str, Any]]) -> list[Judgement]:
    """The verdicts in a task's annotations; skipped ones and those without a verdict are left out.

    An annotator's later annotation (higher id) replaces an earlier one.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for annotation in sorted(annotations, key=lambda a: int(a.get("id") or 0)):
        if annotation.get("was_cancelled"):
            continue
        completed_by = annotation.get("completed_by")
        if isinstance(completed_by, Mapping):
            completed_by = completed_by.get("id")
        if completed_by is None:
            continue
        latest[str(completed_by)] = annotation
    found = []
    for annotator, annotation in latest.items():
        verdict, issues = None, ()
        for region in annotation.get("result") or []:
            choices = tuple((region.get("value") or {}).get("choices") or ())
            if region.get("from_name") == "verdict" and choices and choices[0] in VERDICTS:
                verdict = choices[0]
            elif region.get("from_name") == "issues":
                issues = tuple(sorted(choice for choice in choices if choice in ISSUE_TAGS))
        if verdict is not None:
            found.append(Judgement(task_id, annotator, verdict, issues))
    return found


# Services ---------------------------------------------------------------------------------


def start_review_round(
    session: Session,
    store: ObjectStore,
    *,
    actor: Principal,
    version_id: str,
    label_studio_url: str,
    label_studio_token: str,
    sample_size: int,
    annotators_per_task: int = 2,
    strata: Sequence[str] | None = None,
    min_per_stratum: int = 2,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReviewRound:
    """Sample the version, create its Label Studio project with the sample, record the round.

    Only operators start rounds, one open round per version at a time. ``strata`` defaults to
    source file, language (when the recipe tagged it) and text length. ``progress`` is told
    each stage as it begins (the command line prints them).
    """
    say = progress or (lambda _message: None)
    actor.require_role("operator")
    if not 1 <= sample_size <= MAX_SAMPLE_SIZE:
        raise InvalidRequestError(
            f"sample_size must be between 1 and {MAX_SAMPLE_SIZE}, not {sample_size}"
        )
    if not 1 <= annotators_per_task <= MAX_ANNOTATORS:
        raise InvalidRequestError(
            f"annotators_per_task must be between 1 and {MAX_ANNOTATORS}, not {annotators_per_task}"
        )
    url = check_label_studio_url(label_studio_url)
    thresholds = thresholds or Thresholds()
    if annotators_per_task < 2 and thresholds.min_agreement is not None:
        raise InvalidRequestError(
            "agreement needs at least 2 annotators per task; ask for more annotators or set"
            " min_agreement to null (no agreement requirement)"
        )
    version = session.get(DatasetVersion, version_id)
    if version is None:
        raise NotFoundError("dataset version", version_id)
    _refuse_second_open_round(session, version_id)
    files = [(str(f["path"]), str(f["key"]), str(f["sha256"])) for f in version.files]
    session.commit()  # end the read transaction: sampling and Label Studio hold no lock
    with LabelStudio(url, label_studio_token) as label_studio:
        label_studio.check()  # before the work of sampling

        round_id = new_id("rvw")
        say(f"downloading {len(files)} shard(s) of version {version_id}")
        rows, drawn, tasks = _draw_sample(
            store, files, strata, sample_size, seed=seed, minimum=min_per_stratum, say=say
        )
        say(f"drew {len(tasks)} rows from {len(drawn)} of {len(rows.sizes)} strata")
        if thresholds.min_annotated_tasks > len(tasks):
            raise InvalidRequestError(
                f"min_annotated_tasks {thresholds.min_annotated_tasks} is more than the"
                f" {len(tasks)} rows of the sample; it could never be met"
            )
        say(f"creating a project in Label Studio at {url}")
        project_id = label_studio.create_project(
            title=f"aidx {round_id}"[:50],
            description=f"A stratified sample of dataset version {version_id} for human review.",
            annotators_per_task=annotators_per_task,
        )
        try:
            say(f"importing {len(tasks)} tasks into project {project_id}")
            task_ids = label_studio.import_tasks(project_id, tasks)
            review = ReviewRound(
                id=round_id,
                version_id=version_id,
                organization_id=actor.organization_id,
                label_studio_url=url,
                project_id=project_id,
                sample_size=len(tasks),
                annotators_per_task=annotators_per_task,
                seed=seed,
                strata={
                    "dimensions": rows.dimensions,
                    "min_per_stratum": min_per_stratum,
                    "length_edges": list(rows.length_edges) if rows.length_edges else None,
                    "rows": dict(sorted(rows.sizes.items())),
                    "sampled": {name: len(refs) for name, refs in sorted(drawn.items())},
                },
                tasks=[
                    {key: task[key] for key in ("row_id", "content_hash", "stratum")}
                    | {"task_id": i}
                    for task, i in zip(tasks, task_ids, strict=True)
                ],
                thresholds=asdict(thresholds),
                status="open",
                created_at=utcnow(),
            )
            _refuse_second_open_round(session, version_id)
            session.add(review)
            audit.record(
                session,
                actor_organization_id=actor.organization_id,
                action="review_round.started",
                object_type="review_round",
                object_id=review.id,
                version_id=version_id,
                label_studio_url=url,
                project_id=project_id,
                sample_size=len(tasks),
                strata=review.strata["sampled"],
                thresholds=review.thresholds,
            )
            session.commit()
        except BaseException:
            session.rollback()
            with contextlib.suppress(InvalidRequestError):  # no project that no round points at
                label_studio.delete_project(project_id)
            raise
    return review


def _draw_sample(
    store: ObjectStore,
    files: Sequence[tuple[str, str, str]],
    strata: Sequence[str] | None,
    sample_size: int,
    *,
    seed: int,
    minimum: int,
    say: Callable[[str], None],
) -> tuple[VersionRows, dict[str, list[RowRef]], list[dict[str, Any]]]:
    """Download the shards, group their rows into strata, draw the sample and read its rows."""
    with tempfile.TemporaryDirectory(prefix="aidx-review-") as scratch:
        shards = _download_shards(store, files, Path(scratch))
        dimensions = list(strata) if strata else _default_dimensions(shards)
        try:
            say(f"grouping rows by {', '.join(dimensions)}")
            rows = stratify_shards(shards, dimensions, seed=seed, keep=sample_size)
            drawn = draw_stratified(
                rows.candidates, sample_size, seed=seed, minimum=minimum, sizes=rows.sizes
            )
            return rows, drawn, sample_tasks(shards, drawn)
        except CurationError as error:
            raise InvalidRequestError(str(error)) from error


def _refuse_second_open_round(session: Session, version_id: str) -> None:
    open_round = session.scalars(
        select(ReviewRound.id).where(
            ReviewRound.version_id == version_id, ReviewRound.status == "open"
        )
    ).first()
    if open_round is not None:
        raise ConflictError(
            f"version {version_id} already has an open review round {open_round}; decide it first"
        )


def _default_dimensions(shards: Mapping[str, Path]) -> list[str]:
    names = set.intersection(*(set(pq.read_schema(path).names) for path in shards.values()))
    return ["source", *(["language"] if LANGUAGE_COLUMN in names else []), "length"]


def _download_shards(
    store: ObjectStore, files: Sequence[tuple[str, str, str]], folder: Path
) -> dict[str, Path]:
    shards = {}
    for index, (path, key, sha256) in enumerate(files):
        local = folder / f"{index:05d}.parquet"
        store.download_to(key, local)
        with local.open("rb") as file:
            if hashlib.file_digest(file, "sha256").hexdigest() != sha256:
                raise ConflictError(f"shard {path} does not match its recorded SHA-256")
        shards[path] = local
    if not shards:
        raise InvalidRequestError("the version has no data files to sample")
    return shards


def get_review_round(session: Session, *, actor: Principal, round_id: str) -> ReviewRound:
    """A round; review rounds are the operators' (anyone else is refused by role)."""
    actor.require_role("operator")
    review = session.get(ReviewRound, round_id)
    if review is None:
        raise NotFoundError("review round", round_id)
    return review


def list_review_rounds(
    session: Session, *, actor: Principal, version_id: str | None
) -> list[ReviewRound]:
    actor.require_role("operator")
    statement = select(ReviewRound).order_by(ReviewRound.created_at, ReviewRound.id)
    if version_id is not None:
        statement = statement.where(ReviewRound.version_id == version_id)
    return list(session.scalars(statement))


def collect_review_round(
    session: Session, *, actor: Principal, round_id: str, label_studio_token: str
) -> ReviewRound:
    """Read the round's annotations back from Label Studio and record what they show."""
    actor.require_role("operator")
    review = get_review_round(session, actor=actor, round_id=round_id)
    if review.status != "open":
        raise ConflictError(f"review round {round_id} is {review.status}; its figures are final")
    url, project_id = review.label_studio_url, review.project_id
    known = {int(task["task_id"]): task for task in review.tasks}
    session.commit()  # no lock while Label Studio answers

    judgements: list[Judgement] = []
    unknown = changed = 0
    with LabelStudio(url, label_studio_token) as label_studio:
        for task_id, data, found in label_studio.tasks(project_id):
            task = known.get(task_id)
            if task is None:
                unknown += 1
                continue
            if data.get("content_hash") != task["content_hash"]:
                changed += 1
                continue
            judgements.extend(judgements_of(task_id, found))
    stats = review_statistics(judgements)

    locked = session.get(ReviewRound, round_id, with_for_update=True, populate_existing=True)
    assert locked is not None
    review = locked
    if review.status != "open":
        raise ConflictError(f"review round {round_id} was decided while it was collected")
    results = stats.as_dict() | {"unknown_tasks": unknown, "changed_tasks": changed}
    review.results = results
    review.annotated_tasks = stats.annotated_tasks
    review.pass_rate = results["pass_rate"]
    review.agreement = results["agreement"]
    review.agreement_metric = stats.agreement_metric
    review.issue_counts = stats.issue_counts
    review.collected_at = utcnow()
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="review_round.collected",
        object_type="review_round",
        object_id=review.id,
        annotated_tasks=stats.annotated_tasks,
        pass_rate=review.pass_rate,
        agreement=review.agreement,
        agreement_metric=review.agreement_metric,
    )
    session.commit()
    return review


def decide_review_round(
    session: Session, *, actor: Principal, round_id: str, notes: str = ""
) -> ReviewRound:
    """Accept or reject the round on its last collected figures against its thresholds.

    Either way the version's report gets the reviewed accuracy and its card the review summary
    (a new card revision), in the same transaction as the decision.
    """
    actor.require_role("operator")
    review = get_review_round(session, actor=actor, round_id=round_id)
    if review.status != "open":
        raise ConflictError(f"review round {round_id} is already {review.status}")
    if review.collected_at is None or review.results is None:
        raise ConflictError(
            f"review round {round_id} has no collected annotations; collect them first"
        )
    version_id = review.version_id
    if cards.latest_revision(session, version_id=version_id) is None:
        # the card curation wrote becomes revision 1, as when a person first edits it
        cards.record_revision(
            session,
            version_id=version_id,
            card=cards.current_card(session, version_id=version_id),
            author_organization_id=None,
        )

    locked = session.get(ReviewRound, round_id, with_for_update=True, populate_existing=True)
    version = session.get(DatasetVersion, version_id, with_for_update=True, populate_existing=True)
    assert locked is not None and locked.results is not None and version is not None
    review = locked
    if review.status != "open":
        raise ConflictError(f"review round {round_id} is already {review.status}")
    thresholds = Thresholds(**review.thresholds)
    accepted, reasons = thresholds.judge(_statistics_of(locked.results))
    review.status = "accepted" if accepted else "rejected"
    review.decision_reasons = reasons
    review.decided_by = actor.organization_id
    review.decided_at = utcnow()
    summary = review_summary(review)
    try:
        version.report = apply_review(version.report, summary)
    except ValueError as error:
        raise ConflictError(f"version {version_id}: {error}") from error
    card = _card_with_review(cards.current_card(session, version_id=version_id), version.report)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action=f"review_round.{review.status}",
        object_type="review_round",
        object_id=review.id,
        version_id=version_id,
        pass_rate=review.pass_rate,
        agreement=review.agreement,
        reasons=reasons,
        notes=notes,
    )
    cards.record_revision(  # commits the decision, the report and the card together
        session, version_id=version_id, card=card, author_organization_id=actor.organization_id
    )
    return review


def _statistics_of(results: Mapping[str, Any]) -> ReviewStatistics:
    interval = results.get("pass_rate_interval")
    return ReviewStatistics(
        annotated_tasks=int(results["annotated_tasks"]),
        passed_tasks=int(results["passed_tasks"]),
        pass_rate=results.get("pass_rate"),
        pass_rate_interval=(interval[0], interval[1]) if interval else None,
        annotations=int(results["annotations"]),
        annotators=int(results["annotators"]),
        multiply_annotated_tasks=int(results["multiply_annotated_tasks"]),
        agreement=results.get("agreement"),
        agreement_metric=results.get("agreement_metric"),
        percent_agreement=results.get("percent_agreement"),
        issue_counts=dict(results.get("issue_counts") or {}),
    )


def review_summary(review: ReviewRound) -> dict[str, Any]:
    """What the version's quality report keeps of a decided round (``quality.review``)."""
    results = review.results or {}
    return {
        "tool": "Label Studio",
        "round_id": review.id,
        "decision": review.status,
        "sample_size": review.sample_size,
        "annotated_tasks": review.annotated_tasks,
        "reviewers": results.get("annotators") or None,
        "pass_rate": review.pass_rate,
        "pass_rate_interval": results.get("pass_rate_interval"),
        "agreement": review.agreement,
        "agreement_metric": review.agreement_metric if review.agreement is not None else None,
        "percent_agreement": results.get("percent_agreement"),
        "issue_counts": review.issue_counts,
        "thresholds": review.thresholds,
    }


def _card_with_review(card: DatasetCard, report: Mapping[str, Any]) -> DatasetCard:
    summary = ReviewSummary.model_validate(report["review"])
    return DatasetCard.model_validate(
        card.model_dump() | {"review": summary, "quality_scores": report["quality_scores"]}
    )


def review_checklist_item(session: Session, *, version_id: str) -> dict[str, Any]:
    """The listing checklist's ``human_review_accepted``, from the version's latest round.

    No round: ``passed`` is ``None`` (not evaluated), as for any check nothing measured; an open
    round is not evaluated yet either; a decided round passes when it was accepted.
    """
    latest = session.scalars(
        select(ReviewRound)
        .where(ReviewRound.version_id == version_id)
        .order_by(ReviewRound.created_at.desc(), ReviewRound.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        detail, passed = "no human review round for this version", None
    elif latest.status == "open":
        detail, passed = f"review round {latest.id} is open, not decided", None
    else:
        passed = latest.status == "accepted"
        detail = (
            f"review round {latest.id} {latest.status}: pass rate {latest.pass_rate}"
            f" over {latest.annotated_tasks} rows"
            + (
                f", {latest.agreement_metric} {latest.agreement}"
                if latest.agreement is not None
                else ""
            )
            + ("" if passed else "; " + "; ".join(latest.decision_reasons or []))
        )
    return {"check": "human_review_accepted", "passed": passed, "detail": detail}


__all__ = [
    "ISSUE_TAGS",
    "STRATA_DIMENSIONS",
    "VERDICTS",
    "Judgement",
    "LabelStudio",
    "ReviewStatistics",
    "RowRef",
    "Thresholds",
    "allocate",
    "cohen_kappa",
    "collect_review_round",
    "decide_review_round",
    "draw_stratified",
    "fleiss_kappa",
    "get_review_round",
    "judgements_of",
    "labeling_config",
    "list_review_rounds",
    "percent_agreement",
    "review_checklist_item",
    "review_statistics",
    "review_summary",
    "start_review_round",
    "stratify_shards",
    "wilson_interval",
]

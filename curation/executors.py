"""Executors: curate a run's inputs in shards, on local processes or Celery workers, resumably.

A run is planned once (:func:`prepare_run`): the inputs' common schema, their row counts, the
shards (each file, cut into row ranges of ``rows_per_shard``), and the stages the recipe's steps
fall into. Steps whose effect on a row depends on that row alone (``Step.row_local``) run in
*shard stages*, every shard apart; every other step (exact and near dedup, chat prompts kept
unique, a table profile) is a *global stage* that sees all shards in source order. A recipe
``normalize, filters..., exact_dedup, near_dedup, pii_redact`` runs as::

    stage 0  shards   read the shard's rows, add provenance, normalize, filters...; save the
                      MinHash signatures near dedup will need
    stage 1  global   exact dedup over the content hashes of every shard, in order
    stage 2  global   near dedup: find_near_duplicates over the saved signatures
    stage 3  shards   pii_redact on the rows that are left
    merge             the last rows of every shard, in order, into Parquet files; exclusions

Every shard of a stage, and every global stage, ends by writing a completion marker (JSON with
the hashes of what it wrote and its steps' counts) last and atomically; a rerun skips work whose
marker is there and whose files still match it. Outputs are deterministic, so a run interrupted
anywhere and rerun gives the same bytes as one that was not. The merge refuses to start until
every marker is there, so a version is published only when every shard is done.

Work folder layout: ``plan.json`` and ``schema.arrow``; ``stage-KK/shard-NNNNN.parquet`` (rows),
``.excluded.parquet``, ``.sig-JJ.parquet`` (signatures for step JJ) and ``.done.json``;
``stage-KK/drops.parquet`` or rewritten shard files, ``excluded.parquet`` and ``done.json`` for a
global stage; ``result.json`` after the merge.

Across machines (:class:`CeleryExecutor`) the work folder lives in the object store under a key
prefix: the planner puts the plan and copies of the inputs there, and every task fetches only what
it reads into a scratch folder of its worker, runs as above, and puts back what it wrote with its
marker last (:func:`staged_shard`, :func:`staged_global`, :func:`staged_merge`); a marker in the
store whose files are there with their hashes means the task is done. Workers share no disk.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.errors import CurationError, InterruptedRunError
from curation.pipeline import Pipeline, load_recipe
from curation.readers import count_rows, read_batches, read_schema
from curation.steps import (
    CONTENT_HASH_COLUMN,
    PROVENANCE_COLUMNS,
    SOURCE_FILE_COLUMN,
    SOURCE_ROW_COLUMN,
    AddProvenance,
    ContentHash,
    ExactDedup,
    Filter,
    NearDedup,
    Step,
)
from curation.steps.near_dedup import (
    DUPLICATE_REASON as NEAR_DUPLICATE,
)
from curation.steps.near_dedup import (
    MinHasher,
    ShardSignatures,
    find_near_duplicates,
)
from curation.steps.text import text_of
from curation.writers import (
    EXCLUSIONS_SCHEMA,
    ShardInfo,
    version_content_hash,
    write_exclusions_table,
    write_parquet_shards,
)

if TYPE_CHECKING:
    from infra.storage import ObjectStore

ROWS_PER_SHARD = 50_000
ROWS_PER_FILE = 50_000
BATCH_SIZE = 10_000

Rows = npt.NDArray[np.int64]  # row indices into a shard's file

_PART_ROW = "_part_row"
_STEP_INDEX = "_step_index"
_EXCLUDED_WITH_STEP = EXCLUSIONS_SCHEMA.append(pa.field(_STEP_INDEX, pa.int32()))


@dataclass(frozen=True)
class InputFile:
    """A contributed file: where it is, its format, the name it was uploaded as, and by whom."""

    path: Path
    format: str
    source_name: str
    contributor: str


@dataclass
class CurationResult:
    """What a run wrote and counted.

    ``schema`` is the shards' schema (data columns, then provenance); ``steps`` has one entry per
    recipe step (``step``, ``params``, ``rows_in``, ``rows_out``, ``dropped_by_reason``);
    ``content_hash`` is :func:`~curation.writers.version_content_hash` of the shards; ``report``
    is a JSON-ready summary of all of it, whose steps also carry each step's ``details`` (a
    profile, PII counts, an overlap report) where it has any. ``tasks_run`` and ``tasks_skipped``
    count the shard and global tasks this call did and found already done.
    """

    shards: list[ShardInfo]
    exclusions: ShardInfo | None
    num_rows: int
    rows_in: int
    schema: pa.Schema
    steps: list[dict[str, Any]]
    content_hash: str
    report: dict[str, Any]
    tasks_run: int = 0
    tasks_skipped: int = 0


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``start <= row < stop`` of input ``input`` (an index into the run's inputs)."""

    input: int
    start: int
    stop: int


@dataclass(frozen=True)
class Stage:
    """A group of steps (indices into the recipe's steps) run per shard or over all shards.

    A shards stage also saves, per shard, the MinHash signatures of the near-dedup steps in
    ``signatures``, which come later with only row-dropping global steps in between.
    """

    kind: str  # "shards" or "global"
    steps: tuple[int, ...]
    signatures: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunPlan:
    """Everything a task needs to do its part, as stored in the work folder's ``plan.json``."""

    inputs: list[InputFile]
    recipe: dict[str, Any]
    schema: pa.Schema
    shards: list[ShardSpec]
    stages: list[Stage]
    rows_per_file: int
    batch_size: int
    fingerprint: str = ""

    def stage_names(self) -> list[str]:
        """A short name per stage, for progress: its steps, or ``read`` for the first."""
        pipeline = Pipeline.from_recipe(self.recipe)
        names = []
        for index, stage in enumerate(self.stages):
            steps = [pipeline.steps[i].name for i in stage.steps]
            if index == 0:
                steps = ["read", *steps]
            if len(steps) > 3:
                steps = [steps[0], f"… {len(steps) - 2} steps …", steps[-1]]
            names.append(", ".join(steps) or "signatures")
        return names


@dataclass(frozen=True)
class StageProgress:
    """Progress of one stage: ``done`` of ``total`` tasks, and the rows they took in and put out.

    ``shard`` is the shard whose task just finished (None when a stage starts, and for global
    stages and the merge); ``shard_rows_in`` and ``shard_rows_out`` are that task's rows.
    """

    stage: int
    name: str
    kind: str
    done: int
    total: int
    rows_out: int
    rows_in: int = 0
    shard: int | None = None
    shard_rows_in: int = 0
    shard_rows_out: int = 0


ProgressCallback = Callable[[StageProgress], None]


# Planning


def plan_stages(steps: Sequence[Step]) -> list[Stage]:
    """Group a recipe's steps into shard and global stages; see the module docstring."""
    stages: list[Stage] = [Stage("shards", ())]
    for index, step in enumerate(steps):
        if step.row_local:
            last = stages[-1]
            if last.kind == "shards":
                stages[-1] = Stage("shards", (*last.steps, index), last.signatures)
            else:
                stages.append(Stage("shards", (index,)))
            continue
        if isinstance(step, NearDedup):
            if stages[-1].kind == "global" and _rewrites(steps, stages[-1]):
                stages.append(Stage("shards", ()))
            source = max(i for i, stage in enumerate(stages) if stage.kind == "shards")
            stages[source] = Stage(
                "shards", stages[source].steps, (*stages[source].signatures, index)
            )
        stages.append(Stage("global", (index,)))
    return stages


def _rewrites(steps: Sequence[Step], stage: Stage) -> bool:
    return any(steps[index].changes_content for index in stage.steps)


def plan_shards(row_counts: Sequence[int], rows_per_shard: int) -> list[ShardSpec]:
    """Each file in order, cut into row ranges of at most ``rows_per_shard`` rows."""
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be at least 1, not {rows_per_shard}")
    return [
        ShardSpec(index, start, min(start + rows_per_shard, count))
        for index, count in enumerate(row_counts)
        for start in range(0, count, rows_per_shard)
    ]


def common_schema(inputs: Sequence[InputFile], batch_size: int = BATCH_SIZE) -> pa.Schema:
    """The one schema every input is read as; raise naming the file if their columns disagree."""
    if not inputs:
        raise CurationError("no input files to curate")
    first = inputs[0]
    common = read_schema(
        first.path, format=first.format, source_name=first.source_name, batch_size=batch_size
    )
    for item in inputs[1:]:
        schema = read_schema(
            item.path, format=item.format, source_name=item.source_name, batch_size=batch_size
        )
        missing = [name for name in common.names if name not in schema.names]
        unexpected = [name for name in schema.names if name not in common.names]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"lacks {', '.join(missing)}")
            if unexpected:
                problems.append(f"has extra {', '.join(unexpected)}")
            raise CurationError(
                f"{item.source_name}: columns differ from {first.source_name}: "
                f"{'; '.join(problems)}"
            )
        fields = []
        differing = []
        for column in common:
            other = schema.field(column.name)
            try:
                fields.append(pa.unify_schemas([pa.schema([column]), pa.schema([other])]).field(0))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                differing.append(f"{column.name} ({other.type} here, {column.type} there)")
        if differing:
            raise CurationError(
                f"{item.source_name}: column types differ from {first.source_name}: "
                f"{', '.join(differing)}"
            )
        common = pa.schema(fields)
    return common


def prepare_run(
    inputs: Sequence[InputFile],
    work_dir: Path,
    *,
    recipe: Mapping[str, Any] | Path | str,
    rows_per_shard: int = ROWS_PER_SHARD,
    rows_per_file: int = ROWS_PER_FILE,
    batch_size: int = BATCH_SIZE,
) -> RunPlan:
    """Plan a run into ``work_dir``, or find the plan of the same run already there.

    The plan's fingerprint covers the recipe, the settings and every input's bytes; a work
    folder holding another run's plan is refused rather than mixed.
    """
    if not inputs:
        raise CurationError("no input files to curate")
    recipe_body = dict(recipe) if isinstance(recipe, Mapping) else load_recipe(recipe)
    pipeline = Pipeline.from_recipe(recipe_body)
    identity = {
        "recipe": recipe_body,
        "inputs": [
            {
                "source_name": item.source_name,
                "format": item.format,
                "contributor": item.contributor,
                "sha256": _file_sha256(item.path),
            }
            for item in inputs
        ],
        "rows_per_shard": rows_per_shard,
        "rows_per_file": rows_per_file,
        "batch_size": batch_size,
    }
    fingerprint = hashlib.sha256(_canonical(identity).encode()).hexdigest()
    plan_path = work_dir / "plan.json"
    if plan_path.is_file():
        plan = load_plan(work_dir)
        if plan.fingerprint != fingerprint:
            raise CurationError(f"{work_dir} holds the work of another run; use a fresh folder")
        return plan
    schema = common_schema(inputs, batch_size)
    counts = []
    for item in inputs:
        count = count_rows(item.path, format=item.format, source_name=item.source_name)
        if count == 0:
            raise CurationError(f"{item.source_name}: the file has no rows")
        counts.append(count)
    plan = RunPlan(
        inputs=list(inputs),
        recipe=recipe_body,
        schema=schema,
        shards=plan_shards(counts, rows_per_shard),
        stages=plan_stages(pipeline.steps),
        rows_per_file=rows_per_file,
        batch_size=batch_size,
        fingerprint=fingerprint,
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    stored = {
        "fingerprint": fingerprint,
        "recipe": recipe_body,
        "inputs": [{**asdict(item), "path": _plan_path(item.path, work_dir)} for item in inputs],
        "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
        "shards": [asdict(shard) for shard in plan.shards],
        "stages": [asdict(stage) for stage in plan.stages],
        "rows_per_file": rows_per_file,
        "batch_size": batch_size,
    }
    _write_atomically(plan_path, json.dumps(stored, indent=1).encode())
    return plan


def _plan_path(path: Path, work_dir: Path) -> str:
    """An input's path as the plan stores it: relative when the input is inside the work folder
    (a staged run, whose folder moves between machines), else absolute."""
    resolved, folder = path.resolve(), work_dir.resolve()
    return resolved.relative_to(folder).as_posix() if resolved.is_relative_to(folder) else str(path)


def load_plan(work_dir: Path) -> RunPlan:
    """The plan :func:`prepare_run` stored in ``work_dir``."""
    try:
        stored = json.loads((work_dir / "plan.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurationError(f"{work_dir} holds no planned run") from None
    return RunPlan(
        inputs=[
            InputFile(**{**item, "path": work_dir / item["path"]}) for item in stored["inputs"]
        ],
        recipe=stored["recipe"],
        schema=pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored["schema"]))),
        shards=[ShardSpec(**shard) for shard in stored["shards"]],
        stages=[
            Stage(stage["kind"], tuple(stage["steps"]), tuple(stage["signatures"]))
            for stage in stored["stages"]
        ],
        rows_per_file=stored["rows_per_file"],
        batch_size=stored["batch_size"],
        fingerprint=stored["fingerprint"],
    )


# Where each stage's rows come from


@dataclass(frozen=True)
class _Source:
    """Rows as a stage reads them: the shard files of ``parts`` less the rows ``drops`` lists."""

    parts: int | None  # None: the input files
    drops: int | None  # a global stage whose drops.parquet applies, or None


def _sources(plan: RunPlan) -> list[_Source]:
    """The source of each stage, then of the merge."""
    pipeline_steps = Pipeline.from_recipe(plan.recipe).steps
    sources = []
    parts: int | None = None
    drops: int | None = None
    for index, stage in enumerate(plan.stages):
        sources.append(_Source(parts, drops))
        if stage.kind == "shards" or _rewrites(pipeline_steps, stage):
            parts, drops = index, None
        else:
            drops = index
    sources.append(_Source(parts, drops))
    return sources


def _stage_dir(work_dir: Path, stage: int) -> Path:
    return work_dir / f"stage-{stage:02d}"


def _shard_file(work_dir: Path, stage: int, shard: int, suffix: str = ".parquet") -> Path:
    return _stage_dir(work_dir, stage) / f"shard-{shard:05d}{suffix}"


def _dropped_rows(work_dir: Path, source: _Source) -> dict[int, Rows]:
    if source.drops is None:
        return {}
    table = pq.read_table(_stage_dir(work_dir, source.drops) / "drops.parquet")
    shards = table.column("shard").to_numpy()
    rows = table.column("row").to_numpy()
    return {int(shard): rows[shards == shard] for shard in np.unique(shards)}


def _read_part(
    work_dir: Path,
    source: _Source,
    shard: int,
    drops: Mapping[int, Rows],
    *,
    columns: list[str] | None = None,
    with_row: bool = False,
) -> pa.Table | None:
    """A shard's rows from its source, less the dropped ones; None when it has none."""
    assert source.parts is not None
    path = _shard_file(work_dir, source.parts, shard)
    if not path.is_file():
        return None
    table = pq.read_table(path, columns=columns).replace_schema_metadata(None)
    if with_row:
        table = table.append_column(_PART_ROW, pa.array(np.arange(table.num_rows), pa.int64()))
    dropped = drops.get(shard)
    if dropped is not None and len(dropped):
        keep = np.ones(table.num_rows, np.bool_)
        keep[dropped] = False
        table = table.filter(pa.array(keep))
    return table


# The work of one shard, one global stage, and the merge


def run_shard(work_dir: Path, stage: int, shard: int) -> dict[str, Any]:
    """Run shard ``shard`` of shard stage ``stage``, unless its marker says it is done."""
    marker = _shard_file(work_dir, stage, shard, ".done.json")
    done = _valid_marker(marker)
    if done is not None:
        return {**done, "skipped": True}
    plan = load_plan(work_dir)
    pipeline = Pipeline.from_recipe(plan.recipe)
    spec = plan.stages[stage]
    if spec.kind != "shards":
        raise CurationError(f"stage {stage} is not a shards stage")
    steps = [pipeline.steps[index] for index in spec.steps]
    provenance: AddProvenance | None = None
    if stage == 0:
        range_ = plan.shards[shard]
        item = plan.inputs[range_.input]
        provenance = AddProvenance(item.contributor, item.source_name, first_row=range_.start)
        batches: Iterator[pa.RecordBatch] = provenance.run(
            read_batches(
                item.path,
                format=item.format,
                batch_size=plan.batch_size,
                source_name=item.source_name,
                schema=plan.schema,
                start=range_.start,
                stop=range_.stop,
            )
        )
    else:
        source = _sources(plan)[stage]
        table = _read_part(work_dir, source, shard, _dropped_rows(work_dir, source))
        batches = iter(table.to_batches(plan.batch_size) if table is not None else [])
    out = [batch for batch in Pipeline(steps).run(batches) if batch.num_rows]
    _stage_dir(work_dir, stage).mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    rows_out = sum(batch.num_rows for batch in out)
    if out:
        table = pa.Table.from_batches(out)
        files[".parquet"] = _write_part(table, _shard_file(work_dir, stage, shard))
        for index in spec.signatures:
            near = pipeline.steps[index]
            assert isinstance(near, NearDedup)
            signatures = _signatures(near, table, plan.batch_size)
            suffix = f".sig-{index:02d}.parquet"
            files[suffix] = _write_part(signatures, _shard_file(work_dir, stage, shard, suffix))
    excluded = _exclusions_table(steps, spec.steps)
    if excluded.num_rows:
        path = _shard_file(work_dir, stage, shard, ".excluded.parquet")
        files[".excluded.parquet"] = _write_part(excluded, path)
    summary = {
        "stage": stage,
        "shard": shard,
        "rows_read": provenance.stats.rows_out if provenance else None,
        "rows_out": rows_out,
        "files": files,
        "steps": _step_counts(steps, spec.steps),
    }
    _write_atomically(marker, json.dumps(summary, indent=1).encode())
    return {**summary, "skipped": False}


def run_global(work_dir: Path, stage: int) -> dict[str, Any]:
    """Run global stage ``stage`` over every shard in order, unless its marker says it is done."""
    marker = _stage_dir(work_dir, stage) / "done.json"
    done = _valid_marker(marker)
    if done is not None:
        return {**done, "skipped": True}
    plan = load_plan(work_dir)
    _require_markers(work_dir, plan, stage)
    pipeline = Pipeline.from_recipe(plan.recipe)
    spec = plan.stages[stage]
    if spec.kind != "global" or len(spec.steps) != 1:
        raise CurationError(f"stage {stage} is not a global stage of one step")
    (index,) = spec.steps
    step = pipeline.steps[index]
    source = _sources(plan)[stage]
    drops = _dropped_rows(work_dir, source)
    folder = _stage_dir(work_dir, stage)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    shards = range(len(plan.shards))
    new_drops: dict[int, Rows]
    excluded: pa.Table | None = None
    if isinstance(step, NearDedup):
        new_drops, excluded = _near_dedup(work_dir, plan, source, drops, step, index)
    elif step.changes_content:
        new_drops = {}
        for shard in shards:
            table = _read_part(work_dir, source, shard, drops)
            out = step.run(iter(table.to_batches(plan.batch_size) if table is not None else []))
            rows = [batch for batch in ContentHash().run(out) if batch.num_rows]
            if rows:
                path = _shard_file(work_dir, stage, shard)
                files[path.name] = _write_part(pa.Table.from_batches(rows), path)
    else:
        columns = None
        if isinstance(step, ExactDedup):
            columns = [*PROVENANCE_COLUMNS, *(step.columns or [])]
        new_drops = {}
        for shard in shards:
            table = _read_part(work_dir, source, shard, drops, columns=columns, with_row=True)
            if table is None:
                continue
            kept: list[int] = []
            for batch in step.run(iter(table.to_batches(plan.batch_size))):
                kept += batch.column(_PART_ROW).to_pylist()
            before = table.column(_PART_ROW).to_numpy()
            gone = np.setdiff1d(before, np.array(kept, np.int64))
            if len(gone):
                new_drops[shard] = gone
    if excluded is None:
        excluded = _exclusions_table([step], [index])
    if isinstance(step, NearDedup) or not step.changes_content:
        merged = {
            shard: np.union1d(
                drops.get(shard, np.zeros(0, np.int64)), new_drops.get(shard, np.zeros(0, np.int64))
            )
            for shard in sorted(set(drops) | set(new_drops))
        }
        table = pa.table(
            {
                "shard": pa.array(
                    np.concatenate(
                        [np.full(len(rows), shard, np.int64) for shard, rows in merged.items()]
                        or [np.zeros(0, np.int64)]
                    ),
                    pa.int64(),
                ),
                "row": pa.array(
                    np.concatenate(
                        [rows.astype(np.int64) for rows in merged.values()]
                        or [np.zeros(0, np.int64)]
                    ),
                    pa.int64(),
                ),
            }
        )
        files["drops.parquet"] = _write_part(table, folder / "drops.parquet")
    if excluded.num_rows:
        files["excluded.parquet"] = _write_part(excluded, folder / "excluded.parquet")
    summary = {"stage": stage, "files": files, "steps": _step_counts([step], [index])}
    _write_atomically(marker, json.dumps(summary, indent=1).encode())
    return {**summary, "skipped": False}


def _near_dedup(
    work_dir: Path,
    plan: RunPlan,
    source: _Source,
    drops: Mapping[int, Rows],
    step: NearDedup,
    index: int,
) -> tuple[dict[int, Rows], pa.Table]:
    """Cluster the signatures the source stage saved for the rows still there."""
    assert source.parts is not None
    signatures: list[ShardSignatures] = []
    kept_rows: list[Rows] = []
    owners: list[int] = []
    for shard in range(len(plan.shards)):
        path = _shard_file(work_dir, source.parts, shard, f".sig-{index:02d}.parquet")
        if not path.is_file():
            continue
        table = pq.read_table(path)
        keep = np.ones(table.num_rows, np.bool_)
        dropped = drops.get(shard)
        if dropped is not None and len(dropped):
            keep[dropped] = False
        signatures.append(ShardSignatures.from_table(table.filter(pa.array(keep))))
        kept_rows.append(np.flatnonzero(keep))
        owners.append(shard)
    rows_in = sum(len(rows) for rows in kept_rows)
    found = find_near_duplicates(signatures, min_similarity=step.min_similarity)
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for (position, row), kept_hash in found.drops.items():
        by_shard.setdefault(owners[position], []).append((int(kept_rows[position][row]), kept_hash))
    new_drops: dict[int, Rows] = {}
    records: list[dict[str, Any]] = []
    for shard in sorted(by_shard):
        pairs = sorted(by_shard[shard])
        rows = np.array([row for row, _ in pairs], np.int64)
        new_drops[shard] = rows
        provenance = pq.read_table(
            _shard_file(work_dir, source.parts, shard),
            columns=[CONTENT_HASH_COLUMN, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN],
        ).take(pa.array(rows))
        for (_, kept_hash), row in zip(pairs, provenance.to_pylist(), strict=True):
            records.append(
                {
                    "step": step.name,
                    "reason": f"{NEAR_DUPLICATE} of {kept_hash}",
                    "content_hash": row[CONTENT_HASH_COLUMN],
                    "source_file": row[SOURCE_FILE_COLUMN],
                    "source_row": row[SOURCE_ROW_COLUMN],
                    _STEP_INDEX: index,
                }
            )
    step.stats.rows_in = rows_in
    step.stats.rows_out = rows_in - len(records)
    if records:
        step.stats.dropped_by_reason = {NEAR_DUPLICATE: len(records)}
    step.record_clusters(found.cluster_sizes)
    return new_drops, pa.Table.from_pylist(records, schema=_EXCLUDED_WITH_STEP)


def run_merge(work_dir: Path, out_dir: Path) -> CurationResult:
    """Write the run's Parquet files and exclusions from every shard's last rows, in order."""
    plan = load_plan(work_dir)
    _require_markers(work_dir, plan, len(plan.stages))
    pipeline = Pipeline.from_recipe(plan.recipe)
    source = _sources(plan)[len(plan.stages)]
    drops = _dropped_rows(work_dir, source)

    def rows() -> Iterator[pa.RecordBatch]:
        for shard in range(len(plan.shards)):
            table = _read_part(work_dir, source, shard, drops)
            if table is not None:
                yield from table.to_batches(plan.batch_size)

    out_dir.mkdir(parents=True, exist_ok=True)
    shards = write_parquet_shards(rows(), out_dir, rows_per_shard=plan.rows_per_file)
    markers = _markers(work_dir, plan)
    excluded = []
    for stage, stage_markers in enumerate(markers):
        for marker in stage_markers:
            if plan.stages[stage].kind == "shards":
                name = ".excluded.parquet"
                path = _shard_file(work_dir, stage, marker["shard"], name)
            else:
                name = "excluded.parquet"
                path = _stage_dir(work_dir, stage) / name
            if name not in marker["files"]:
                continue
            excluded.append(pq.read_table(path).replace_schema_metadata(None))
    exclusions = None
    if excluded:
        table = pa.concat_tables(excluded)
        table = table.take(pc.sort_indices(table, [(_STEP_INDEX, "ascending")]))
        exclusions = write_exclusions_table(table.drop_columns([_STEP_INDEX]), out_dir)

    counts = _merge_counts(pipeline.steps, markers)
    read_by_input = [0] * len(plan.inputs)
    for marker in markers[0]:
        read_by_input[plan.shards[marker["shard"]].input] += marker["rows_read"]
    rows_in = sum(read_by_input)
    num_rows = sum(shard.num_rows for shard in shards)
    content_hash = version_content_hash(shards)
    steps = [{key: value for key, value in step.items() if key != "details"} for step in counts]
    report = {
        "recipe": pipeline.name,
        "rows_in": rows_in,
        "rows_out": num_rows,
        "rows_dropped": rows_in - num_rows,
        "inputs": [
            {
                "source_file": item.source_name,
                "contributor": item.contributor,
                "format": item.format,
                "rows": read,
            }
            for item, read in zip(plan.inputs, read_by_input, strict=True)
        ],
        "steps": counts,
        "shards": [asdict(shard) for shard in shards],
        "exclusions": asdict(exclusions) if exclusions else None,
        "content_hash": content_hash,
    }
    _write_atomically(work_dir / "result.json", json.dumps(report, indent=1).encode())
    return CurationResult(
        shards=shards,
        exclusions=exclusions,
        num_rows=num_rows,
        rows_in=rows_in,
        schema=pq.read_schema(out_dir / shards[0].path),
        steps=steps,
        content_hash=content_hash,
        report=report,
    )


def result_from_report(report: Mapping[str, Any], out_dir: Path) -> CurationResult:
    """The :class:`CurationResult` of a merge, from the report it wrote (``result.json``)."""
    shards = [ShardInfo(**shard) for shard in report["shards"]]
    return CurationResult(
        shards=shards,
        exclusions=ShardInfo(**report["exclusions"]) if report["exclusions"] else None,
        num_rows=report["rows_out"],
        rows_in=report["rows_in"],
        schema=pq.read_schema(out_dir / shards[0].path),
        steps=[{k: v for k, v in step.items() if k != "details"} for step in report["steps"]],
        content_hash=report["content_hash"],
        report=dict(report),
    )


# Helpers of the stages


def _signatures(step: NearDedup, table: pa.Table, batch_size: int) -> pa.Table:
    hasher = MinHasher(step.config)
    parts = [
        hasher.shard_signatures(
            text_of(batch, step.columns, step.name),
            batch.column(CONTENT_HASH_COLUMN).to_pylist(),
            keep_signatures=step.min_similarity is not None,
        )
        for batch in table.to_batches(batch_size)
    ]
    return ShardSignatures.concat(parts).to_table()


def _exclusions_table(steps: Sequence[Step], indices: Sequence[int]) -> pa.Table:
    records = [
        {**record, _STEP_INDEX: index}
        for step, index in zip(steps, indices, strict=True)
        if isinstance(step, Filter)
        for record in step.exclusions
    ]
    return pa.Table.from_pylist(records, schema=_EXCLUDED_WITH_STEP)


def _step_counts(steps: Sequence[Step], indices: Sequence[int]) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "rows_in": step.stats.rows_in,
            "rows_out": step.stats.rows_out,
            "dropped_by_reason": dict(step.stats.dropped_by_reason),
            "details": step.details,
        }
        for step, index in zip(steps, indices, strict=True)
    ]


def _merge_counts(
    steps: Sequence[Step], markers: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Each step's report entry, adding up its shards' counts in source order."""
    found: dict[int, list[Mapping[str, Any]]] = {}
    for stage_markers in markers:
        for marker in stage_markers:
            for count in marker["steps"]:
                found.setdefault(count["index"], []).append(count)
    reports = []
    for index, step in enumerate(steps):
        parts = found.get(index, [])
        dropped: dict[str, int] = {}
        for part in parts:
            for reason, number in part["dropped_by_reason"].items():
                dropped[reason] = dropped.get(reason, 0) + number
        report: dict[str, Any] = {
            "step": step.name,
            "params": step.params,
            "rows_in": sum(part["rows_in"] for part in parts),
            "rows_out": sum(part["rows_out"] for part in parts),
            "dropped_by_reason": dropped,
        }
        details = step.merge_details([part["details"] for part in parts if part["details"]])
        if details:
            report["details"] = details
        reports.append(report)
    return reports


def _markers(work_dir: Path, plan: RunPlan) -> list[list[dict[str, Any]]]:
    markers = []
    for stage, spec in enumerate(plan.stages):
        if spec.kind == "shards":
            paths = [
                _shard_file(work_dir, stage, shard, ".done.json")
                for shard in range(len(plan.shards))
            ]
        else:
            paths = [_stage_dir(work_dir, stage) / "done.json"]
        markers.append([json.loads(path.read_text(encoding="utf-8")) for path in paths])
    return markers


def _require_markers(work_dir: Path, plan: RunPlan, before: int) -> None:
    """Refuse to go on unless every stage before ``before`` is done."""
    missing = []
    for stage in range(before):
        if plan.stages[stage].kind == "shards":
            missing += [
                f"stage {stage} shard {shard}"
                for shard in range(len(plan.shards))
                if not _shard_file(work_dir, stage, shard, ".done.json").is_file()
            ]
        elif not (_stage_dir(work_dir, stage) / "done.json").is_file():
            missing.append(f"stage {stage}")
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise CurationError(f"not every shard is done: {shown}")


def _valid_marker(marker: Path) -> dict[str, Any] | None:
    """The marker's content if it is there and every file it names still has its hash."""
    try:
        done: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    folder = marker.parent
    prefix = marker.name.removesuffix(".done.json") if marker.name != "done.json" else ""
    for name, digest in done["files"].items():
        path = folder / (prefix + name if prefix else name)
        if not path.is_file() or _file_sha256(path) != digest:
            marker.unlink()
            return None
    return done


def _write_part(table: pa.Table, path: Path) -> str:
    """Write an intermediate table atomically; return its SHA-256."""
    temporary = path.with_name(path.name + ".partial")
    pq.write_table(table, temporary, compression="lz4")
    os.replace(temporary, path)
    return _file_sha256(path)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


# Executors


def _outcome_rows(outcome: Mapping[str, Any]) -> tuple[int, int]:
    """The rows a shard or global task took in and put out, from its summary."""
    steps = outcome.get("steps") or []
    if outcome.get("rows_read") is not None:
        rows_in = int(outcome["rows_read"])
    elif steps:
        rows_in = int(steps[0]["rows_in"])
    else:
        rows_in = int(outcome.get("rows_out") or 0)
    if "rows_out" in outcome:
        return rows_in, int(outcome["rows_out"] or 0)
    return rows_in, int(steps[-1]["rows_out"]) if steps else rows_in


@dataclass
class _Counter:
    run: int = 0
    skipped: int = 0

    def add(self, outcome: Mapping[str, Any]) -> None:
        if outcome.get("skipped"):
            self.skipped += 1
        else:
            self.run += 1


@dataclass
class Executor:
    """Runs a planned run's stages in order; subclasses say where a stage's tasks run."""

    progress: ProgressCallback | None = field(default=None, kw_only=True)

    def run(
        self,
        inputs: Sequence[InputFile],
        out_dir: Path,
        *,
        recipe: Mapping[str, Any] | Path | str,
        work_dir: Path,
        rows_per_shard: int = ROWS_PER_SHARD,
        rows_per_file: int = ROWS_PER_FILE,
        batch_size: int = BATCH_SIZE,
    ) -> CurationResult:
        """Curate ``inputs`` into ``out_dir``, keeping resumable work in ``work_dir``."""
        plan = self._prepare(
            inputs,
            work_dir,
            recipe=recipe,
            rows_per_shard=rows_per_shard,
            rows_per_file=rows_per_file,
            batch_size=batch_size,
        )
        counter = _Counter()
        names = plan.stage_names()
        for stage, spec in enumerate(plan.stages):
            total = len(plan.shards) if spec.kind == "shards" else 1
            state = StageProgress(stage, names[stage], spec.kind, 0, total, 0)
            self._report(state)
            if spec.kind == "shards":
                outcomes = self._run_shards(work_dir, stage, len(plan.shards))
            else:
                outcomes = self._run_global(work_dir, stage)
            for outcome in outcomes:
                counter.add(outcome)
                rows_in, rows_out = _outcome_rows(outcome)
                state = StageProgress(
                    stage,
                    state.name,
                    spec.kind,
                    state.done + 1,
                    total,
                    state.rows_out + rows_out,
                    state.rows_in + rows_in,
                    outcome.get("shard"),
                    rows_in,
                    rows_out,
                )
                self._report(state)
        merge = StageProgress(len(plan.stages), "merge", "merge", 0, 1, 0)
        self._report(merge)
        result = self._run_merge(work_dir, out_dir)
        rows = result.num_rows
        self._report(StageProgress(merge.stage, "merge", "merge", 1, 1, rows, rows))
        result.tasks_run, result.tasks_skipped = counter.run, counter.skipped
        return result

    def _prepare(self, inputs: Sequence[InputFile], work_dir: Path, **options: Any) -> RunPlan:
        return prepare_run(inputs, work_dir, **options)

    def _report(self, state: StageProgress) -> None:
        if self.progress is not None:
            self.progress(state)

    def _run_shards(self, work_dir: Path, stage: int, count: int) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def _run_global(self, work_dir: Path, stage: int) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def _run_merge(self, work_dir: Path, out_dir: Path) -> CurationResult:
        raise NotImplementedError


@dataclass
class LocalExecutor(Executor):
    """Shards on ``processes`` local processes (default: one per core); global stages and the
    merge in this process. With one process everything runs here, without a pool."""

    processes: int | None = None

    def __post_init__(self) -> None:
        if self.processes is None:
            self.processes = os.cpu_count() or 1
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, not {self.processes}")
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def run(
        self,
        inputs: Sequence[InputFile],
        out_dir: Path,
        *,
        recipe: Mapping[str, Any] | Path | str,
        work_dir: Path,
        rows_per_shard: int = ROWS_PER_SHARD,
        rows_per_file: int = ROWS_PER_FILE,
        batch_size: int = BATCH_SIZE,
    ) -> CurationResult:
        try:
            return super().run(
                inputs,
                out_dir,
                recipe=recipe,
                work_dir=work_dir,
                rows_per_shard=rows_per_shard,
                rows_per_file=rows_per_file,
                batch_size=batch_size,
            )
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None

    def _run_shards(self, work_dir: Path, stage: int, count: int) -> Iterator[dict[str, Any]]:
        if self.processes == 1 or count == 1:
            for shard in range(count):
                yield run_shard(work_dir, stage, shard)
            return
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn")
            )
        futures = [self._pool.submit(run_shard, work_dir, stage, shard) for shard in range(count)]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except concurrent.futures.process.BrokenProcessPool as error:
            raise InterruptedRunError(
                f"a worker process died during stage {stage}; run again to resume "
                f"(finished shards in {work_dir} are kept)"
            ) from error

    def _run_global(self, work_dir: Path, stage: int) -> Iterator[dict[str, Any]]:
        yield run_global(work_dir, stage)

    def _run_merge(self, work_dir: Path, out_dir: Path) -> CurationResult:
        return run_merge(work_dir, out_dir)


@dataclass
class CeleryExecutor(Executor):
    """One Celery task per shard on the ``curation`` queue, one per global stage, one merge.

    Workers share nothing but the object store: this process copies the inputs into
    ``work_dir/inputs/``, plans the run there and puts the plan and the inputs under ``prefix``
    in ``store`` (default ``curation-work/<the plan's fingerprint>``); each task fetches what it
    reads into a scratch folder of its own worker, runs, and puts back what it wrote, its
    completion marker last (see :func:`staged_shard`). The merge's files come back into
    ``out_dir``. This process waits for each stage's tasks, so it must not be a worker itself.
    ``app`` is the Celery app to send through (default: :data:`infra.queue.app`); ``store`` the
    object store the workers use too. ``workers`` collects which worker ran each task.
    """

    store: ObjectStore | None = None
    prefix: str | None = None
    app: Any = None
    timeout: float = 3600.0
    poll_interval: float = 0.05
    workers: set[str] = field(default_factory=set)

    def _celery(self) -> Any:
        if self.app is None:
            from infra.queue import app

            self.app = app
        return self.app

    def _object_store(self) -> ObjectStore:
        if self.store is None:
            from infra.storage import get_object_store

            self.store = get_object_store()
        return self.store

    def _prepare(self, inputs: Sequence[InputFile], work_dir: Path, **options: Any) -> RunPlan:
        staged = []
        for index, item in enumerate(inputs):
            local = work_dir / STAGED_INPUTS / f"{index:05d}.{item.format}"
            if not local.is_file() or _file_sha256(local) != _file_sha256(item.path):
                local.parent.mkdir(parents=True, exist_ok=True)
                temporary = local.with_name(local.name + ".partial")
                shutil.copyfile(item.path, temporary)
                os.replace(temporary, local)
            staged.append(InputFile(local, item.format, item.source_name, item.contributor))
        plan = prepare_run(staged, work_dir, **options)
        if self.prefix is None:
            self.prefix = f"{STAGED_PREFIX}/{plan.fingerprint[:32]}"
        store = self._object_store()
        names = ["plan.json", *(item.path.relative_to(work_dir).as_posix() for item in staged)]
        for name in names:
            _put_if_changed(store, work_dir / name, f"{self.prefix}/{name}")
        return plan

    def _wait(self, results: list[Any]) -> Iterator[dict[str, Any]]:
        pending = list(results)
        deadline = time.monotonic() + self.timeout
        while pending:
            for result in [result for result in pending if result.ready()]:
                pending.remove(result)
                value: dict[str, Any] = result.get(
                    timeout=self.timeout, interval=self.poll_interval
                )
                if value.get("worker"):
                    self.workers.add(value["worker"])
                yield value
            if pending:
                if time.monotonic() > deadline:
                    raise InterruptedRunError(
                        f"{len(pending)} curation tasks did not finish in {self.timeout:.0f} s"
                    )
                time.sleep(self.poll_interval)

    def _run_shards(self, work_dir: Path, stage: int, count: int) -> Iterator[dict[str, Any]]:
        app = self._celery()
        results = [
            app.send_task("curation.shard", args=[self.prefix, stage, shard])
            for shard in range(count)
        ]
        yield from self._wait(results)

    def _run_global(self, work_dir: Path, stage: int) -> Iterator[dict[str, Any]]:
        app = self._celery()
        yield from self._wait([app.send_task("curation.global_stage", args=[self.prefix, stage])])

    def _run_merge(self, work_dir: Path, out_dir: Path) -> CurationResult:
        app = self._celery()
        (report,) = self._wait([app.send_task("curation.merge", args=[self.prefix])])
        if report.get("worker"):
            report = {key: value for key, value in report.items() if key != "worker"}
        store = self._object_store()
        files = [ShardInfo(**shard) for shard in report["shards"]]
        if report["exclusions"]:
            files.append(ShardInfo(**report["exclusions"]))
        for info in files:
            local = out_dir / info.path
            store.download_to(f"{self.prefix}/{STAGED_OUT}/{info.path}", local)
            if _file_sha256(local) != info.sha256:
                raise CurationError(f"{info.path} changed between the merge and its download")
        return result_from_report(report, out_dir)


# Work staged through an object store: what each task fetches, runs and puts back

STAGED_PREFIX = "curation-work"
STAGED_INPUTS = "inputs"
STAGED_OUT = "out"
_WORKER = f"{socket.gethostname()}:{os.getpid()}"


def staged_shard(
    store: ObjectStore, prefix: str, stage: int, shard: int, *, scratch_root: Path
) -> dict[str, Any]:
    """Run a shard task of a run staged under ``prefix``, in a scratch folder of this worker.

    Done already when the store holds the shard's marker and every file it names, with their
    hashes; otherwise the task fetches the plan and the shard's source (an input file, or the
    shard's rows from an earlier stage and the drops that apply), runs :func:`run_shard`, and
    puts its files back, the marker last, so a marker in the store means the work is there.
    """
    folder = f"stage-{stage:02d}"
    marker = f"{folder}/shard-{shard:05d}.done.json"
    done = _stored_marker(store, prefix, marker)
    if done is not None:
        return {**done, "skipped": True, "worker": _WORKER}
    with _scratch(scratch_root) as work_dir:
        plan = _fetch_plan(store, prefix, work_dir)
        if not 0 <= shard < len(plan.shards):
            raise CurationError(f"{prefix}: no shard {shard} (the run has {len(plan.shards)})")
        if stage == 0:
            path = plan.inputs[plan.shards[shard].input].path
            _fetch(store, prefix, work_dir, [_staged_name(path, work_dir)])
        else:
            source = _sources(plan)[stage]
            assert source.parts is not None
            part = f"stage-{source.parts:02d}/shard-{shard:05d}.parquet"
            _fetch(store, prefix, work_dir, [part], optional=True)
            if source.drops is not None:
                _fetch(store, prefix, work_dir, [f"stage-{source.drops:02d}/drops.parquet"])
        summary = run_shard(work_dir, stage, shard)
        _put_marked(store, prefix, work_dir, marker, summary["files"])
    return {**summary, "skipped": False, "worker": _WORKER}


def staged_global(
    store: ObjectStore, prefix: str, stage: int, *, scratch_root: Path
) -> dict[str, Any]:
    """Run global stage ``stage`` of a run staged under ``prefix``; see :func:`staged_shard`.

    It fetches the markers of every earlier stage, the source stage's shard files (rows and
    MinHash signatures, not exclusions) and the drops that apply.
    """
    marker = f"stage-{stage:02d}/done.json"
    done = _stored_marker(store, prefix, marker)
    if done is not None:
        return {**done, "skipped": True, "worker": _WORKER}
    with _scratch(scratch_root) as work_dir:
        plan = _fetch_plan(store, prefix, work_dir)
        if not 0 <= stage < len(plan.stages):
            raise CurationError(f"{prefix}: no stage {stage} (the run has {len(plan.stages)})")
        source = _sources(plan)[stage]
        _fetch_stage_files(store, prefix, work_dir, plan, before=stage, source=source)
        summary = run_global(work_dir, stage)
        _put_marked(store, prefix, work_dir, marker, summary["files"])
    return {**summary, "skipped": False, "worker": _WORKER}


def staged_merge(store: ObjectStore, prefix: str, *, scratch_root: Path) -> dict[str, Any]:
    """Merge a run staged under ``prefix``: its files go under ``<prefix>/out/``, then its report
    (``result.json``, the marker of the merge); returns the report."""
    done = _stored_report(store, prefix)
    if done is not None:
        return {**done, "worker": _WORKER}
    with _scratch(scratch_root) as work_dir:
        plan = _fetch_plan(store, prefix, work_dir)
        source = _sources(plan)[len(plan.stages)]
        _fetch_stage_files(
            store, prefix, work_dir, plan, before=len(plan.stages), source=source, merge=True
        )
        result = run_merge(work_dir, work_dir / STAGED_OUT)
        files = list(result.shards) + ([result.exclusions] if result.exclusions else [])
        for info in files:
            stored = store.put_file(
                work_dir / STAGED_OUT / info.path, key=f"{prefix}/{STAGED_OUT}/{info.path}"
            )
            if stored.sha256 != info.sha256:
                raise CurationError(f"{info.path} changed while it was stored")
        store.put_file(work_dir / "result.json", key=f"{prefix}/result.json")
    return {**result.report, "worker": _WORKER}


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="task-", dir=root) as folder:
        yield Path(folder)


def _staged_name(path: Path, work_dir: Path) -> str:
    if not path.resolve().is_relative_to(work_dir.resolve()):
        raise CurationError(f"{path}: an input of a staged run must be inside its work folder")
    return path.resolve().relative_to(work_dir.resolve()).as_posix()


def _fetch_plan(store: ObjectStore, prefix: str, work_dir: Path) -> RunPlan:
    from infra.storage import ObjectNotFoundError

    try:
        store.download_to(f"{prefix}/plan.json", work_dir / "plan.json")
    except ObjectNotFoundError:
        raise CurationError(f"{prefix}: no planned run is staged there") from None
    return load_plan(work_dir)


def _fetch(
    store: ObjectStore, prefix: str, work_dir: Path, names: Sequence[str], *, optional: bool = False
) -> None:
    from infra.storage import ObjectNotFoundError

    for name in names:
        try:
            store.download_to(f"{prefix}/{name}", work_dir / name)
        except ObjectNotFoundError:
            if not optional:
                raise CurationError(f"{prefix}/{name} is missing from the object store") from None


def _fetch_stage_files(
    store: ObjectStore,
    prefix: str,
    work_dir: Path,
    plan: RunPlan,
    *,
    before: int,
    source: _Source,
    merge: bool = False,
) -> None:
    """The markers of stages before ``before``, the source's rows (and, for a global stage,
    signatures) and drops, and for the merge every stage's exclusions."""
    names = []
    for stage in range(before):
        folder = f"stage-{stage:02d}/"
        for stored in store.list(f"{prefix}/{folder}"):
            name = stored.key.removeprefix(f"{prefix}/")
            base = name.removeprefix(folder)
            wanted = base.endswith("done.json")
            if merge:
                wanted |= base.endswith("excluded.parquet")
            if stage == source.parts:
                rows = base.startswith("shard-") and base.count(".") == 1
                wanted |= rows or (not merge and ".sig-" in base)
            if stage == source.drops:
                wanted |= base == "drops.parquet"
            if wanted:
                names.append(name)
    _fetch(store, prefix, work_dir, names)


def _put_marked(
    store: ObjectStore, prefix: str, work_dir: Path, marker: str, files: Mapping[str, str]
) -> None:
    """Put a task's files, then its marker, from ``work_dir`` into the store."""
    folder, _, name = marker.rpartition("/")
    stem = name.removesuffix(".done.json") if name != "done.json" else ""
    for file_name, digest in files.items():
        relative = f"{folder}/{stem}{file_name}"
        stored = store.put_file(work_dir / relative, key=f"{prefix}/{relative}")
        if stored.sha256 != digest:
            raise CurationError(f"{relative} changed while it was stored")
    store.put_file(work_dir / marker, key=f"{prefix}/{marker}")


def _stored_marker(store: ObjectStore, prefix: str, marker: str) -> dict[str, Any] | None:
    """The marker's content if the store holds it and every file it names, with their hashes."""
    from infra.storage import ObjectNotFoundError

    try:
        done: dict[str, Any] = json.loads(store.get_bytes(f"{prefix}/{marker}"))
    except ObjectNotFoundError:
        return None
    folder, _, name = marker.rpartition("/")
    stem = name.removesuffix(".done.json") if name != "done.json" else ""
    for file_name, digest in done["files"].items():
        try:
            if store.stat(f"{prefix}/{folder}/{stem}{file_name}").sha256 != digest:
                return None
        except ObjectNotFoundError:
            return None
    return done


def _stored_report(store: ObjectStore, prefix: str) -> dict[str, Any] | None:
    """The merge's report if the store holds it and every file it names, with their hashes."""
    from infra.storage import ObjectNotFoundError

    try:
        report: dict[str, Any] = json.loads(store.get_bytes(f"{prefix}/result.json"))
    except ObjectNotFoundError:
        return None
    files = list(report["shards"]) + ([report["exclusions"]] if report["exclusions"] else [])
    for info in files:
        try:
            if store.stat(f"{prefix}/{STAGED_OUT}/{info['path']}").sha256 != info["sha256"]:
                return None
        except ObjectNotFoundError:
            return None
    return report


def _put_if_changed(store: ObjectStore, path: Path, key: str) -> None:
    from infra.storage import ObjectNotFoundError

    try:
        if store.stat(key).sha256 == _file_sha256(path):
            return
    except ObjectNotFoundError:
        pass
    store.put_file(path, key=key)

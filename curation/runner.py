"""Run a recipe over contributed files on local disk, writing a dataset version's files.

This is the whole curation of one version, without the database or the queue: read each input,
stamp its rows with provenance, run the recipe's pipeline, and write the Parquet shards and the
exclusions. It runs through :class:`~curation.executors.LocalExecutor`, so it is sharded and
resumable like every run; the Celery task downloads inputs, calls :func:`run_local` and records
the result.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curation.executors import (
    ROWS_PER_SHARD,
    CurationResult,
    InputFile,
    LocalExecutor,
    ProgressCallback,
)

__all__ = ["CurationResult", "InputFile", "run_local"]


def run_local(
    inputs: list[InputFile],
    out_dir: Path,
    *,
    recipe: Mapping[str, Any] | Path | str,
    rows_per_shard: int = 50_000,
    batch_size: int = 10_000,
    processes: int = 1,
    work_dir: Path | None = None,
    rows_per_task: int = ROWS_PER_SHARD,
    progress: ProgressCallback | None = None,
) -> CurationResult:
    """Curate ``inputs`` with ``recipe`` (a mapping, a recipe name or a YAML file) into ``out_dir``.

    ``rows_per_shard`` is the rows per output Parquet file; ``rows_per_task`` the input rows per
    work shard, run on ``processes`` processes. ``work_dir`` keeps the resumable work (default: a
    temporary folder, removed afterwards). All inputs must have the same data columns with
    compatible types (a column that is all null in one file takes its type from the others).
    Raises :class:`CurationError` (or its subclass
    :class:`~curation.errors.InvalidInputError`) naming the file when they do not, or when a file
    is invalid.
    """
    executor = LocalExecutor(processes=processes, progress=progress)
    options: dict[str, Any] = {
        "recipe": recipe,
        "rows_per_shard": rows_per_task,
        "rows_per_file": rows_per_shard,
        "batch_size": batch_size,
    }
    if work_dir is not None:
        return executor.run(inputs, out_dir, work_dir=work_dir, **options)
    with tempfile.TemporaryDirectory(prefix="aidx-curation-work-") as temporary:
        return executor.run(inputs, out_dir, work_dir=Path(temporary), **options)

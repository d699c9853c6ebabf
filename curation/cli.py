"""``aidx curate``: curate local files with a recipe into a folder, with progress per stage.

Work goes to a hidden folder inside ``--out`` (``.aidx-curate-<key>/``, the key naming the
recipe, the inputs and the options), and the dataset's files are moved into ``--out`` only when
every stage is done. Bad input leaves ``--out`` as it was; an interrupted run (a worker died,
Ctrl-C) keeps its finished shards, and the same command resumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from curation.errors import CurationError, InterruptedRunError
from curation.executors import (
    ROWS_PER_FILE,
    ROWS_PER_SHARD,
    CeleryExecutor,
    CurationResult,
    Executor,
    InputFile,
    LocalExecutor,
    StageProgress,
)
from curation.pipeline import load_recipe
from curation.readers import detect_input_format

console = Console()
errors = Console(stderr=True, soft_wrap=True)

curate_app = typer.Typer(help="Curate local files into a dataset folder.")


@curate_app.command("curate")
def curate(
    recipe: Annotated[str, typer.Argument(help="A recipe name (e.g. web_en) or a YAML file.")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Input files (JSONL, JSON, CSV, Parquet, text) or folders.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The folder to write the dataset to.")],
    processes: Annotated[
        int | None, typer.Option("--processes", min=1, help="Worker processes (default: cores).")
    ] = None,
    contributor: Annotated[
        str, typer.Option("--contributor", help="Who contributed the inputs (provenance).")
    ] = "local",
    rows_per_shard: Annotated[
        int, typer.Option("--rows-per-shard", min=1, help="Input rows per work shard.")
    ] = ROWS_PER_SHARD,
    rows_per_file: Annotated[
        int, typer.Option("--rows-per-file", min=1, help="Rows per output Parquet file.")
    ] = ROWS_PER_FILE,
    executor: Annotated[
        Literal["local", "celery"],
        typer.Option(
            "--executor",
            help="local: processes on this machine; celery: one task per shard on the "
            "`curation` queue of `aidx worker`s, sharing work through the object store.",
        ),
    ] = "local",
) -> None:
    """Curate INPUT files with RECIPE into --out: Parquet shards, exclusions and a report."""
    try:
        recipe_body = load_recipe(recipe)
        files = [_input_file(path, contributor) for path in inputs]
    except CurationError as error:
        raise _fail(str(error)) from None
    published = [out / name for name in ("data", "exclusions.parquet", "report.json")]
    if any(path.exists() for path in published):
        raise _fail(f"{out} already holds a curated dataset; choose another --out")
    created = not out.exists()
    key = _run_key(recipe_body, files, rows_per_shard, rows_per_file)
    staging = out / f".aidx-curate-{key}"
    work, publish = staging / "work", staging / "publish"
    try:
        result = _run(
            files, publish, work, recipe_body, processes, rows_per_shard, rows_per_file, executor
        )
        from curation.report import write_quality_report

        report_files = write_quality_report(result, publish)
        for entry in sorted(publish.iterdir()):
            os.replace(entry, out / entry.name)
        shutil.rmtree(staging)
    except InterruptedRunError as error:
        raise _fail(f"{error}\nrun the same command again to resume from {staging}") from None
    except CurationError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise _fail(str(error)) from None
    _print_summary(result, out, [out / path.name for path in report_files])


def _input_file(path: Path, contributor: str) -> InputFile:
    if not path.exists():
        raise CurationError(f"{path}: no such file or folder")
    return InputFile(path, detect_input_format(path), path.name, contributor)


def _run_key(
    recipe: dict[str, Any], files: list[InputFile], rows_per_shard: int, rows_per_file: int
) -> str:
    stats = [
        [str(item.path.resolve()), item.path.stat().st_size, item.path.stat().st_mtime_ns]
        for item in files
    ]
    identity = [recipe, stats, [item.contributor for item in files], rows_per_shard, rows_per_file]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _run(
    files: list[InputFile],
    publish: Path,
    work: Path,
    recipe: dict[str, Any],
    processes: int | None,
    rows_per_shard: int,
    rows_per_file: int,
    executor_name: str = "local",
) -> CurationResult:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[int, TaskID] = {}

        def show(state: StageProgress) -> None:
            if state.stage not in tasks:
                label = f"{state.stage}. {state.name}"
                if state.kind == "shards":
                    label += " (shards)"
                tasks[state.stage] = progress.add_task(label, total=state.total, rows=0)
            progress.update(tasks[state.stage], completed=state.done, rows=f"{state.rows_out:,}")

        executor: Executor = (
            CeleryExecutor(progress=show)
            if executor_name == "celery"
            else LocalExecutor(processes=processes, progress=show)
        )
        return executor.run(
            files,
            publish,
            recipe=recipe,
            work_dir=work,
            rows_per_shard=rows_per_shard,
            rows_per_file=rows_per_file,
        )


def _print_summary(result: CurationResult, out: Path, reports: list[Path]) -> None:
    table = Table(title=f"{result.report['recipe']}: {result.rows_in:,} rows in, "
                  f"{result.num_rows:,} out")  # fmt: skip
    for column in ("step", "rows in", "rows out", "dropped because"):
        table.add_column(column, justify="right" if column.startswith("rows") else "left")
    for step in result.steps:
        reasons = sorted(step["dropped_by_reason"].items(), key=lambda item: -item[1])
        table.add_row(
            step["step"],
            f"{step['rows_in']:,}",
            f"{step['rows_out']:,}",
            "; ".join(f"{reason} ({count:,})" for reason, count in reasons[:3]),
        )
    console.print(table)
    console.print(f"{len(result.shards)} Parquet files in [bold]{out / 'data'}[/]")
    console.print(f"content hash {result.content_hash}")
    for path in reports:
        console.print(f"report: [bold]{path}[/]")


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(1)

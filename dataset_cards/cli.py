"""``aidx card``: lint a card, show what changed between two, render one, print the schema.

A card argument is a file (README.md, croissant.json or card JSON) or, for ``lint``, the id of a
dataset version (``dv_...``) or dataset (``ds_...``, its newest version) stored in the exchange.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from dataset_cards import service
from dataset_cards.documents import RenderFormat, read_card_file, render_card
from dataset_cards.errors import CardError, CardParseError
from dataset_cards.lint import LintIssue, field_path, has_errors, lint_card
from dataset_cards.render.json_schema import render_json_schema
from dataset_cards.revisions import FieldChange, diff_cards
from dataset_cards.schema import DatasetCard
from infra.db import session_scope
from marketplace.models import DatasetVersion

card_app = typer.Typer(help="Dataset cards: lint, diff and render them.", no_args_is_help=True)

_STORED_ID = re.compile(r"^(ds|dv)_[0-9A-Za-z]+$")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _stored_card(ref: str) -> DatasetCard:
    """The current card of a stored version (or of a dataset's newest version)."""
    with session_scope() as session:
        version_id = ref
        if ref.startswith("ds_"):
            newest = session.scalars(
                select(DatasetVersion.id)
                .where(DatasetVersion.dataset_id == ref)
                .order_by(DatasetVersion.number.desc())
                .limit(1)
            ).first()
            if newest is None:
                raise CardError(f"dataset {ref!r} has no versions")
            version_id = newest
        return service.current_card(session, version_id=version_id)


def _load(ref: str) -> DatasetCard:
    path = Path(ref)
    if path.is_file():
        return read_card_file(path)
    if _STORED_ID.match(ref):
        return _stored_card(ref)
    raise CardError(f"{ref}: no such file")


@card_app.command("lint")
def lint_command(
    card: str = typer.Argument(
        ..., help="README.md, croissant.json or card JSON; or a stored dv_/ds_ id."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Check the card against the data files under this folder (sizes, sha256, rows,"
        " columns); card file paths are relative to it.",
        exists=True,
        file_okay=False,
    ),
    price_plans: Path | None = typer.Option(
        None,
        "--price-plans",
        help="A JSON file holding the list of price plans the product is offered under.",
        exists=True,
        dir_okay=False,
    ),
    output: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", help="table or json."),
) -> None:
    """Report a card's errors and warnings; exit 1 when there is any error."""
    try:
        loaded = _load(card)
    except CardParseError as exc:
        issues = [LintIssue("error", _parse_error_path(exc), str(exc), "schema")]
    except CardError as exc:
        raise _fail(str(exc)) from exc
    else:
        plans = _read_price_plans(price_plans) if price_plans is not None else None
        files = _data_files(loaded, data_dir) if data_dir is not None else None
        issues = lint_card(loaded, data_files=files, price_plans=plans)
    if output is OutputFormat.JSON:
        errors = sum(issue.severity == "error" for issue in issues)
        body = {
            "card": card,
            "errors": errors,
            "warnings": len(issues) - errors,
            "issues": [issue.as_dict() for issue in issues],
        }
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        _print_issues(card, issues)
    raise typer.Exit(1 if has_errors(issues) else 0)


def _parse_error_path(exc: CardParseError) -> str:
    if exc.field is None:
        return f"line {exc.line}" if exc.line is not None else "card"
    if exc.field.startswith("$"):
        return exc.field
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
    return field_path(parts)


def _read_price_plans(path: Path) -> list[dict[str, Any]]:
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(plans, list) or not all(isinstance(p, dict) for p in plans):
        raise _fail(f"{path}: price plans must be a JSON list of objects")
    return plans


def _data_files(card: DatasetCard, root: Path) -> list[Path]:
    """The card's files under ``root`` that exist, plus every other Parquet file there."""
    listed = [root / data_file.path for data_file in card.files]
    present = [path for path in listed if path.is_file()]
    others = sorted(p for p in root.rglob("*.parquet") if p.is_file() and p not in listed)
    return present + others


def _print_issues(card: str, issues: list[LintIssue]) -> None:
    if not issues:
        typer.echo(f"{card}: no issues; the card is complete.")
        return
    console = Console()
    table = Table(title=f"{card}: card lint")
    table.add_column("severity")
    table.add_column("path")
    table.add_column("message")
    for issue in issues:
        style = "bold red" if issue.severity == "error" else "yellow"
        table.add_row(f"[{style}]{issue.severity}[/]", issue.path, issue.message)
    console.print(table)
    errors = sum(issue.severity == "error" for issue in issues)
    typer.echo(f"{errors} error(s), {len(issues) - errors} warning(s)")


@card_app.command("diff")
def diff_command(
    old: str = typer.Argument(..., help="The older card: README.md, croissant.json or JSON."),
    new: str = typer.Argument(..., help="The newer card, of any supported kind."),
    output: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", help="table or json."),
    exit_code: bool = typer.Option(
        False, "--exit-code", help="Exit 1 when the cards differ (as git diff --exit-code)."
    ),
) -> None:
    """Show every field that changed from OLD to NEW, as ``path: old -> new``."""
    try:
        changes = diff_cards(_load(old), _load(new))
    except CardError as exc:
        raise _fail(str(exc)) from exc
    if output is OutputFormat.JSON:
        typer.echo(json.dumps([c.as_dict() for c in changes], ensure_ascii=False, indent=2))
    elif not changes:
        typer.echo("no changes")
    else:
        for change in changes:
            typer.echo(_change_line(change))
    raise typer.Exit(1 if exit_code and changes else 0)


def _short(value: Any, limit: int = 120) -> str:
    text = "(absent)" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _change_line(change: FieldChange) -> str:
    return f"{change.path}: {_short(change.old)} → {_short(change.new)}"


@card_app.command("render")
def render_command(
    card: str = typer.Argument(..., help="README.md, croissant.json or card JSON."),
    to: RenderFormat = typer.Option(
        ..., "--to", help="readme, croissant, json, product-md or product-html."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout."),
) -> None:
    """Render a card in another form (e.g. a README as croissant.json)."""
    try:
        text = render_card(_load(card), to)
    except CardError as exc:
        raise _fail(str(exc)) from exc
    _write(text, out)


@card_app.command("schema")
def schema_command(
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout."),
) -> None:
    """Print the card's JSON Schema."""
    _write(render_json_schema(), out)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")

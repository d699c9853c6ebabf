"""``aidx review``: human review rounds of dataset versions in Label Studio, for the operator.

The commands act on the exchange's database and object store (the ``AIDX_*`` settings, as
``aidx up`` uses them) as its operator organisation, exactly like the operator's API calls::

    aidx review start dv_... --label-studio-url http://127.0.0.1:8080 --token T --sample 200
    aidx review collect rvw_... --token T        # read the annotations back
    aidx review decide rvw_...                   # exit 0 accepted, 1 rejected
    aidx review show rvw_...
    aidx review list [--version dv_...]

The token can also come from ``LABEL_STUDIO_API_KEY``; it is never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation import review
from curation.errors import CurationError
from curation.models import ReviewRound
from dataset_cards.errors import CardError
from infra.config import get_settings
from infra.db import session_scope
from infra.storage import get_object_store
from marketplace.errors import MarketplaceError
from marketplace.models import Organization
from marketplace.services.organizations import Principal

review_app = typer.Typer(
    help="Human review of a version's sample in Label Studio (operator).", no_args_is_help=True
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="LABEL_STUDIO_API_KEY",
        help="A Label Studio API token (or LABEL_STUDIO_API_KEY); never stored.",
        show_default=False,
    ),
]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


Format = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def _operator(session: Session) -> Principal:
    """The exchange's operator organisation, on whose behalf the commands act."""
    for organization in session.scalars(select(Organization).order_by(Organization.created_at)):
        if "operator" in organization.roles:
            return Principal(
                organization_id=organization.id,
                organization_name=organization.name,
                roles=frozenset(organization.roles),
                api_key_id="command-line",
            )
    raise MarketplaceError("the exchange has no operator organisation yet; bootstrap it first")


@contextmanager
def _operator_session() -> Iterator[tuple[Session, Principal]]:
    try:
        with session_scope() as session:
            yield session, _operator(session)
    except (MarketplaceError, CurationError, CardError) as error:
        raise _fail(str(error)) from error


@review_app.command("start")
def start_command(
    version_id: Annotated[str, typer.Argument(help="The dataset version (dv_...).")],
    label_studio_url: Annotated[
        str,
        typer.Option("--label-studio-url", envvar="LABEL_STUDIO_URL", help="Label Studio's URL."),
    ],
    token: Token,
    sample: Annotated[
        int, typer.Option("--sample", min=1, max=review.MAX_SAMPLE_SIZE, help="Rows to review.")
    ] = 100,
    annotators: Annotated[
        int,
        typer.Option(
            "--annotators",
            min=1,
            max=review.MAX_ANNOTATORS,
            help="Annotators per task (2 or more to measure agreement).",
        ),
    ] = 2,
    strata: Annotated[
        list[str] | None,
        typer.Option(
            "--strata",
            help="Repeat for each dimension: source, contributor, language, length"
            " (default: source, language when tagged, length).",
        ),
    ] = None,
    min_per_stratum: Annotated[
        int, typer.Option("--min-per-stratum", min=0, help="Rows drawn at least per stratum.")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="The sample's seed.")] = 0,
    min_pass_rate: Annotated[
        float, typer.Option("--min-pass-rate", min=0.0, max=1.0, help="Accept at or above.")
    ] = 0.9,
    min_agreement: Annotated[
        float,
        typer.Option("--min-agreement", min=-1.0, max=1.0, help="Minimum Cohen's/Fleiss' kappa."),
    ] = 0.6,
    no_agreement: Annotated[
        bool, typer.Option("--no-agreement", help="Do not require agreement (one annotator).")
    ] = False,
    min_annotated: Annotated[
        int, typer.Option("--min-annotated", min=1, help="Annotated tasks needed to decide.")
    ] = 1,
    output: Format = OutputFormat.TABLE,
) -> None:
    """Draw a stratified sample of the version and open a Label Studio project with it."""
    try:
        thresholds = review.Thresholds(
            min_pass_rate=min_pass_rate,
            min_agreement=None if no_agreement else min_agreement,
            min_annotated_tasks=min_annotated,
        )
    except CurationError as error:
        raise _fail(str(error)) from error
    unknown = [name for name in strata or [] if name not in review.STRATA_DIMENSIONS]
    if unknown:
        raise _fail(
            f"unknown strata dimension(s) {', '.join(unknown)}; use"
            f" {', '.join(review.STRATA_DIMENSIONS)}"
        )
    store = get_object_store(get_settings())
    with _operator_session() as (session, operator):
        started = review.start_review_round(
            session,
            store,
            actor=operator,
            version_id=version_id,
            label_studio_url=label_studio_url,
            label_studio_token=token,
            sample_size=sample,
            annotators_per_task=annotators,
            strata=strata or None,
            min_per_stratum=min_per_stratum,
            seed=seed,
            thresholds=thresholds,
            progress=lambda message: errors.print(f"[dim]{message}…[/]", highlight=False),
        )
        _show(started, output)


@review_app.command("collect")
def collect_command(
    round_id: Annotated[str, typer.Argument(help="The review round (rvw_...).")],
    token: Token,
    output: Format = OutputFormat.TABLE,
) -> None:
    """Read the round's annotations back: pass rate, its interval, agreement, issues."""
    with _operator_session() as (session, operator):
        collected = review.collect_review_round(
            session, actor=operator, round_id=round_id, label_studio_token=token
        )
        _show(collected, output)


@review_app.command("decide")
def decide_command(
    round_id: Annotated[str, typer.Argument(help="The review round (rvw_...).")],
    notes: Annotated[str, typer.Option("--notes", help="Why, for the audit trail.")] = "",
    output: Format = OutputFormat.TABLE,
) -> None:
    """Accept or reject the round on its collected figures; exit 1 when it is rejected."""
    with _operator_session() as (session, operator):
        decided = review.decide_review_round(
            session, actor=operator, round_id=round_id, notes=notes
        )
        _show(decided, output)
        status = decided.status
    raise typer.Exit(0 if status == "accepted" else 1)


@review_app.command("show")
def show_command(
    round_id: Annotated[str, typer.Argument(help="The review round (rvw_...).")],
    output: Format = OutputFormat.TABLE,
) -> None:
    """Print a round: its sample, thresholds, figures and decision."""
    with _operator_session() as (session, operator):
        _show(review.get_review_round(session, actor=operator, round_id=round_id), output)


@review_app.command("list")
def list_command(
    version_id: Annotated[
        str | None, typer.Option("--version", help="Only the rounds of this version.")
    ] = None,
    output: Format = OutputFormat.TABLE,
) -> None:
    """List review rounds, oldest first."""
    with _operator_session() as (session, operator):
        rounds = review.list_review_rounds(session, actor=operator, version_id=version_id)
        if output is OutputFormat.JSON:
            typer.echo(json.dumps([_as_json(item) for item in rounds], indent=1))
            return
        table = Table("round", "version", "status", "sample", "annotated", "pass rate", "kappa")
        for item in rounds:
            table.add_row(
                item.id, item.version_id, item.status, str(item.sample_size),
                _text(item.annotated_tasks), _text(item.pass_rate), _text(item.agreement),
            )  # fmt: skip
        console.print(table)


def _as_json(item: ReviewRound) -> dict[str, Any]:
    fields = (
        "id", "version_id", "organization_id", "label_studio_url", "project_id", "sample_size",
        "annotators_per_task", "seed", "strata", "thresholds", "status", "annotated_tasks",
        "pass_rate", "agreement", "agreement_metric", "issue_counts", "results",
        "decision_reasons", "decided_by", "created_at", "collected_at", "decided_at",
    )  # fmt: skip
    body = {name: getattr(item, name) for name in fields}
    for name in ("created_at", "collected_at", "decided_at"):
        body[name] = body[name].isoformat() if body[name] is not None else None
    return body


def _text(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _show(item: ReviewRound, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(_as_json(item), indent=1, ensure_ascii=False))
        return
    results = item.results or {}
    interval = results.get("pass_rate_interval")
    table = Table(show_header=False, title=f"review round {item.id}: {item.status}")
    rows = [
        ("version", item.version_id),
        ("Label Studio project", f"{item.label_studio_url}/projects/{item.project_id}"),
        ("sample", f"{item.sample_size} rows, {item.annotators_per_task} annotators per row"),
        ("strata", ", ".join(f"{k}: {v}" for k, v in item.strata.get("sampled", {}).items())),
        ("thresholds", ", ".join(f"{k} {v}" for k, v in item.thresholds.items())),
        ("annotated rows", _text(item.annotated_tasks)),
        (
            "pass rate",
            _text(item.pass_rate)
            + (f" (95% {interval[0]:.4f} to {interval[1]:.4f})" if interval else ""),
        ),
        (
            "agreement",
            f"{item.agreement_metric or '-'} {_text(item.agreement)}, raw"
            f" {_text(results.get('percent_agreement'))}",
        ),
        ("issues", ", ".join(f"{k} {v}" for k, v in (item.issue_counts or {}).items()) or "-"),
        ("decision", "; ".join(item.decision_reasons or []) or item.status),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)

"""``aidx model-card``: check a released model's signed card offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

model_card_app = typer.Typer(help="Signed model cards of released models.", no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


@model_card_app.command("verify")
def model_card_verify(
    card: Annotated[Path, typer.Argument(help="model_card.json of a released model.")],
    public_key: Annotated[Path, typer.Option(help="The exchange's public key (PEM).")],
) -> None:
    """Check a model card's signature against the exchange's public key; exit 1 if it fails."""
    from marketplace.certificates import CertificateError, load_public_key
    from training_jobs.model_card import verify_model_card

    try:
        document = json.loads(card.read_text())
        payload = verify_model_card(document, load_public_key(public_key.read_bytes()))
    except FileNotFoundError as error:
        errors.print(f"[bold red]error:[/] {error.filename}: no such file")
        raise typer.Exit(1) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        errors.print(f"[bold red]error:[/] {card}: not JSON ({error})")
        raise typer.Exit(1) from error
    except CertificateError as error:
        errors.print(f"[bold red]error:[/] {card}: INVALID: {error}")
        raise typer.Exit(1) from error
    console.print(f"[bold green]valid[/] model card {payload.get('model_card_id')}")
    console.print(f"  model: {payload.get('fine_tuned_model')}")
    for dataset in payload.get("datasets", []):
        console.print(
            f"  dataset: {dataset.get('version_id')} {dataset.get('content_hash')} "
            f"(filing {dataset.get('filing_number')})"
        )
    console.print(f"  recipe: {payload.get('recipe_hash')}")
    console.print(f"  release gate: {payload.get('release_gate', {}).get('decision')}")

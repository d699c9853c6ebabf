"""Real GSM8K data written to Parquet, and the curation facts a card is filled from."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from dataset_cards.autofill import card_from_curation
from dataset_cards.schema import DatasetCard

DATA_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "data"
CONTENT_HASH = "sha256:" + hashlib.sha256(b"gsm8k curated version 1").hexdigest()


def _curated(source: str) -> pa.Table:
    """GSM8K rows plus the nested and provenance columns a curated version carries."""
    table = pajson.read_json(DATA_DIR / source).combine_chunks()
    answers = table.column("answer").chunk(0)
    steps = pc.split_pattern(answers, "\n")
    final = pc.replace_substring_regex(answers, r"(?s)^.*#### ", "")
    meta = pa.StructArray.from_arrays(
        [final, pc.list_value_length(steps)], names=["final_answer", "num_lines"]
    )
    row_hashes = [
        hashlib.sha256(f"{q}\x1f{a}".encode()).hexdigest()
        for q, a in zip(table.column("question").to_pylist(), answers.to_pylist(), strict=True)
    ]
    return (
        table.append_column("steps", steps)
        .append_column("meta", meta)
        .append_column("_contributor", pa.array(["OpenAI"] * table.num_rows))
        .append_column("_source_file", pa.array([source] * table.num_rows))
        .append_column("_source_row", pa.array(range(table.num_rows), pa.int64()))
        .append_column("_content_hash", pa.array(row_hashes))
    )


def _write(table: pa.Table, root: Path, relative: str) -> dict[str, Any]:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    data = path.read_bytes()
    return {
        "path": relative,
        "sha256": hashlib.sha256(data).hexdigest(),
        "num_bytes": len(data),
        "num_rows": pq.read_metadata(path).num_rows,
    }


@pytest.fixture(scope="session")
def train_table() -> pa.Table:
    return _curated("gsm8k_train.jsonl")


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset repository folder the Parquet files are written under."""
    return tmp_path_factory.mktemp("dataset")


@pytest.fixture(scope="session")
def data_files(train_table: pa.Table, dataset_root: Path) -> list[dict[str, Any]]:
    """Real Parquet files of the train and test splits, with their real digests and sizes."""
    root = dataset_root
    return [
        _write(train_table, root, "data/train-00000-of-00001.parquet"),
        _write(_curated("gsm8k_test.jsonl"), root, "data/test-00000-of-00001.parquet"),
    ]


@pytest.fixture(scope="session")
def curation_steps(train_table: pa.Table) -> list[dict[str, Any]]:
    """A curation report's steps; the dedup counts are computed on the real questions."""
    rows = train_table.num_rows
    unique = len(pc.unique(train_table.column("question")))
    return [
        {
            "step": "normalize_whitespace",
            "params": {"columns": ["question", "answer"]},
            "rows_in": rows,
            "rows_out": rows,
            "dropped_by_reason": {},
        },
        {
            "step": "exact_dedup",
            "params": {"columns": ["question"], "keep": "first"},
            "rows_in": rows,
            "rows_out": unique,
            "dropped_by_reason": {"duplicate": rows - unique} if rows > unique else {},
        },
    ]


@pytest.fixture(scope="session")
def curation_facts(
    train_table: pa.Table,
    data_files: list[dict[str, Any]],
    curation_steps: list[dict[str, Any]],
) -> dict[str, Any]:
    """The keyword arguments of card_from_curation for the GSM8K version."""
    return {
        "dataset_id": "ds_gsm8k",
        "version_id": "ver_0001",
        "name": "GSM8K grade-school math",
        "description": "Grade-school math word problems with worked solutions.",
        "license": "mit",
        "provider": "OpenAI",
        "schema": train_table.schema,
        "files": data_files,
        "steps": curation_steps,
        "content_hash": CONTENT_HASH,
        "language": ["en"],
        "task_categories": ["question-answering", "text-generation"],
        "co_contributors": ["Example Math Co-op"],
    }


@pytest.fixture(scope="session")
def card(curation_facts: dict[str, Any]) -> DatasetCard:
    return card_from_curation(**curation_facts)


# What a person provides, and what the exchange's reviewers record, for a complete card.
HUMAN_VALUES: dict[str, Any] = {
    "motivation": "Built by OpenAI to measure multi-step arithmetic reasoning of language models.",
    "annotations_creators": ["expert-generated"],
    "lawful_source_statement": "Published by OpenAI under the MIT licence; copied verbatim.",
    "data_collection": "Problems were written by human problem writers hired by OpenAI.",
    "scope": "English grade-school maths word problems, two to eight steps each.",
    "update_frequency": "one-off",
    "personal_sensitive_information": "None: the problems are fictional and name no real person.",
    "intended_uses": "Fine-tuning and evaluating arithmetic reasoning.",
    "limitations": "English only; grade-school level.",
    "biases": "Problem settings reflect US everyday life.",
    "social_impact": "Better arithmetic in assistants; no foreseeable harm to individuals.",
    "maintenance_plan": "Frozen upstream; the exchange fixes reported errors in new versions.",
    "usage_restrictions": "No re-identification attempts; no resale of the raw rows.",
    "license_template": "aidx-ai-training-v1",
    "price_plans": ["plan-research", "plan-commercial"],
    "citation": "Cobbe et al., Training Verifiers to Solve Math Word Problems, 2021.",
    "compliance_assessment": {
        "result": "passed",
        "assessed_by": "Exchange listing review",
        "assessed_on": "2026-01-05",
        "summary": "Lawful source and licence verified; no personal information.",
    },
    "quality_summary": "Answers checked on a sample of 200 rows; 99% correct.",
}


@pytest.fixture
def price_plans() -> list[dict[str, Any]]:
    """The plans the complete card's product is offered under (issue 5's permitted uses)."""
    return [
        {"id": "plan-research", "kind": "one-off", "permitted_uses": ["research", "training"]},
        {"id": "plan-commercial", "kind": "subscription", "permitted_uses": ["commercial"]},
    ]


@pytest.fixture(scope="session")
def complete_card(curation_facts: dict[str, Any]) -> DatasetCard:
    """The GSM8K card with everything filled in: lint finds nothing to report."""
    card = card_from_curation(
        **curation_facts,
        pii_counts={"email": 0, "phone": 0, "cn_id_number": 0},
        review={"sample_size": 200, "reviewers": 2, "pass_rate": 0.99, "agreement": 0.87,
                "agreement_metric": "cohen_kappa", "tool": "label-studio"},
        quality_scores={"completeness": 1.0, "accuracy": 0.99},
        version_number=1,
        date_published=dt.date(2026, 1, 2),
    )  # fmt: skip
    return DatasetCard.model_validate({**card.model_dump(), **HUMAN_VALUES})

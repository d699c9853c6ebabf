"""Real text for the curation step tests, and a helper that runs steps as the runner does."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curation.pipeline import Pipeline
from curation.steps import AddProvenance, Step

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"

RunSteps = Callable[..., pa.Table]


def read_jsonl(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / name).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def read_json(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def c4_texts() -> list[str]:
    """The 300 English web documents of C4's demo sample."""
    return [row["text"] for row in read_jsonl("c4_demo.jsonl")]


@pytest.fixture(scope="session")
def wiki_passages() -> list[str]:
    """Wikipedia articles cut into passages of 400 words."""
    passages = []
    for line in (FIXTURES / "wiki_demo.txt").read_text(encoding="utf-8").splitlines():
        words = line.split()
        passages += [" ".join(words[i : i + 400]) for i in range(0, len(words) - 150, 400)]
    return passages


@pytest.fixture(scope="session")
def lunyu_paragraphs() -> list[str]:
    """The paragraphs of the Analects (simplified Chinese)."""
    return [text for chapter in read_json("lunyu.json") for text in chapter["paragraphs"]]


@pytest.fixture(scope="session")
def tang_poems() -> list[str]:
    """The 300 Tang poems, in traditional characters, one text per poem."""
    return ["\n".join(poem["paragraphs"]) for poem in read_json("tangshi_300.json")]


@pytest.fixture
def run_steps() -> RunSteps:
    """Run ``steps`` over ``rows`` in batches, stamped with provenance as the runner does."""

    def run(
        steps: Sequence[Step] | Pipeline,
        rows: list[dict[str, Any]],
        *,
        batch_size: int = 64,
        source: str = "upload.jsonl",
    ) -> pa.Table:
        pipeline = steps if isinstance(steps, Pipeline) else Pipeline(list(steps))
        batches = pa.Table.from_pylist(rows).to_batches(max_chunksize=batch_size)
        stamped = AddProvenance("alice", source).run(iter(batches))
        out = list(pipeline.run(stamped))
        if not out:
            return pa.table({})
        return pa.Table.from_batches(out)

    return run

"""The data validation report of a job: every row checked, tokens counted, no row text kept.

`validate_table` runs before a job is queued for training. It normalises the rows to chats
(`formatting.inspect_rows`), lists each problem by row number and field, and counts tokens with
the job's own tokenizer: what a row costs and what training learns (assistant tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import BaseModel, Field

from training_jobs.errors import InvalidTrainingDataError
from training_jobs.formatting import inspect_rows
from training_jobs.tokenization import encode_chats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_LISTED_PROBLEMS = 100
UNLIMITED_LENGTH = 10**9


class ProblemItem(BaseModel):
    row: int
    field: str
    problem: str


class TokenCounts(BaseModel):
    total: int = Field(description="tokens of every valid row, in the house chat format")
    trainable: int = Field(description="assistant tokens: what the loss is computed on")
    max_row: int
    mean_row: float
    rows_over_max_seq_len: int = Field(description="rows cut to max_seq_len when trained")


class ValidationReport(BaseModel):
    """What the buyer sees of a version's fitness for training; never a row's content."""

    passed: bool
    format: str | None
    rows: int
    valid_rows: int
    invalid_rows: int
    problems: list[ProblemItem]
    problems_not_listed: int = 0
    error: str | None = Field(default=None, description="a problem of the whole table")
    tokens: TokenCounts | None = None

    @property
    def summary(self) -> str:
        """One line naming the first problems, for the job's error message."""
        if self.error:
            return self.error
        named = "; ".join(f"row {p.row}: field '{p.field}' {p.problem}" for p in self.problems[:3])
        more = self.invalid_rows - min(3, len(self.problems))
        return f"{self.invalid_rows} of {self.rows} rows cannot be trained on: {named}" + (
            f" (and {more} more rows)" if more > 0 else ""
        )


def validate_table(
    table: pa.Table, tokenizer: PreTrainedTokenizerBase, *, max_seq_len: int
) -> ValidationReport:
    """Check every row of `table`; the report passes only if every row can be trained on."""
    try:
        inspection = inspect_rows(table)
    except InvalidTrainingDataError as error:
        return ValidationReport(
            passed=False,
            format=None,
            rows=table.num_rows,
            valid_rows=0,
            invalid_rows=table.num_rows,
            problems=[],
            error=str(error),
        )
    invalid = {problem.row for problem in inspection.problems}
    chats = inspection.valid_chats()
    tokens = None
    if chats:
        encoded = encode_chats(tokenizer, chats, max_length=UNLIMITED_LENGTH)
        lengths = [len(example.input_ids) for example in encoded]
        tokens = TokenCounts(
            total=sum(lengths),
            trainable=sum(example.trainable_tokens for example in encoded),
            max_row=max(lengths),
            mean_row=round(sum(lengths) / len(lengths), 1),
            rows_over_max_seq_len=sum(length > max_seq_len for length in lengths),
        )
    empty = table.num_rows == 0
    return ValidationReport(
        passed=not invalid and not empty,
        format=inspection.format,
        rows=table.num_rows,
        valid_rows=table.num_rows - len(invalid),
        invalid_rows=len(invalid),
        problems=[
            ProblemItem(row=p.row, field=p.field, problem=p.problem)
            for p in inspection.problems[:MAX_LISTED_PROBLEMS]
        ],
        problems_not_listed=max(0, len(inspection.problems) - MAX_LISTED_PROBLEMS),
        error="the training data has no rows" if empty else None,
        tokens=tokens,
    )

"""Curation steps, one module per kind, and the registry recipes name them by.

:data:`STEPS` maps a recipe's ``step:`` key to its class. Provenance steps are not in it: the
runner adds provenance per input file, and the pipeline keeps content hashes current itself.
"""

from __future__ import annotations

from curation.steps.base import (
    CONTENT_HASH_COLUMN,
    CONTRIBUTOR_COLUMN,
    PROVENANCE_COLUMNS,
    SOURCE_FILE_COLUMN,
    SOURCE_ROW_COLUMN,
    Filter,
    Step,
    StepStats,
    Transform,
    data_columns,
)
from curation.steps.dedup import ExactDedup
from curation.steps.normalize import Normalize
from curation.steps.provenance import AddProvenance, ContentHash, content_hashes

STEPS: dict[str, type[Step]] = {step.name: step for step in (Normalize, ExactDedup)}

__all__ = [
    "CONTENT_HASH_COLUMN",
    "CONTRIBUTOR_COLUMN",
    "PROVENANCE_COLUMNS",
    "SOURCE_FILE_COLUMN",
    "SOURCE_ROW_COLUMN",
    "STEPS",
    "AddProvenance",
    "ContentHash",
    "ExactDedup",
    "Filter",
    "Normalize",
    "Step",
    "StepStats",
    "Transform",
    "content_hashes",
    "data_columns",
]

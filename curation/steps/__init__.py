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
from curation.steps.chat import ChatFormat
from curation.steps.decontam import Decontaminate
from curation.steps.dedup import ExactDedup
from curation.steps.language import LanguageFilter, LanguageTag
from curation.steps.near_dedup import NearDedup
from curation.steps.normalize import Normalize
from curation.steps.pii import RedactPii
from curation.steps.profile import TabularProfile
from curation.steps.provenance import AddProvenance, ContentHash, content_hashes
from curation.steps.quality import (
    C4Clean,
    C4Filter,
    ChineseQuality,
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
)

STEPS: dict[str, type[Step]] = {
    step.name: step
    for step in (
        Normalize,
        ExactDedup,
        NearDedup,
        GopherQuality,
        GopherRepetition,
        C4Filter,
        C4Clean,
        FineWebQuality,
        ChineseQuality,
        LanguageTag,
        LanguageFilter,
        RedactPii,
        Decontaminate,
        ChatFormat,
        TabularProfile,
    )
}

__all__ = [
    "CONTENT_HASH_COLUMN",
    "CONTRIBUTOR_COLUMN",
    "PROVENANCE_COLUMNS",
    "SOURCE_FILE_COLUMN",
    "SOURCE_ROW_COLUMN",
    "STEPS",
    "AddProvenance",
    "C4Clean",
    "C4Filter",
    "ChatFormat",
    "ChineseQuality",
    "ContentHash",
    "Decontaminate",
    "ExactDedup",
    "Filter",
    "FineWebQuality",
    "GopherQuality",
    "GopherRepetition",
    "LanguageFilter",
    "LanguageTag",
    "NearDedup",
    "Normalize",
    "RedactPii",
    "Step",
    "StepStats",
    "TabularProfile",
    "Transform",
    "content_hashes",
    "data_columns",
]

"""Renderings of a dataset card (the Hugging Face README today; Croissant to follow)."""

from dataset_cards.render.hf_readme import (
    EXCHANGE_RECORD_MARKER,
    front_matter,
    parse_readme,
    render_readme,
)

__all__ = ["EXCHANGE_RECORD_MARKER", "front_matter", "parse_readme", "render_readme"]

"""The licence table: every known id has a class; the card fills and guards it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dataset_cards.licenses import (
    KNOWN_LICENSES,
    LICENSES,
    LicenseClass,
    license_class_of,
    license_id_from_reference,
    license_url,
)
from dataset_cards.schema import DatasetCard

MINIMAL: dict[str, Any] = {
    "pretty_name": "Tiny",
    "dataset_info": {"features": [{"name": "text", "dtype": "string"}]},
    "dataset_id": "ds",
    "version_id": "v1",
    "content_hash": "sha256:" + "0" * 64,
    "provider": "Acme",
}


def test_every_known_license_but_other_has_a_class() -> None:
    assert set(LICENSES) == KNOWN_LICENSES - {"other"}
    assert license_class_of("other") is None


@pytest.mark.parametrize(
    ("license_id", "use", "attribution", "share_alike"),
    [
        ("mit", "commercial", True, False),
        ("apache-2.0", "commercial", True, False),
        ("cc0-1.0", "commercial", False, False),
        ("cc-by-4.0", "commercial", True, False),
        ("cc-by-sa-4.0", "commercial", True, True),
        ("cc-by-nc-4.0", "non-commercial", True, False),
        ("cc-by-nc-sa-4.0", "non-commercial", True, True),
        ("cc-by-nc-nd-4.0", "non-commercial", True, False),
        ("odbl", "commercial", True, True),
        ("gpl-3.0", "commercial", True, True),
        ("unlicense", "commercial", False, False),
        ("cc", "unspecified", True, False),
    ],
)
def test_license_classes_follow_the_data_provenance_initiative(
    license_id: str, use: str, attribution: bool, share_alike: bool
) -> None:
    assert license_class_of(license_id) == LicenseClass(
        allowed_use=use, attribution_required=attribution, share_alike=share_alike
    )


@pytest.mark.parametrize(
    ("reference", "license_id"),
    [
        ("mit", "mit"),
        ("Apache-2.0", "apache-2.0"),
        ("https://spdx.org/licenses/CC-BY-NC-4.0.html", "cc-by-nc-4.0"),
        ("https://choosealicense.com/licenses/apache-2.0/", "apache-2.0"),
        ("ODbL-1.0", "odbl"),
        ("https://example.org/licence", None),
        ("apache-3.0", None),
    ],
)
def test_license_references_resolve_to_ids(reference: str, license_id: str | None) -> None:
    assert license_id_from_reference(reference) == license_id


def test_spdx_urls() -> None:
    assert license_url("mit") == "https://spdx.org/licenses/MIT.html"
    assert license_url("openrail") is None


def test_the_card_fills_the_class_of_a_known_license() -> None:
    card = DatasetCard.model_validate({**MINIMAL, "license": "CC-BY-NC-4.0"})

    assert card.license_class == LICENSES["cc-by-nc-4.0"].license_class
    assert card.license_class is not None and not card.license_class.allows_commercial_use


def test_a_known_license_keeps_the_class_of_the_table() -> None:
    wrong = {"allowed_use": "commercial", "attribution_required": True, "share_alike": False}

    with pytest.raises(ValidationError, match=r"license_class of 'cc-by-nc-4\.0' is fixed"):
        DatasetCard.model_validate({**MINIMAL, "license": "cc-by-nc-4.0", "license_class": wrong})


def test_license_other_states_its_own_class() -> None:
    academic = {"allowed_use": "academic", "attribution_required": True, "share_alike": False}
    card = DatasetCard.model_validate(
        {
            **MINIMAL,
            "license": "other",
            "license_name": "uni-research-1.0",
            "license_link": "https://example.org/uni-research-1.0",
            "license_class": academic,
        }
    )
    assert card.license_class == LicenseClass(**academic)


def test_license_other_may_not_take_a_known_name() -> None:
    with pytest.raises(ValidationError, match="license_name 'mit' is a known license id"):
        DatasetCard.model_validate(
            {**MINIMAL, "license": "other", "license_name": "mit", "license_link": "x"}
        )


def test_a_card_without_a_license_is_representable_but_has_no_class() -> None:
    card = DatasetCard.model_validate(MINIMAL)
    assert (card.license, card.license_class) == (None, None)

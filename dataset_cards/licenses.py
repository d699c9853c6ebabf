"""The licences a card may name, and what each allows, after the Data Provenance Initiative.

Every id the Hugging Face Hub accepts in card metadata (lower case, as the Hub writes it) has a
row: its SPDX identifier where SPDX has one, and its licence class. The class is what the
exchange acts on: the allowed use (commercial, non-commercial, academic, unspecified), whether
attribution is required and whether derived data must carry the same licence (share-alike).
``other`` has no row: a card with ``license: other`` states its own class.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

AllowedUse = Literal["commercial", "non-commercial", "academic", "unspecified"]
ALLOWED_USES: tuple[AllowedUse, ...] = ("commercial", "non-commercial", "academic", "unspecified")


class LicenseClass(BaseModel):
    """What a licence allows, in the Data Provenance Initiative's terms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_use: AllowedUse
    attribution_required: bool
    share_alike: bool

    @property
    def allows_commercial_use(self) -> bool:
        return self.allowed_use == "commercial"


class LicenseInfo(NamedTuple):
    spdx_id: str | None
    license_class: LicenseClass


def _row(spdx_id: str | None, use: AllowedUse, attribution: bool, share_alike: bool) -> LicenseInfo:
    license_class = LicenseClass(
        allowed_use=use, attribution_required=attribution, share_alike=share_alike
    )
    return LicenseInfo(spdx_id, license_class)


C: AllowedUse = "commercial"
NC: AllowedUse = "non-commercial"
U: AllowedUse = "unspecified"

# id -> (SPDX id, allowed use, attribution required, share-alike). Copyleft software licences
# count as share-alike; OpenRAIL passes its use restrictions on, which is share-alike in effect.
LICENSES: dict[str, LicenseInfo] = {
    "afl-3.0": _row("AFL-3.0", C, True, False),
    "agpl-3.0": _row("AGPL-3.0-only", C, True, True),
    "apache-2.0": _row("Apache-2.0", C, True, False),
    "artistic-2.0": _row("Artistic-2.0", C, True, False),
    "bsd": _row(None, C, True, False),
    "bsd-2-clause": _row("BSD-2-Clause", C, True, False),
    "bsd-3-clause": _row("BSD-3-Clause", C, True, False),
    "bsd-3-clause-clear": _row("BSD-3-Clause-Clear", C, True, False),
    "bsl-1.0": _row("BSL-1.0", C, True, False),
    "c-uda": _row("C-UDA-1.0", C, True, False),
    "cc": _row(None, U, True, False),  # some Creative Commons licence, version unknown
    "cc0-1.0": _row("CC0-1.0", C, False, False),
    "cc-by-2.0": _row("CC-BY-2.0", C, True, False),
    "cc-by-2.5": _row("CC-BY-2.5", C, True, False),
    "cc-by-3.0": _row("CC-BY-3.0", C, True, False),
    "cc-by-4.0": _row("CC-BY-4.0", C, True, False),
    "cc-by-nc-2.0": _row("CC-BY-NC-2.0", NC, True, False),
    "cc-by-nc-3.0": _row("CC-BY-NC-3.0", NC, True, False),
    "cc-by-nc-4.0": _row("CC-BY-NC-4.0", NC, True, False),
    "cc-by-nc-nd-3.0": _row("CC-BY-NC-ND-3.0", NC, True, False),
    "cc-by-nc-nd-4.0": _row("CC-BY-NC-ND-4.0", NC, True, False),
    "cc-by-nc-sa-2.0": _row("CC-BY-NC-SA-2.0", NC, True, True),
    "cc-by-nc-sa-3.0": _row("CC-BY-NC-SA-3.0", NC, True, True),
    "cc-by-nc-sa-4.0": _row("CC-BY-NC-SA-4.0", NC, True, True),
    "cc-by-nd-4.0": _row("CC-BY-ND-4.0", C, True, False),
    "cc-by-sa-3.0": _row("CC-BY-SA-3.0", C, True, True),
    "cc-by-sa-4.0": _row("CC-BY-SA-4.0", C, True, True),
    "cdla-permissive-1.0": _row("CDLA-Permissive-1.0", C, True, False),
    "cdla-permissive-2.0": _row("CDLA-Permissive-2.0", C, True, False),
    "cdla-sharing-1.0": _row("CDLA-Sharing-1.0", C, True, True),
    "ecl-2.0": _row("ECL-2.0", C, True, False),
    "epl-1.0": _row("EPL-1.0", C, True, True),
    "epl-2.0": _row("EPL-2.0", C, True, True),
    "etalab-2.0": _row("etalab-2.0", C, True, False),
    "eupl-1.1": _row("EUPL-1.1", C, True, True),
    "eupl-1.2": _row("EUPL-1.2", C, True, True),
    "gfdl": _row(None, C, True, True),
    "gpl": _row(None, C, True, True),
    "gpl-2.0": _row("GPL-2.0-only", C, True, True),
    "gpl-3.0": _row("GPL-3.0-only", C, True, True),
    "isc": _row("ISC", C, True, False),
    "lgpl": _row(None, C, True, True),
    "lgpl-2.1": _row("LGPL-2.1-only", C, True, True),
    "lgpl-3.0": _row("LGPL-3.0-only", C, True, True),
    "lgpl-lr": _row("LGPLLR", C, True, True),
    "lppl-1.3c": _row("LPPL-1.3c", C, True, False),
    "mit": _row("MIT", C, True, False),
    "mpl-2.0": _row("MPL-2.0", C, True, True),
    "ms-pl": _row("MS-PL", C, True, False),
    "ncsa": _row("NCSA", C, True, False),
    "odbl": _row("ODbL-1.0", C, True, True),
    "odc-by": _row("ODC-By-1.0", C, True, False),
    "ofl-1.1": _row("OFL-1.1", C, True, True),
    "openrail": _row(None, C, True, True),
    "osl-3.0": _row("OSL-3.0", C, True, True),
    "pddl": _row("PDDL-1.0", C, False, False),
    "postgresql": _row("PostgreSQL", C, True, False),
    "unlicense": _row("Unlicense", C, False, False),
    "wtfpl": _row("WTFPL", C, False, False),
    "zlib": _row("Zlib", C, True, False),
}

# Licence ids the Hugging Face Hub accepts in card metadata; "unknown" is left out on purpose: a
# product without a known licence cannot pass listing review.
KNOWN_LICENSES: frozenset[str] = frozenset([*LICENSES, "other"])


def license_class_of(license_id: str) -> LicenseClass | None:
    """The class of a known licence id; ``None`` for ``other`` (the card states it)."""
    info = LICENSES.get(license_id.strip().lower())
    return None if info is None else info.license_class


def license_url(license_id: str) -> str | None:
    """The SPDX page of a known licence id, if SPDX lists it."""
    info = LICENSES.get(license_id.strip().lower())
    if info is None or info.spdx_id is None:
        return None
    return f"https://spdx.org/licenses/{info.spdx_id}.html"


def license_id_from_reference(reference: str) -> str | None:
    """The licence id a Croissant or Hub reference names: an id, an SPDX id or an SPDX or
    choosealicense.com URL; ``None`` when it names no known licence."""
    text = reference.strip()
    lowered = text.lower().rstrip("/")
    if lowered in LICENSES:
        return lowered
    for prefix in ("https://spdx.org/licenses/", "http://spdx.org/licenses/"):
        if lowered.startswith(prefix):
            lowered = lowered.removeprefix(prefix).removesuffix(".html").removesuffix(".json")
            break
    for prefix in ("https://choosealicense.com/licenses/", "http://choosealicense.com/licenses/"):
        if lowered.startswith(prefix):
            candidate = lowered.removeprefix(prefix)
            return candidate if candidate in LICENSES else None
    for license_id, info in LICENSES.items():
        if info.spdx_id is not None and info.spdx_id.lower() == lowered:
            return license_id
    return None

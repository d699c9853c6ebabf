"""Model contract texts: rendered per deal in English and Chinese, hashed, filed, immutable.

Templates are platform files (``marketplace/contracts/<template>.<lang>.md``), pinned by their
SHA-256 on every contract. The seller accepts the terms when it lists (the listing records the
parameters); the buyer accepts them with the purchase request; the exchange files the contract
in the same transaction, assigning the next filing number (备案号) under a row lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.models import Contract, Counter, Dataset, DatasetVersion, License, Organization
from marketplace.schemas import ContractParameters

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "contracts"
LANGUAGES = ("en", "zh")
_YES_NO = {"en": ("permitted", "not permitted"), "zh": ("允许", "不允许")}
_REQUIRED = {"en": ("yes", "no"), "zh": ("是", "否")}


@cache
def template_text(template: str, language: str) -> str:
    return (TEMPLATE_DIR / f"{template}.{language}.md").read_text(encoding="utf-8")


def template_sha256(template: str) -> str:
    digest = hashlib.sha256()
    for language in LANGUAGES:
        digest.update(template_text(template, language).encode())
    return digest.hexdigest()


def _term(parameters: ContractParameters, language: str, starts: dt.datetime) -> str:
    if parameters.term_days is None:
        return "The license does not expire." if language == "en" else "许可不设期限。"
    ends = (starts + dt.timedelta(days=parameters.term_days)).date().isoformat()
    return (
        f"{parameters.term_days} days from filing, until {ends}; access ends then."
        if language == "en"
        else f"自备案之日起 {parameters.term_days} 日，至 {ends} 止；届时访问终止。"
    )


def render(
    parameters: ContractParameters, *, values: dict[str, Any], filed_at: dt.datetime
) -> dict[str, str]:
    """The contract's text in each language."""
    texts = {}
    for language in LANGUAGES:
        permitted, forbidden = _YES_NO[language]
        yes, no = _REQUIRED[language]
        territory = parameters.territory
        fields = {
            **values,
            "uses": ", ".join(parameters.permitted_uses),
            "redistribution": permitted if parameters.redistribution else forbidden,
            "territory": ("worldwide" if language == "en" else "全球")
            if territory == "worldwide"
            else ", ".join(territory),
            "cross_border_transfer": permitted if parameters.cross_border_transfer else forbidden,
            "term": _term(parameters, language, filed_at),
            "attribution": yes if parameters.attribution else no,
            "share_alike": yes if parameters.share_alike else no,
            "liability_cap": parameters.liability_cap
            if parameters.liability_cap is not None
            else values["price"],
        }
        texts[language] = template_text(parameters.template, language).format(**fields)
    return texts


def next_filing_number(session: Session, now: dt.datetime) -> str:
    counter = session.get(Counter, "filing", with_for_update=True)
    if counter is None:
        counter = Counter(name="filing", value=0)
        session.add(counter)
    counter.value += 1
    return f"AIDX-{now.year}-{counter.value:06d}"


def file_contract(
    session: Session,
    *,
    license_: License,
    parameters: dict[str, Any],
    seller_accepted_at: dt.datetime,
    buyer_api_key_id: str,
) -> Contract:
    """Render, hash and file the contract of a license being concluded (the caller commits)."""
    terms = ContractParameters.model_validate(parameters)
    version = session.get(DatasetVersion, license_.version_id)
    assert version is not None
    dataset = session.get(Dataset, version.dataset_id)
    buyer = session.get(Organization, license_.buyer_organization_id)
    seller = session.get(Organization, license_.seller_organization_id)
    assert dataset is not None and buyer is not None and seller is not None
    now = utcnow()
    filing_number = next_filing_number(session, now)
    texts = render(
        terms,
        values={
            "filing_number": filing_number,
            "seller_name": seller.name,
            "seller_id": seller.id,
            "buyer_name": buyer.name,
            "buyer_id": buyer.id,
            "dataset_name": dataset.name,
            "version_id": version.id,
            "content_hash": version.content_hash,
            "price": license_.price_amount,
            "currency": license_.currency,
        },
        filed_at=now,
    )
    pinned = template_sha256(terms.template)
    document = {
        "template": terms.template,
        "template_sha256": pinned,
        "parameters": terms.model_dump(mode="json"),
        "text_en": texts["en"],
        "text_zh": texts["zh"],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    contract = Contract(
        id=new_id("ctr"),
        license_id=license_.id,
        template=terms.template,
        template_sha256=pinned,
        parameters=document["parameters"],
        text_en=texts["en"],
        text_zh=texts["zh"],
        sha256=hashlib.sha256(canonical.encode()).hexdigest(),
        filing_number=filing_number,
        seller_accepted_at=seller_accepted_at,
        buyer_accepted_at=now,
        buyer_api_key_id=buyer_api_key_id,
        filed_at=now,
    )
    session.add(contract)
    return contract


def expiry(parameters: dict[str, Any], filed_at: dt.datetime) -> dt.datetime | None:
    term = ContractParameters.model_validate(parameters).term_days
    return None if term is None else filed_at + dt.timedelta(days=term)

"""Model contract texts: rendered per order in English and Chinese, hashed, accepted, filed.

Templates are platform files (``marketplace/contracts/<template>.<lang>.md``), pinned by their
SHA-256 on every contract. A contract is generated when its order is approved; the buyer and the
seller each accept its SHA-256; the exchange then files it, assigning the next filing number
(备案号) under a row lock. The filing number is not part of the hashed text (the parties accept
the text before it exists); the certificate binds the two. A filed contract never changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.errors import ConflictError
from marketplace.models import (
    Contract,
    ContractAcceptance,
    Counter,
    Dataset,
    DatasetVersion,
    Offer,
    Order,
    Organization,
)
from marketplace.schemas import ContractParameters

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "contracts"
LANGUAGES = ("en", "zh")
_YES_NO = {"en": ("permitted", "not permitted"), "zh": ("允许", "不允许")}
_REQUIRED = {"en": ("yes", "no"), "zh": ("是", "否")}
_UNITS = {"en": {"day": "day(s)", "month": "month(s)"}, "zh": {"day": "日", "month": "个月"}}
# Version 1 printed the filing number in the text; it now comes after acceptance.
_FILING_NOTE = {
    "en": "assigned by the exchange when it files this contract (see the certificate)",
    "zh": "由交易所在备案时编定（见交易凭证）",
}


@cache
def template_text(template: str, language: str) -> str:
    return (TEMPLATE_DIR / f"{template}.{language}.md").read_text(encoding="utf-8")


def template_sha256(template: str) -> str:
    digest = hashlib.sha256()
    for language in LANGUAGES:
        digest.update(template_text(template, language).encode())
    return digest.hexdigest()


def _term(parameters: ContractParameters, offer: Offer, language: str) -> str:
    if offer.plan == "subscription":
        period = f"{offer.period_length} {_UNITS[language][offer.period_unit or 'day']}"
        if language == "en":
            return (
                f"One subscription period of {period} from filing"
                + (", extended by each paid renewal" if offer.renews else ", a fixed term")
                + "; access ends when the paid periods end."
            )
        return (
            f"自备案之日起一个订阅期（{period}）"
            + ("，每次付费续订顺延" if offer.renews else "，期限固定")
            + "；已付期限届满时访问终止。"
        )
    if parameters.term_days is None:
        return "The license does not expire." if language == "en" else "许可不设期限。"
    return (
        f"{parameters.term_days} days from filing; access ends then."
        if language == "en"
        else f"自备案之日起 {parameters.term_days} 日；届时访问终止。"
    )


def _price_terms(offer: Offer, language: str) -> str:
    price, currency = offer.price_amount, offer.currency
    amount = f"{price} {currency}"
    period = f"{offer.period_length} {_UNITS[language][offer.period_unit or 'day']}"
    per_token = offer.training_price_per_million_tokens
    if language == "en":
        text = {
            "free": "The data product is licensed free of charge.",
            "one_off": f"The price is {amount} (minor units), paid once through the exchange's "
            "ledger when this contract is filed.",
            "subscription": f"A subscription at {amount} (minor units) per period of {period}; "
            "the first period is paid through the exchange's ledger when this contract is filed. "
            + (
                "The Licensee may renew for further periods at the same price, each paid when "
                "it is renewed."
                if offer.renews
                else "The term is fixed and is not renewed."
            ),
            "metered": "No price is paid on filing.",
        }[offer.plan]
        if per_token:
            text += (
                f" Governed training jobs are charged {per_token} {currency} (minor units) per "
                "million trained tokens through the exchange's ledger."
            )
        return text
    text = {
        "free": "数据产品免费许可。",
        "one_off": f"价款为 {amount}（最小货币单位），于本合同备案时通过交易所账本一次性支付。",
        "subscription": f"订阅价款为每期（{period}）{amount}（最小货币单位），"
        "首期于本合同备案时通过交易所账本支付。"
        + (
            "被许可方可按同一价格续订后续期限，每次续订时支付。"
            if offer.renews
            else "期限固定，不予续订。"
        ),
        "metered": "备案时不支付价款。",
    }[offer.plan]
    if per_token:
        text += (
            f"受监管的训练任务按每百万训练词元 {per_token} {currency}（最小货币单位）"
            "通过交易所账本计费。"
        )
    return text


def _delivery(offer: Offer, uses: list[str], language: str) -> str:
    en = language == "en"
    if offer.delivery_mode == "training_only":
        return (
            "usable but not visible: the Licensee may only run governed training jobs on the data "
            "inside the exchange and never receives the data files; only approved outputs leave."
            if en
            else "可用不可见：被许可方仅可在交易所内对数据运行受监管的训练任务，不接收数据文件；"
            "仅经批准的产出离开交易所。"
        )
    parts = []
    if "download" in uses:
        parts.append("the Licensee may download the data files" if en else "被许可方可下载数据文件")
    if "training" in uses:
        parts.append(
            "run governed training jobs on them inside the exchange"
            if en
            else "在交易所内对数据运行受监管的训练任务"
        )
    return ((" and " if en else "，并可").join(parts) or "none") + ("." if en else "。")


def _quota(parameters: ContractParameters, language: str) -> str:
    quota = parameters.training_token_quota
    if quota is None:
        return ""
    if language == "en":
        return f" Governed training on the data may consume at most {quota} tokens in all."
    return f"对该数据的受监管训练累计不得超过 {quota} 个词元。"


def _declaration(verification: dict[str, Any] | None, language: str) -> str:
    if verification is None:
        return (
            "none required (a public offer concluded in one step)."
            if language == "en"
            else "无需核验（公开要约一步成交）。"
        )
    company, country = verification["company"], verification["country"]
    use_case = verification["use_case"]
    return (
        f"company {company}, country {country}; intended use: {use_case}"
        if language == "en"
        else f"公司 {company}，国家或地区 {country}；拟用途：{use_case}"
    )


def render(
    parameters: ContractParameters, *, values: dict[str, Any], order: Order, offer: Offer
) -> dict[str, str]:
    """The contract's text in each language."""
    texts = {}
    for language in LANGUAGES:
        permitted, forbidden = _YES_NO[language]
        yes, no = _REQUIRED[language]
        territory = parameters.territory
        fields = {
            **values,
            "filing_number": _FILING_NOTE[language],
            "uses": ", ".join(parameters.permitted_uses),
            "delivery": _delivery(offer, order.uses, language),
            "declaration": _declaration(order.verification, language),
            "redistribution": permitted if parameters.redistribution else forbidden,
            "territory": ("worldwide" if language == "en" else "全球")
            if territory == "worldwide"
            else ", ".join(territory),
            "cross_border_transfer": permitted if parameters.cross_border_transfer else forbidden,
            "term": _term(parameters, offer, language),
            "price_terms": _price_terms(offer, language) + _quota(parameters, language),
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


def contract_sha256(document: dict[str, Any]) -> str:
    """The hash the parties accept: canonical JSON of the template, its terms and both texts."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def generate_contract(session: Session, *, order: Order, offer: Offer) -> Contract:
    """Render and hash the contract of an approved order (the caller commits)."""
    terms = ContractParameters.model_validate(offer.contract_parameters)
    version = session.get(DatasetVersion, order.version_id)
    assert version is not None
    dataset = session.get(Dataset, version.dataset_id)
    buyer = session.get(Organization, order.buyer_organization_id)
    seller = session.get(Organization, order.seller_organization_id)
    assert dataset is not None and buyer is not None and seller is not None
    texts = render(
        terms,
        values={
            "order_id": order.id,
            "seller_name": seller.name,
            "seller_id": seller.id,
            "buyer_name": buyer.name,
            "buyer_id": buyer.id,
            "dataset_name": dataset.name,
            "version_id": version.id,
            "content_hash": version.content_hash,
            "price": offer.price_amount,
            "currency": offer.currency,
        },
        order=order,
        offer=offer,
    )
    document = {
        "template": terms.template,
        "template_sha256": template_sha256(terms.template),
        "parameters": terms.model_dump(mode="json"),
        "text_en": texts["en"],
        "text_zh": texts["zh"],
    }
    contract = Contract(
        id=new_id("ctr"),
        order_id=order.id,
        template=terms.template,
        template_sha256=document["template_sha256"],
        parameters=document["parameters"],
        text_en=texts["en"],
        text_zh=texts["zh"],
        sha256=contract_sha256(document),
        generated_at=utcnow(),
    )
    session.add(contract)
    return contract


def file_contract(session: Session, *, contract: Contract, now: dt.datetime) -> Contract:
    """Assign the next filing number; from then on the contract is immutable (caller commits)."""
    if contract.filed_at is not None:
        raise ConflictError(f"contract {contract.id} is already filed as {contract.filing_number}")
    contract.filing_number = next_filing_number(session, now)
    contract.filed_at = now
    return contract


def contract_of_order(session: Session, order_id: str) -> Contract | None:
    return session.scalar(select(Contract).where(Contract.order_id == order_id))


def acceptances_of(session: Session, contract_id: str) -> list[ContractAcceptance]:
    return list(
        session.scalars(
            select(ContractAcceptance)
            .where(ContractAcceptance.contract_id == contract_id)
            .order_by(ContractAcceptance.accepted_at, ContractAcceptance.party)
        )
    )


def expiry(parameters: dict[str, Any], filed_at: dt.datetime) -> dt.datetime | None:
    term = ContractParameters.model_validate(parameters).term_days
    return None if term is None else filed_at + dt.timedelta(days=term)

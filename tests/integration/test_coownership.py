"""Co-owned datasets through the HTTP API of a running exchange, on both backends.

Two contributor organisations pool rows into one dataset: the lead creates it and invites a
partner, each uploads its own GSM8K rows, the worker curates them into one version whose
provenance names each row's organisation, the lead lists it, a buyer licenses it, and each
co-owner's statement is credited its row share of the sale (after the platform's fee).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from infra.demo import CARD_FACTS
from tests.conftest import Exchange

LEAD_ROWS, PARTNER_ROWS = 300, 100
PRICE = 100_000
FEE_BPS = 500  # the default AIDX_PLATFORM_FEE_BPS


def http(exchange: Exchange, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return str(body["error"]["message"])


def _upload(client: httpx.Client, dataset_id: str, path: Path) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post(
            f"/v1/datasets/{dataset_id}/uploads", files={"file": (path.name, handle)}
        )


@pytest.fixture(scope="module")
def pool(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Organisations, a dataset co-owned by two of them, and each one's uploaded rows."""
    ids: dict[str, Any] = {}
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    ids["operator_key"] = operator["api_key"]["api_key"]
    with exchange.client(ids["operator_key"]) as client:
        for name, org_name, roles in (
            ("lead", "Lead Chain Firm", ["contributor"]),
            ("partner", "Partner Chain Firm", ["contributor", "buyer"]),
            ("outsider", "Outside Firm", ["contributor", "buyer"]),
            ("buyer", "AI Buyer", ["buyer"]),
        ):
            org = client.create_organization(org_name, roles)
            ids[name], ids[f"{name}_key"] = org["id"], org["api_key"]["api_key"]
            ids[f"{name}_name"] = org_name
    scratch = tmp_path_factory.mktemp("pool")
    lines = gsm8k_train.read_bytes().splitlines(keepends=True)
    ids["lead_file"] = scratch / "lead-rows.jsonl"
    ids["lead_file"].write_bytes(b"".join(lines[:LEAD_ROWS]))
    ids["partner_file"] = scratch / "partner-rows.jsonl"
    ids["partner_file"].write_bytes(b"".join(lines[LEAD_ROWS : LEAD_ROWS + PARTNER_ROWS]))
    with http(exchange, ids["lead_key"]) as lead:
        dataset = _ok(
            lead.post("/v1/datasets", json={"name": "pooled-gsm8k", "license": "mit"}), 201
        )
    ids["dataset"] = dataset["id"]
    return ids


def test_only_an_accepted_co_owner_uploads_and_only_the_lead_invites(
    exchange: Exchange, pool: dict[str, Any]
) -> None:
    dataset = pool["dataset"]
    owners_path = f"/v1/datasets/{dataset}/owners"
    with (
        http(exchange, pool["lead_key"]) as lead,
        http(exchange, pool["partner_key"]) as partner,
        http(exchange, pool["outsider_key"]) as outsider,
    ):
        # Before any invitation the partner sees nothing of the dataset.
        _refused(partner.get(f"/v1/datasets/{dataset}"), 404)
        _refused(_upload(partner, dataset, pool["partner_file"]), 404)

        invited = _ok(lead.post(owners_path, json={"organization_id": pool["partner"]}), 201)
        assert (invited["organization_id"], invited["role"], invited["status"]) == (
            pool["partner"],
            "co_owner",
            "invited",
        )
        assert "already" in _refused(
            lead.post(owners_path, json={"organization_id": pool["partner"]}), 409
        )
        assert "contributor role" in _refused(
            lead.post(owners_path, json={"organization_id": pool["buyer"]}), 422
        )
        _refused(lead.post(owners_path, json={"organization_id": "org_missing"}), 404)
        _refused(lead.post(owners_path, json={"organization": pool["partner"]}), 422)

        # Invited: the partner may read the dataset and its owners, not yet upload.
        assert _ok(partner.get(f"/v1/datasets/{dataset}"))["id"] == dataset
        _refused(_upload(partner, dataset, pool["partner_file"]), 404)
        # Nobody accepts for another organisation; a stranger has no invitation to accept.
        _refused(lead.post(f"{owners_path}/{pool['partner']}/accept"), 403)
        _refused(outsider.post(f"{owners_path}/{pool['outsider']}/accept"), 404)

        accepted = _ok(partner.post(f"{owners_path}/{pool['partner']}/accept"))
        assert accepted["status"] == "accepted" and accepted["accepted_at"]
        again = _ok(partner.post(f"{owners_path}/{pool['partner']}/accept"))
        assert again == accepted

        owners = _ok(partner.get(owners_path))
        assert [(o["organization_id"], o["role"], o["status"]) for o in owners] == [
            (pool["lead"], "lead", "accepted"),
            (pool["partner"], "co_owner", "accepted"),
        ]
        assert "lead owner" in _refused(
            partner.post(owners_path, json={"organization_id": pool["outsider"]}), 403
        )
        _refused(outsider.get(owners_path), 404)

        # Each owner's upload records its organisation.
        lead_upload = _ok(_upload(lead, dataset, pool["lead_file"]), 201)
        partner_upload = _ok(_upload(partner, dataset, pool["partner_file"]), 201)
        assert lead_upload["organization_id"] == pool["lead"]
        assert partner_upload["organization_id"] == pool["partner"]
        assert partner_upload["num_rows"] == PARTNER_ROWS
        listed = _ok(partner.get(f"/v1/datasets/{dataset}/uploads"))
        assert {u["organization_id"] for u in listed} == {pool["lead"], pool["partner"]}
        assert dataset in [d["id"] for d in _ok(partner.get("/v1/datasets"))]
        assert dataset not in [d["id"] for d in _ok(outsider.get("/v1/datasets"))]
        _refused(outsider.get(f"/v1/datasets/{dataset}/uploads"), 404)


def test_a_co_owner_leaves_only_before_it_contributed(
    exchange: Exchange, pool: dict[str, Any]
) -> None:
    owners_path = f"/v1/datasets/{pool['dataset']}/owners"
    with (
        http(exchange, pool["lead_key"]) as lead,
        http(exchange, pool["partner_key"]) as partner,
        http(exchange, pool["outsider_key"]) as outsider,
    ):
        _ok(lead.post(owners_path, json={"organization_id": pool["outsider"]}), 201)
        # A co-owner cannot remove another one; the lead withdraws the invitation.
        _refused(partner.delete(f"{owners_path}/{pool['outsider']}"), 403)
        _ok(lead.delete(f"{owners_path}/{pool['outsider']}"), 204)
        _refused(outsider.post(f"{owners_path}/{pool['outsider']}/accept"), 404)
        assert pool["outsider"] not in [o["organization_id"] for o in _ok(lead.get(owners_path))]
        # The partner has uploaded rows: neither it nor the lead can take it off the dataset.
        assert "upload" in _refused(partner.delete(f"{owners_path}/{pool['partner']}"), 409)
        _refused(lead.delete(f"{owners_path}/{pool['partner']}"), 409)
        _refused(lead.delete(f"{owners_path}/{pool['lead']}"), 409)
    with exchange.client(pool["operator_key"]) as operator:
        events = operator.request("GET", "/v1/audit/verify")
    assert events["intact"]


@pytest.fixture(scope="module")
def sale(exchange: Exchange, pool: dict[str, Any]) -> dict[str, Any]:
    """The pooled rows curated into one version, listed by the lead, licensed by a buyer."""
    with exchange.client(pool["lead_key"]) as lead:
        run = lead.start_curation(pool["dataset"])
        run = lead.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        version = lead.version(run["version_id"])
        lead.update_card(version["id"], CARD_FACTS)
        listing = lead.submit_listing(
            version_id=version["id"], title="Pooled GSM8K", summary="rows from two firms",
            price_amount=PRICE, currency="CNY",
        )  # fmt: skip
    with exchange.client(pool["operator_key"]) as operator:
        operator.review_listing(listing["id"], "approve")
        operator.request(
            "POST",
            "/v1/ledger/top-ups",
            json={"organization_id": pool["buyer"], "amount": PRICE, "currency": "CNY"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    with exchange.client(pool["buyer_key"]) as buyer:
        license_ = buyer.license(listing["id"], idempotency_key=uuid.uuid4().hex)
    return {"version": version, "listing": listing, "license": license_}


def test_the_version_counts_each_owners_rows_from_provenance(
    exchange: Exchange, pool: dict[str, Any], sale: dict[str, Any]
) -> None:
    version = sale["version"]
    assert version["num_rows"] == LEAD_ROWS + PARTNER_ROWS
    total = LEAD_ROWS + PARTNER_ROWS
    assert version["shares"] == [
        {"organization_id": pool["lead"], "rows": LEAD_ROWS, "fraction": LEAD_ROWS / total},
        {
            "organization_id": pool["partner"],
            "rows": PARTNER_ROWS,
            "fraction": PARTNER_ROWS / total,
        },
    ]
    with http(exchange, pool["partner_key"]) as partner:
        # The co-owner sees the version and downloads its shards; the rows name their owners.
        assert _ok(partner.get(f"/v1/versions/{version['id']}"))["shares"] == version["shares"]
        versions = _ok(partner.get(f"/v1/datasets/{pool['dataset']}/versions"))
        assert [v["id"] for v in versions] == [version["id"]]
        contributors: list[str] = []
        for file in version["files"]:
            response = partner.get(f"/v1/versions/{version['id']}/files/{file['path']}")
            assert response.status_code == 200, response.text
            table = pq.read_table(io.BytesIO(response.content), columns=["_contributor"])
            contributors += table.column("_contributor").to_pylist()
    assert contributors.count(pool["lead_name"]) == LEAD_ROWS
    assert contributors.count(pool["partner_name"]) == PARTNER_ROWS


def test_a_sale_pays_each_co_owner_its_row_share(
    exchange: Exchange, pool: dict[str, Any], sale: dict[str, Any]
) -> None:
    fee = PRICE * FEE_BPS // 10_000
    total = LEAD_ROWS + PARTNER_ROWS
    expected = {
        pool["lead"]: (PRICE - fee) * LEAD_ROWS // total,
        pool["partner"]: (PRICE - fee) * PARTNER_ROWS // total,
    }
    assert sum(expected.values()) == PRICE - fee  # the shares divide evenly here
    for name in ("lead", "partner"):
        with http(exchange, pool[f"{name}_key"]) as client:
            statement = _ok(client.get(f"/v1/organizations/{pool[name]}/statement"))
        (account,) = statement["accounts"]
        credits = [
            line
            for line in account["entries"]
            if line["reference_id"] == sale["license"]["id"] and line["kind"] == "purchase"
        ]
        assert [line["amount"] for line in credits] == [expected[pool[name]]], statement
        assert account["balance"] == expected[pool[name]]


def test_a_co_owner_cannot_license_the_dataset_it_is_paid_for(
    exchange: Exchange, pool: dict[str, Any], sale: dict[str, Any]
) -> None:
    with http(exchange, pool["partner_key"]) as partner:
        message = _refused(
            partner.post(
                "/v1/licenses",
                json={"listing_id": sale["listing"]["id"]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            ),
            409,
        )
    assert "co-owner" in message


def test_only_the_lead_manages_listings_and_the_card(
    exchange: Exchange, pool: dict[str, Any], sale: dict[str, Any]
) -> None:
    version_id = sale["version"]["id"]
    with http(exchange, pool["partner_key"]) as partner:
        _refused(
            partner.post(
                "/v1/listings",
                json={"version_id": version_id, "title": "mine too", "price_amount": 1},
            ),
            404,
        )
        _refused(partner.patch(f"/v1/versions/{version_id}/card", json={"scope": "x"}), 404)
        _refused(
            partner.post(f"/v1/listings/{sale['listing']['id']}/delist", json={"reason": "no"}),
            404,
        )
    with http(exchange, pool["outsider_key"]) as outsider:
        # Listed: its metadata is public, its bytes need a license.
        assert _ok(outsider.get(f"/v1/versions/{version_id}"))["id"] == version_id
        path = sale["version"]["files"][0]["path"]
        _refused(outsider.get(f"/v1/versions/{version_id}/files/{path}"), 403)

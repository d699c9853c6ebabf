"""The trade through the HTTP API of a running exchange, on the embedded and the real backends.

One module-scoped trade walks the whole path (organisations → upload → curation on the worker →
card → listing → license → download → training → certificate); the tests then check what it
left behind, and what the API refuses.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from curation.writers import ShardInfo, version_content_hash
from infra.db import dispose_engines, session_scope, utcnow
from infra.demo import CARD_FACTS
from marketplace.certificates import CertificateError, load_public_key, verify_certificate
from marketplace.client import AidxClient, ApiError
from marketplace.models import Entitlement
from tests.conftest import Exchange
from training_jobs.governance import grant_hash
from training_jobs.models import TrainingJob
from training_jobs.service import execute_job

OVERLAP = 40
TRAINING = {"max_steps": 6, "batch_size": 4, "max_seq_len": 128}


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return dict(body["error"])


@pytest.fixture(scope="module")
def trade(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    ids["operator_key"] = operator["api_key"]["api_key"]
    with exchange.client(ids["operator_key"]) as client:
        contributor = client.create_organization("Contributor Co", ["contributor"])
        buyer = client.create_organization("Buyer Lab", ["buyer"])
        outsider = client.create_organization("Other Lab", ["buyer", "researcher"])
    for name, org in (("contributor", contributor), ("buyer", buyer), ("outsider", outsider)):
        ids[name], ids[f"{name}_key"] = org["id"], org["api_key"]["api_key"]

    scratch = tmp_path_factory.mktemp("trade")
    small = scratch / "gsm8k_part.jsonl"
    lines = gsm8k_train.read_bytes().splitlines(keepends=True)[:400]
    small.write_bytes(b"".join(lines))
    overlap = scratch / "gsm8k_again.jsonl"
    overlap.write_bytes(b"".join(lines[:OVERLAP]))

    seller = exchange.client(ids["contributor_key"])
    buyer_client = exchange.client(ids["buyer_key"])
    operator_client = exchange.client(ids["operator_key"])
    try:
        _walk_trade(ids, seller, operator_client, buyer_client, small, overlap)
    finally:
        for client in (seller, buyer_client, operator_client):
            client.close()
    return ids


def _walk_trade(
    ids: dict[str, Any],
    seller: AidxClient,
    operator: AidxClient,
    buyer_client: AidxClient,
    small: Path,
    overlap: Path,
) -> None:
    dataset = seller.create_dataset(name="gsm8k-part", license="mit", language=["en"])
    ids["dataset"] = dataset["id"]
    ids["uploads"] = [seller.upload(dataset["id"], small), seller.upload(dataset["id"], overlap)]
    run = seller.start_curation(dataset["id"])
    run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    ids["run"] = run
    ids["version"] = seller.version(run["version_id"])
    seller.update_card(run["version_id"], CARD_FACTS)
    listing = seller.submit_listing(
        version_id=run["version_id"], title="GSM8K part", summary="math word problems",
        price_amount=50_000, currency="CNY",
    )  # fmt: skip
    operator.review_listing(listing["id"], "approve")
    ids["listing"] = listing["id"]

    top_up(operator, ids["buyer"], 1_000_000)
    ids["idempotency_key"] = uuid.uuid4().hex
    ids["license"] = buyer_client.license(listing["id"], idempotency_key=ids["idempotency_key"])
    job = buyer_client.submit_training_job(run["version_id"], TRAINING)
    ids["job"] = buyer_client.wait_for(
        f"/v1/training-jobs/{job['id']}",
        done=("succeeded", "quarantined", "failed", "cancelled"),
        timeout=300,
    )


def top_up(operator: AidxClient, organization_id: str, amount: int) -> None:
    operator.request(
        "POST",
        "/v1/ledger/top-ups",
        json={"organization_id": organization_id, "amount": amount, "currency": "CNY"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


def http(exchange: Exchange, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=exchange.base_url, headers=headers, timeout=60)


# The path -------------------------------------------------------------------------------------


def test_curation_publishes_deduplicated_parquet_with_provenance(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    version = trade["version"]
    assert trade["run"]["report"]["rows_in"] == 400 + OVERLAP
    assert version["num_rows"] == 400  # the re-delivered rows were exact duplicates
    assert version["files"] and all(f["path"].endswith(".parquet") for f in version["files"])
    with exchange.client(trade["buyer_key"]) as buyer:
        path = tmp_path / "shard.parquet"
        buyer.download(version["id"], version["files"][0]["path"], path)
    table = pq.read_table(path)
    assert {"question", "answer", "_contributor", "_source_file", "_source_row"} <= set(
        table.column_names
    )
    assert set(table.column("_contributor").to_pylist()) == {"Contributor Co"}
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_downloaded_bytes_match_the_version_hashes(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    version = trade["version"]
    shards = []
    with exchange.client(trade["buyer_key"]) as buyer:
        for file in version["files"]:
            digest = buyer.download(version["id"], file["path"], tmp_path / file["path"])
            assert digest == file["sha256"]
            assert (tmp_path / file["path"]).stat().st_size == file["num_bytes"]
            shards.append(ShardInfo(file["path"], file["num_rows"], file["num_bytes"], digest))
    assert version_content_hash(shards) == version["content_hash"]


def test_range_requests_and_presigned_urls_serve_the_same_bytes(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    version = trade["version"]
    file = version["files"][0]
    with http(exchange, trade["buyer_key"]) as client:
        whole = client.get(f"/v1/versions/{version['id']}/files/{file['path']}")
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).hexdigest() == file["sha256"]
        part = client.get(
            f"/v1/versions/{version['id']}/files/{file['path']}", headers={"Range": "bytes=4-99"}
        )
        assert part.status_code == 206
        assert part.content == whole.content[4:100]
        urls = client.get(f"/v1/versions/{version['id']}/download-urls").json()
    assert [url["path"] for url in urls] == [f["path"] for f in version["files"]]
    fetched = httpx.get(urls[0]["url"], timeout=30)  # no API key: the URL itself is the grant
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == file["sha256"]
    if exchange.backend == "embedded":  # moto's server does not check S3 signatures
        tampered = urls[0]["url"].replace("signature=", "signature=0")
        assert httpx.get(tampered, timeout=30).status_code == 403


def test_the_card_is_a_hugging_face_readme_of_this_version(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    from huggingface_hub import DatasetCard

    with exchange.client(trade["buyer_key"]) as buyer:
        text = buyer.card(trade["version"]["id"])
    card = DatasetCard(text)
    assert card.data.license == "mit"
    assert trade["version"]["content_hash"] in text
    examples = card.data.dataset_info["splits"][0]["num_examples"]
    assert examples == trade["version"]["num_rows"]


def test_catalog_lists_the_approved_listing_and_search_filters(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with exchange.client(trade["outsider_key"]) as client:
        assert trade["listing"] in [entry["id"] for entry in client.catalog()["data"]]
        assert trade["listing"] in [
            entry["id"] for entry in client.catalog("word problems")["data"]
        ]
        assert client.catalog("no such words anywhere")["count"] == 0


def test_license_grants_an_entitlement_and_a_retry_returns_the_same_license(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    license_ = trade["license"]
    assert license_["entitlement"]["version_id"] == trade["version"]["id"]
    assert sorted(license_["entitlement"]["uses"]) == ["download", "training"]
    with http(exchange, trade["buyer_key"]) as client:
        retry = client.post(
            "/v1/licenses",
            json={"listing_id": trade["listing"]},
            headers={"Idempotency-Key": trade["idempotency_key"]},
        )
        assert retry.status_code == 200
        assert retry.json()["id"] == license_["id"]
        other = client.post(
            "/v1/licenses",
            json={"listing_id": trade["listing"], "uses": ["download"]},
            headers={"Idempotency-Key": trade["idempotency_key"]},
        )
        assert other.status_code == 409
        assert "Idempotency-Key" in _error(other)["message"]
        entitlements = client.get("/v1/entitlements").json()
    assert [entitlement["license_id"] for entitlement in entitlements] == [license_["id"]]


def test_training_job_reports_events_and_stores_loadable_weights(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    job = trade["job"]
    assert job["status"] == "succeeded", job["error"]
    assert job["trained_tokens"] > 0
    with exchange.client(trade["buyer_key"]) as buyer:
        events = buyer.training_events(job["id"])
    types = [event["type"] for event in events]
    assert types[0] == "started" and "progress" in types
    assert types[-3:] == ["completed", "auditing", "audited"]
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    with (Path(__file__).parents[1] / "fixtures/data/gsm8k_train.jsonl").open() as rows:
        question = json.loads(rows.readline())["question"]
    assert question[:40] not in json.dumps(events)  # metrics only, never rows

    store = exchange.store
    model_dir = tmp_path / "model"
    for artifact in job["artifacts"]:
        target = model_dir / artifact["path"]
        store.download_to(artifact["key"], target)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == artifact["sha256"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.num_parameters() > 0


def test_certificate_verifies_offline_and_tampering_is_detected(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with exchange.client(trade["buyer_key"]) as buyer:
        certificate = buyer.certificate(trade["license"]["id"])
        key = load_public_key(buyer.signing_key()["public_key_pem"])
    payload = verify_certificate(certificate, key)
    assert payload["license_id"] == trade["license"]["id"]
    assert payload["buyer"]["organization_id"] == trade["buyer"]
    assert payload["seller"]["organization_id"] == trade["contributor"]
    assert payload["dataset"]["content_hash"] == trade["version"]["content_hash"]
    assert payload["price"] == {"amount": 50_000, "currency": "CNY"}
    with http(exchange, trade["outsider_key"]) as client:  # any member can check one online
        online = client.post("/v1/certificates/verify", json=certificate).json()
        assert online == {"valid": True, "payload": payload}
        well_known = client.get("/.well-known/aidx-certificate-key.pem").text
        assert load_public_key(well_known).public_bytes_raw() == key.public_bytes_raw()
        certificate["payload"]["price"]["amount"] = 1
        with pytest.raises(CertificateError):
            verify_certificate(certificate, key)
        forged = client.post("/v1/certificates/verify", json=certificate).json()
        assert forged["valid"] is False and "signature" in forged["reason"]


def test_api_keys_and_bootstrap_token_are_not_stored_in_clear(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    engine = create_engine(exchange.settings.resolved_database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT prefix, secret_hash FROM api_keys")).all()
        dump = json.dumps([list(row) for row in rows])
    engine.dispose()
    assert len(rows) == 4
    for key in (trade["operator_key"], trade["contributor_key"], trade["buyer_key"]):
        assert key not in dump
        assert hashlib.sha256(key.encode()).hexdigest() in dump


def test_every_state_change_is_in_the_audit_trail(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    engine = create_engine(exchange.settings.resolved_database_url)
    with engine.connect() as connection:
        actions = {row[0] for row in connection.execute(text("SELECT action FROM audit_events"))}
    engine.dispose()
    assert {
        "organization.created", "dataset.created", "upload.created", "curation_run.queued",
        "dataset_version.published", "listing.submitted", "listing.listed", "license.concluded",
        "training_job.queued", "training_job.succeeded",
    } <= actions  # fmt: skip


# What the API refuses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("broken.jsonl", b'{"question": "ok"}\n{"question": \n', "line 2"),
        ("image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "ragged.csv"),
        ("truncated.parquet", b"PAR1\x00\x00garbage", "truncated.parquet"),
        ("empty.jsonl", b"", "empty.jsonl"),
        ("notes.docx", b"hello", "notes.docx"),
    ],
)
def test_invalid_uploads_are_refused_and_nothing_is_stored(
    exchange: Exchange, trade: dict[str, Any], filename: str, content: bytes, expected: str
) -> None:
    store = exchange.store
    before = sorted(obj.key for obj in store.list())
    with http(exchange, trade["contributor_key"]) as client:
        uploads_before = client.get(f"/v1/datasets/{trade['dataset']}/uploads").json()
        response = client.post(
            f"/v1/datasets/{trade['dataset']}/uploads",
            files={"file": (filename, io.BytesIO(content))},
        )
        assert response.status_code == 422
        assert expected in _error(response)["message"]
        assert client.get(f"/v1/datasets/{trade['dataset']}/uploads").json() == uploads_before
    assert sorted(obj.key for obj in store.list()) == before


def test_missing_malformed_wrong_and_revoked_keys_get_401(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with http(exchange) as client:
        assert "Authorization" in _error(client.get("/v1/me"))["message"]
        for header in ("Basic abc", "Bearer nonsense", "Bearer aidx_000000000000_wrong"):
            response = client.get("/v1/me", headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"] == "Bearer"
    with http(exchange, trade["outsider_key"]) as client:
        created = client.post(f"/v1/organizations/{trade['outsider']}/api-keys", json={}).json()
    with http(exchange, created["api_key"]) as client:
        assert client.get("/v1/me").status_code == 200
        assert client.delete(f"/v1/api-keys/{created['id']}").status_code == 200
        response = client.get("/v1/me")
        assert response.status_code == 401
        assert "revoked" in _error(response)["message"]


def test_another_organisations_objects_are_not_found(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with http(exchange, trade["outsider_key"]) as client:
        for path in (
            f"/v1/datasets/{trade['dataset']}",
            f"/v1/datasets/{trade['dataset']}/uploads",
            f"/v1/curation-runs/{trade['run']['id']}",
            f"/v1/licenses/{trade['license']['id']}",
            f"/v1/training-jobs/{trade['job']['id']}",
            f"/v1/organizations/{trade['buyer']}",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "not found" in _error(response)["message"]
        upload = client.post(
            f"/v1/datasets/{trade['dataset']}/uploads",
            files={"file": ("x.jsonl", io.BytesIO(b'{"a": 1}\n'))},
        )
        assert upload.status_code in (403, 404)
        # Listed metadata is public, but the bytes need a download entitlement.
        version = trade["version"]
        assert client.get(f"/v1/versions/{version['id']}").status_code == 200
        response = client.get(f"/v1/versions/{version['id']}/files/{version['files'][0]['path']}")
        assert response.status_code == 403
        assert "entitlement" in _error(response)["message"]


def test_unknown_ids_name_the_id(exchange: Exchange, trade: dict[str, Any]) -> None:
    with http(exchange, trade["buyer_key"]) as client:
        for path in ("/v1/versions/dv_nope", "/v1/listings/lst_nope", "/v1/training-jobs/ftjob_x"):
            response = client.get(path)
            assert response.status_code == 404
            assert path.rsplit("/", 1)[1] in _error(response)["message"]


def test_roles_are_enforced(exchange: Exchange, trade: dict[str, Any]) -> None:
    with http(exchange, trade["buyer_key"]) as client:
        response = client.post("/v1/datasets", json={"name": "x", "license": "mit"})
        assert response.status_code == 403
        assert "contributor" in _error(response)["message"]
        assert (
            client.post("/v1/organizations", json={"name": "y", "roles": ["buyer"]}).status_code
            == 403
        )
    with http(exchange, trade["contributor_key"]) as client:
        review = client.post(
            f"/v1/listings/{trade['listing']}/review", json={"decision": "approve"}
        )
        assert review.status_code == 403
        own = client.post(
            "/v1/licenses", json={"listing_id": trade["listing"]}, headers={"Idempotency-Key": "k"}
        )
        assert own.status_code == 403  # contributors are not buyers


def test_bootstrap_happens_once_and_needs_the_token(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with http(exchange) as client:
        body = {"organization_name": "Second Operator"}
        wrong = client.post("/v1/bootstrap", json=body, headers={"X-Bootstrap-Token": "wrong"})
        assert wrong.status_code == 401
        again = client.post(
            "/v1/bootstrap", json=body, headers={"X-Bootstrap-Token": exchange.bootstrap_token}
        )
        assert again.status_code == 409


def test_training_needs_a_training_entitlement_and_valid_params(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    version_id = trade["version"]["id"]
    with http(exchange, trade["outsider_key"]) as client:
        response = client.post("/v1/training-jobs", json={"version_id": version_id, "params": {}})
        assert response.status_code == 403
        assert "training entitlement" in _error(response)["message"]
    with http(exchange, trade["buyer_key"]) as client:
        for params, field in (
            ({"max_steps": 0}, "max_steps"),
            ({"learning_rate": "fast"}, "learning_rate"),
            ({"surprise": 1}, "surprise"),
            ({"base_model": "../../etc"}, "base_model"),
            ({"base_model": "not-installed"}, "not-installed"),
        ):
            response = client.post(
                "/v1/training-jobs", json={"version_id": version_id, "params": params}
            )
            assert response.status_code == 422, params
            assert field in _error(response)["message"], params


def test_request_bodies_are_validated_with_field_names(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with http(exchange, trade["contributor_key"]) as client:
        response = client.post("/v1/datasets", json={"name": "ok", "license": "not-a-license"})
        assert response.status_code == 422
        assert "not-a-license" in _error(response)["message"]
        response = client.post(
            "/v1/listings",
            json={"version_id": trade["version"]["id"], "title": "t", "price_amount": -5},
        )
        assert response.status_code == 422
        assert "price_amount" in _error(response)["message"]
        response = client.post(
            f"/v1/datasets/{trade['dataset']}/curation-runs", json={"recipe": "nope"}
        )
        assert response.status_code == 422
        assert "nope" in _error(response)["message"]


def test_client_raises_api_errors_with_code_and_message(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with (
        AidxClient(exchange.base_url, trade["buyer_key"]) as client,
        pytest.raises(ApiError) as error,
    ):
        client.version("dv_missing")
    assert error.value.status_code == 404
    assert error.value.code == "not_found"


def test_the_worker_checks_the_gate_again_and_fails_a_job_whose_grant_was_revoked(
    exchange: Exchange, trade: dict[str, Any]
) -> None:

    with exchange.client(trade["operator_key"]) as operator:
        late = operator.create_organization(f"Late Lab {uuid.uuid4().hex[:6]}", ["buyer"])
        top_up(operator, late["id"], 50_000)
    with exchange.client(late["api_key"]["api_key"]) as client:
        license_ = client.license(trade["listing"])
    settings = exchange.settings
    # A job queued while the grant held; the entitlement is revoked before a worker takes it.
    with session_scope(settings) as session:
        entitlement = session.get(Entitlement, license_["entitlement"]["id"])
        assert entitlement is not None
        job = TrainingJob(
            id=f"ftjob_{uuid.uuid4().hex}", organization_id=late["id"],
            version_id=trade["version"]["id"], entitlement_id=entitlement.id,
            grant_hash=grant_hash(entitlement), params=dict(TRAINING), status="queued",
            artifacts=[], created_at=utcnow(),
        )  # fmt: skip
        session.add(job)
        entitlement.revoked_at = utcnow()
        session.commit()
        job_id = job.id
    try:
        assert execute_job(job_id, settings=settings) == "failed"
    finally:
        dispose_engines()
    with exchange.client(late["api_key"]["api_key"]) as client:
        failed = client.request("GET", f"/v1/training-jobs/{job_id}")
    assert failed["status"] == "failed"
    assert "training entitlement" in failed["error"]
    assert failed["artifacts"] == []


# The card ---------------------------------------------------------------------------------------


def test_the_card_is_served_as_readme_croissant_json_and_a_bilingual_page(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    version_id = trade["version"]["id"]
    with exchange.client(trade["outsider_key"]) as client:  # listed: any member may read it
        croissant = json.loads(client.card(version_id, format="croissant"))
        card = json.loads(client.card(version_id, format="json"))
        page = client.card(version_id, format="product-html")
    assert "@context" in croissant and croissant["name"]
    assert croissant["distribution"][0]["sha256"] == trade["version"]["files"][0]["sha256"]
    assert card["lawful_source_statement"] == CARD_FACTS["lawful_source_statement"]
    assert "合法来源" in page and "<html" in page.lower()


def test_card_revisions_record_who_changed_what_and_lint_is_clean(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    version_id = trade["version"]["id"]
    with exchange.client(trade["contributor_key"]) as client:
        revisions = client.request("GET", f"/v1/versions/{version_id}/card/revisions")
        diff = client.request(
            "GET", f"/v1/versions/{version_id}/card/diff", params={"from": 1, "to": 2}
        )
        lint = client.request("GET", f"/v1/versions/{version_id}/card/lint")
    assert [revision["number"] for revision in revisions] == [1, 2]
    assert revisions[1]["author_organization_id"] == trade["contributor"]
    assert "lawful_source_statement" in {change["path"] for change in diff}
    assert lint["errors"] == 0


def test_machine_facts_and_other_organisations_cannot_edit_the_card(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    version_id = trade["version"]["id"]
    with http(exchange, trade["contributor_key"]) as client:
        before = client.get(f"/v1/versions/{version_id}/card", params={"format": "json"}).json()
        response = client.patch(f"/v1/versions/{version_id}/card", json={"files": []})
        assert response.status_code == 422
        assert "files" in _error(response)["message"]
        response = client.patch(f"/v1/versions/{version_id}/card", json={"license": "nope-1.0"})
        assert response.status_code == 422
        after = client.get(f"/v1/versions/{version_id}/card", params={"format": "json"}).json()
        assert after == before  # nothing half-written
    for key in (trade["buyer_key"], trade["outsider_key"]):
        with http(exchange, key) as client:
            response = client.patch(
                f"/v1/versions/{version_id}/card", json={"limitations": "none at all"}
            )
            assert response.status_code == 404


def test_a_version_whose_card_has_errors_cannot_be_listed(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with exchange.client(trade["contributor_key"]) as seller:
        run = seller.start_curation(trade["dataset"])
        run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        with pytest.raises(ApiError) as refused:
            seller.submit_listing(
                version_id=run["version_id"], title="unfinished card", price_amount=1
            )
    assert refused.value.status_code == 422
    assert "lawful_source_statement" in refused.value.message


# The catalog ------------------------------------------------------------------------------------


def _catalog_ids(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/v1/catalog", params=params)
    assert response.status_code == 200, response.text
    return [entry["id"] for entry in response.json()["data"]]


def test_catalog_searches_the_card_text_in_any_script_and_filters_by_facets(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    listing, rows = trade["listing"], trade["version"]["num_rows"]
    with exchange.client(trade["contributor_key"]) as seller:
        seller.update_card(trade["version"]["id"], {"scope": "小学数学应用题，含分步解答"})
    with http(exchange, trade["outsider_key"]) as client:
        assert _catalog_ids(client, q="word problems") == [listing]  # title and summary
        assert _catalog_ids(client, q="step-by-step reasoning") == [listing]  # card text
        assert _catalog_ids(client, q="数学应用") == [listing]  # Chinese, refreshed on PATCH
        assert _catalog_ids(client, q="quantum chromodynamics") == []
        for params, found in (
            ({"license": "mit"}, True),
            ({"license": "cc-by-nc-4.0"}, False),
            ({"allowed_use": "commercial"}, True),
            ({"allowed_use": "non-commercial"}, False),
            ({"language": "en"}, True),
            ({"language": "zh"}, False),
            ({"task": "question-answering"}, True),
            ({"task": "translation"}, False),
            ({"min_rows": rows, "max_rows": rows}, True),
            ({"min_rows": rows + 1}, False),
            ({"max_price": 49_999}, False),
            ({"min_price": 50_000, "currency": "CNY"}, True),
            ({"currency": "USD"}, False),
        ):
            assert (_catalog_ids(client, **params) == [listing]) is found, params
        entry = client.get("/v1/catalog", params={"q": "math"}).json()["data"][0]
        assert (entry["license"], entry["allowed_use"], entry["num_rows"]) == (
            "mit",
            "commercial",
            rows,
        )
        for bad in ({"sort": "cheapest"}, {"allowed_use": "sometimes"}, {"min_rows": -1}):
            response = client.get("/v1/catalog", params=bad)
            assert response.status_code == 422
            assert next(iter(bad)) in _error(response)["message"]


def test_a_released_model_is_downloadable_by_its_buyer_only(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    job = trade["job"]
    release = job["result"]["release"]
    assert release["decision"] == "release"
    assert {check["name"] for check in release["checks"]} == {
        "canary_exposure", "verbatim_extraction", "membership_inference", "pii_in_generations",
    }  # fmt: skip
    weights = next(a for a in job["artifacts"] if a["path"].endswith(".safetensors"))
    path = f"/v1/training-jobs/{job['id']}/artifacts/{weights['path']}"
    with http(exchange, trade["buyer_key"]) as client:
        response = client.get(path)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == weights["sha256"]
        assert client.get(f"/v1/training-jobs/{job['id']}/artifacts/nope").status_code == 404
    for key in (trade["contributor_key"], trade["outsider_key"]):
        with http(exchange, key) as client:
            assert client.get(path).status_code == 404


def test_a_model_the_release_gate_holds_is_quarantined_and_its_weights_stay_inside(
    exchange: Exchange, trade: dict[str, Any]
) -> None:
    with session_scope(exchange.settings) as session:
        entitlement = session.get(Entitlement, trade["license"]["entitlement"]["id"])
        assert entitlement is not None
        job = TrainingJob(
            id=f"ftjob_{uuid.uuid4().hex}", organization_id=trade["buyer"],
            version_id=trade["version"]["id"], entitlement_id=entitlement.id,
            grant_hash=grant_hash(entitlement), params=dict(TRAINING), status="queued",
            artifacts=[], created_at=utcnow(),
        )  # fmt: skip
        session.add(job)
        session.commit()
        job_id = job.id
    # An operator policy no model can meet: any measurable canary exposure is too much.
    strict = exchange.settings.model_copy(update={"release_policy": {"max_canary_exposure": 1e-6}})
    try:
        assert execute_job(job_id, settings=strict) == "quarantined"
    finally:
        dispose_engines()
    with http(exchange, trade["buyer_key"]) as client:
        held = client.get(f"/v1/training-jobs/{job_id}").json()
        assert held["status"] == "quarantined"
        assert held["result"]["release"]["decision"] == "quarantine"
        failed = [c for c in held["result"]["release"]["checks"] if not c["passed"]]
        assert "canary_exposure" in [check["name"] for check in failed]
        weights = next(a for a in held["artifacts"] if a["path"].endswith(".safetensors"))
        refused = client.get(f"/v1/training-jobs/{job_id}/artifacts/{weights['path']}")
        assert refused.status_code == 409
        assert "release gate" in _error(refused)["message"]
        events = client.get(f"/v1/training-jobs/{job_id}/events").json()["data"]
        assert {"type": "audited", "decision": "quarantine"} in [
            {"type": event["type"], **event["data"]} for event in events
        ]

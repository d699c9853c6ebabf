"""The real ``huggingface_hub`` and ``datasets`` clients against a running exchange, both backends.

``huggingface_hub`` reads ``HF_ENDPOINT`` when it is imported, so every client interaction runs
in a fresh interpreter (``sys.executable -c``) with ``HF_ENDPOINT`` set to the service, an API key
as ``HF_TOKEN`` and its own ``HF_HOME``; each script prints one JSON result. A module-scoped trade
leaves a listed dataset licensed in full by one buyer and for training only by another, an
outsider without a license, and an unlisted dataset of the contributor.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from marketplace.client import AidxClient
from tests.conftest import Exchange

ROWS = 300
REPO = "contributor-co/gsm8k-part"
UNLISTED = "contributor-co/unlisted-notes"
LAWFUL = "GSM8K, released by OpenAI under the MIT licence; copied verbatim."

HARNESS = """
import json

def report(value):
    print("RESULT " + json.dumps(value, default=str))

def refusal(call):
    try:
        call()
    except Exception as error:
        response = getattr(error, "response", None)
        return {"error": type(error).__name__, "status": getattr(response, "status_code", None)}
    return None
"""


def run_client(exchange: Exchange, key: str, home: Path, script: str) -> Any:
    """Run ``script`` in a new interpreter pointed at the exchange; return what it reported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env |= {
        "HF_ENDPOINT": exchange.base_url,
        "HF_TOKEN": key,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    code = HARNESS + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, f"client failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(results[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def trade(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Contributor Co lists ``GSM8K part``; Buyer Lab licenses it in full, Train Only Lab for
    training only; Other Lab holds nothing; ``Unlisted notes`` is never listed."""
    ids: dict[str, Any] = {}
    with exchange.client() as anonymous:
        operator_key = anonymous.bootstrap(exchange.bootstrap_token, "Operator")["api_key"]
    with exchange.client(operator_key["api_key"]) as operator:
        for role, name, roles in (
            ("contributor", "Contributor Co", ["contributor"]),
            ("buyer", "Buyer Lab", ["buyer"]),
            ("trainee", "Train Only Lab", ["buyer"]),
            ("outsider", "Other Lab", ["buyer"]),
        ):
            ids[role] = operator.create_organization(name, roles)["api_key"]["api_key"]
        scratch = tmp_path_factory.mktemp("hf-trade")
        rows = scratch / "gsm8k.jsonl"
        rows.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:ROWS]))
        notes = scratch / "notes.jsonl"
        notes.write_text('{"text": "private note one"}\n{"text": "private note two"}\n')
        with exchange.client(ids["contributor"]) as seller:
            ids["version"] = _publish(seller, "GSM8K part", rows)
            ids["unlisted_version"] = _publish(seller, "Unlisted notes", notes)
            seller.update_card(ids["version"]["id"], {"lawful_source_statement": LAWFUL})
            listing = seller.submit_listing(  # free: settlement is tested elsewhere
                version_id=ids["version"]["id"], title="GSM8K part", price_amount=0
            )
        operator.review_listing(listing["id"], "approve")
    with exchange.client(ids["buyer"]) as buyer:
        buyer.license(listing["id"])
    with exchange.client(ids["trainee"]) as trainee:
        trainee.license(listing["id"], uses=["training"])
    return ids


def _publish(seller: AidxClient, name: str, path: Path) -> dict[str, Any]:
    dataset = seller.create_dataset(name=name, license="mit", language=["en"])
    seller.upload(dataset["id"], path)
    run = seller.start_curation(dataset["id"])
    run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
    assert run["status"] == "succeeded", run["error"]
    return seller.version(run["version_id"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Downloads ------------------------------------------------------------------------------------


def test_snapshot_download_holds_the_version_files_and_its_card(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    result = run_client(
        exchange,
        trade["buyer"],
        tmp_path,
        f"""
        from pathlib import Path
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download({REPO!r}, repo_type="dataset"))
        report({{"folder": str(folder), "files": sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
        )}})
        """,
    )
    version = trade["version"]
    folder = Path(result["folder"])
    assert result["files"] == sorted(["README.md", *(f["path"] for f in version["files"])])
    for file in version["files"]:
        assert _sha256(folder / file["path"]) == file["sha256"]
    with exchange.client(trade["buyer"]) as buyer:
        assert (folder / "README.md").read_text() == buyer.card(version["id"])


def test_hf_hub_download_of_one_shard_has_the_sha256_as_etag(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    shard = trade["version"]["files"][0]
    result = run_client(
        exchange,
        trade["buyer"],
        tmp_path,
        f"""
        from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
        path = hf_hub_download({REPO!r}, {shard["path"]!r}, repo_type="dataset")
        meta = get_hf_file_metadata(hf_hub_url({REPO!r}, {shard["path"]!r}, repo_type="dataset"))
        sha = HfApi().dataset_info({REPO!r}).sha
        report({{"path": path, "etag": meta.etag, "size": meta.size,
                "commit": meta.commit_hash, "sha": sha}})
        """,
    )
    assert _sha256(Path(result["path"])) == shard["sha256"]
    assert result["etag"] == shard["sha256"]
    assert result["size"] == shard["num_bytes"]
    assert result["commit"] == result["sha"]


def test_load_dataset_yields_every_row_also_streaming(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    result = run_client(
        exchange,
        trade["buyer"],
        tmp_path,
        f"""
        from datasets import load_dataset
        loaded = load_dataset({REPO!r})
        streamed = load_dataset({REPO!r}, streaming=True)
        report({{
            "splits": {{name: split.num_rows for name, split in loaded.items()}},
            "columns": loaded["train"].column_names,
            "streamed": sum(1 for _ in streamed["train"]),
            "first": next(iter(streamed["train"]))["question"],
        }})
        """,
    )
    assert result["splits"] == {"train": trade["version"]["num_rows"]}
    assert {"question", "answer", "_source_row"} <= set(result["columns"])
    assert result["streamed"] == trade["version"]["num_rows"]
    assert result["first"]


# Metadata -------------------------------------------------------------------------------------


def test_hf_api_shows_info_tree_and_paths_of_each_revision(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    result = run_client(
        exchange,
        trade["outsider"],  # listed metadata is visible to every member
        tmp_path,
        f"""
        from huggingface_hub import HfApi
        api = HfApi()
        info = api.dataset_info({REPO!r}, files_metadata=True)
        tree = api.list_repo_tree({REPO!r}, repo_type="dataset")
        recursive = api.list_repo_tree({REPO!r}, repo_type="dataset", recursive=True, expand=True)
        report({{
            "id": info.id, "sha": info.sha, "private": info.private, "gated": info.gated,
            "license": info.card_data.license,
            "siblings": {{s.rfilename: [s.size, s.lfs and s.lfs.sha256] for s in info.siblings}},
            "v1": api.dataset_info({REPO!r}, revision="v1").sha,
            "by_sha": api.dataset_info({REPO!r}, revision=info.sha).sha,
            "files": api.list_repo_files({REPO!r}, repo_type="dataset", revision=info.sha),
            "tree": sorted((e.path, type(e).__name__) for e in tree),
            "recursive": sorted(
                (e.path, type(e).__name__, e.last_commit.oid) for e in recursive
            ),
            "paths": [
                (e.path, type(e).__name__) for e in api.get_paths_info(
                    {REPO!r}, ["README.md", "data", "missing.txt"], repo_type="dataset"
                )
            ],
        }})
        """,
    )
    version = trade["version"]
    shards = {f["path"]: [f["num_bytes"], f["sha256"]] for f in version["files"]}
    assert result["id"] == REPO
    assert len(result["sha"]) == 40 and int(result["sha"], 16) >= 0
    assert result["v1"] == result["by_sha"] == result["sha"]
    assert (result["private"], result["gated"], result["license"]) == (False, "manual", "mit")
    assert {k: v for k, v in result["siblings"].items() if k != "README.md"} == shards
    assert result["siblings"]["README.md"][1] is None  # the card is a plain git file
    assert sorted(result["files"]) == sorted(["README.md", *shards])
    assert result["tree"] == [["README.md", "RepoFile"], ["data", "RepoFolder"]]
    assert [entry[:2] for entry in result["recursive"]] == [
        ["README.md", "RepoFile"], ["data", "RepoFolder"],
        *(["data/" + Path(path).name, "RepoFile"] for path in sorted(shards)),
    ]  # fmt: skip
    assert {entry[2] for entry in result["recursive"]} == {result["sha"]}
    assert result["paths"] == [["README.md", "RepoFile"], ["data", "RepoFolder"]]


def test_tree_pages_follow_link_headers(exchange: Exchange, trade: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {trade['buyer']}"}
    url: str | None = f"{exchange.base_url}/api/datasets/{REPO}/tree/main?recursive=true&limit=1"
    paths = []
    while url is not None:
        response = httpx.get(url, headers=headers, timeout=30)
        assert response.status_code == 200
        page = response.json()
        assert len(page) == 1
        paths += [entry["path"] for entry in page]
        url = response.links.get("next", {}).get("url")
    shards = [file["path"] for file in trade["version"]["files"]]
    assert paths == sorted(["README.md", "data", *shards])


def test_a_card_revision_is_a_new_commit_and_the_old_one_still_serves_its_card(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    read_card = f"""
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download
        sha = HfApi().dataset_info({UNLISTED!r}).sha
        shas = [sha] + [line.strip() for line in open({str(tmp_path / "shas")!r})]
        report({{"sha": sha, "cards": [Path(hf_hub_download(
            {UNLISTED!r}, "README.md", repo_type="dataset", revision=s
        )).read_text() for s in shas]}})
        """
    (tmp_path / "shas").write_text("")
    before = run_client(exchange, trade["contributor"], tmp_path / "before", read_card)
    with exchange.client(trade["contributor"]) as seller:
        seller.update_card(trade["unlisted_version"]["id"], {"lawful_source_statement": LAWFUL})
        current = seller.card(trade["unlisted_version"]["id"])
    (tmp_path / "shas").write_text(before["sha"] + "\n")
    after = run_client(exchange, trade["contributor"], tmp_path / "after", read_card)
    assert after["sha"] != before["sha"]
    assert after["cards"] == [current, before["cards"][0]]
    assert LAWFUL in current and LAWFUL not in before["cards"][0]


# Byte ranges ----------------------------------------------------------------------------------


def test_range_get_returns_206_with_those_bytes(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    shard = trade["version"]["files"][0]
    with exchange.client(trade["buyer"]) as buyer:
        buyer.download(trade["version"]["id"], shard["path"], tmp_path / "shard")
    whole = (tmp_path / "shard").read_bytes()
    url = f"{exchange.base_url}/datasets/{REPO}/resolve/main/{shard['path']}"
    with httpx.Client(
        headers={"Authorization": f"Bearer {trade['buyer']}"}, follow_redirects=True, timeout=30
    ) as client:
        for header, expected in (
            ("bytes=4-103", whole[4:104]),
            (f"bytes={len(whole) - 8}-", whole[-8:]),
            ("bytes=-8", whole[-8:]),
        ):
            response = client.get(url, headers={"Range": header})
            assert response.status_code == 206, header
            assert response.content == expected, header
        assert client.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416


# Refusals -------------------------------------------------------------------------------------


def test_data_files_are_gated_without_a_download_entitlement(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    shard = trade["version"]["files"][0]["path"]
    script = f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        report({{
            "card": bool(hf_hub_download({REPO!r}, "README.md", repo_type="dataset")),
            "shard": refusal(lambda: hf_hub_download({REPO!r}, {shard!r}, repo_type="dataset")),
            "snapshot": refusal(lambda: snapshot_download({REPO!r}, repo_type="dataset")),
        }})
        """
    gated = {"error": "GatedRepoError", "status": 403}
    for who in ("outsider", "trainee"):  # no license; a training-only license
        result = run_client(exchange, trade[who], tmp_path / who, script)
        assert result == {"card": True, "shard": gated, "snapshot": gated}, who


def test_unknown_and_unlisted_repositories_are_not_found(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    script = f"""
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        report({{
            "unknown": refusal(lambda: api.dataset_info("contributor-co/no-such-data")),
            "no_namespace": refusal(lambda: api.dataset_info("gsm8k-part")),
            "unlisted": refusal(lambda: api.dataset_info({UNLISTED!r})),
            "unlisted_file": refusal(
                lambda: hf_hub_download({UNLISTED!r}, "README.md", repo_type="dataset")
            ),
        }})
        """
    missing = {"error": "RepositoryNotFoundError", "status": 404}
    result = run_client(exchange, trade["buyer"], tmp_path / "buyer", script)
    assert result == dict.fromkeys(
        ("unknown", "no_namespace", "unlisted", "unlisted_file"), missing
    )
    owner = run_client(
        exchange,
        trade["contributor"],
        tmp_path / "owner",
        f"""
        from huggingface_hub import HfApi
        report(HfApi().dataset_info({UNLISTED!r}).private)
        """,
    )
    assert owner is True


def test_missing_files_and_revisions_get_their_errors(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    result = run_client(
        exchange,
        trade["buyer"],
        tmp_path,
        f"""
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        kind = {{"repo_type": "dataset"}}
        report({{
            "entry": refusal(lambda: hf_hub_download({REPO!r}, "nope.parquet", **kind)),
            "tree": refusal(lambda: list(api.list_repo_tree({REPO!r}, "nope", **kind))),
            "version": refusal(lambda: api.dataset_info({REPO!r}, revision="v99")),
            "commit": refusal(lambda: hf_hub_download(
                {REPO!r}, "README.md", repo_type="dataset", revision="0" * 40
            )),
            "branch": refusal(lambda: api.dataset_info({REPO!r}, revision="dev")),
        }})
        """,
    )
    entry = {"error": "RemoteEntryNotFoundError", "status": 404}
    revision = {"error": "RevisionNotFoundError", "status": 404}
    assert result == {
        "entry": entry, "tree": entry, "version": revision, "commit": revision, "branch": revision
    }  # fmt: skip


def test_errors_carry_the_hub_error_code_header(exchange: Exchange, trade: dict[str, Any]) -> None:
    shard = trade["version"]["files"][0]["path"]
    for key, path, status, code in (
        (trade["outsider"], f"/datasets/{REPO}/resolve/main/{shard}", 403, "GatedRepo"),
        (trade["buyer"], f"/datasets/{REPO}/resolve/main/missing", 404, "EntryNotFound"),
        (trade["buyer"], f"/datasets/{REPO}/resolve/v9/README.md", 404, "RevisionNotFound"),
        (trade["buyer"], f"/api/datasets/{UNLISTED}", 404, "RepoNotFound"),
    ):
        response = httpx.get(
            exchange.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert (response.status_code, response.headers.get("x-error-code")) == (status, code)
        assert response.json()["error"] == response.headers["x-error-message"]
    response = httpx.get(f"{exchange.base_url}/api/datasets/{REPO}", timeout=30)
    assert response.status_code == 401  # every caller needs an API key


# The audit trail ------------------------------------------------------------------------------


def test_every_delivery_is_in_the_audit_trail(
    exchange: Exchange, trade: dict[str, Any], tmp_path: Path
) -> None:
    version = trade["version"]
    shard = version["files"][0]
    run_client(
        exchange,
        trade["buyer"],
        tmp_path,
        f"""
        from huggingface_hub import hf_hub_download
        report(hf_hub_download(
            {REPO!r}, {shard["path"]!r}, repo_type="dataset", force_download=True
        ))
        """,
    )
    engine = create_engine(exchange.settings.resolved_database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT actor_organization_id, object_id, details FROM audit_events"
                " WHERE action = 'delivery.hf_file'"
            )
        ).all()
    engine.dispose()
    details = [row[2] if isinstance(row[2], dict) else json.loads(row[2]) for row in rows]
    shards = [d for d in details if d["path"] == shard["path"] and d["repo_id"] == REPO]
    assert shards and all(d["sha256"] == shard["sha256"] for d in shards)
    assert {row[1] for row in rows} >= {version["id"]}
    via = "stream" if exchange.backend == "embedded" else "presigned_url"
    assert via in {d["via"] for d in shards}
    assert all(d["entitlement_id"] for d in shards)  # buyers' deliveries name their entitlement

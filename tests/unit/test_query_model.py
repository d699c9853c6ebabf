"""Query parameters read as one model: validation, the 422 it answers, the OpenAPI it documents."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from marketplace.api.query import query_model, query_parameters
from marketplace.app import create_app


class Search(BaseModel):
    q: str | None = Field(None, max_length=5, description="Words.")
    sort: Literal["new", "old"] = "new"
    limit: int = Field(10, ge=1, le=50)


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.get("/search", openapi_extra=query_parameters(Search))
    async def search(params: Annotated[Search, Depends(query_model(Search))]) -> Search:
        return params

    return TestClient(app)


def test_values_are_validated_and_coerced_and_unknown_names_ignored(client: TestClient) -> None:
    answer = client.get("/search", params={"q": "cat", "limit": "7", "colour": "red"})
    assert answer.status_code == 200
    assert answer.json() == {"q": "cat", "sort": "new", "limit": 7}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"sort": "sideways"}, "sort"), ({"q": "toolong"}, "q")],
)
def test_a_bad_value_is_a_422_naming_the_query_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    answer = client.get("/search", params=params)
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", field]


def test_the_fields_are_documented_as_query_parameters(client: TestClient) -> None:
    parameters = client.get("/openapi.json").json()["paths"]["/search"]["get"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    assert set(by_name) == {"q", "sort", "limit"}
    assert all(parameter["in"] == "query" for parameter in parameters)
    assert by_name["q"]["description"] == "Words."
    assert by_name["sort"]["schema"]["enum"] == ["new", "old"]
    assert (by_name["limit"]["schema"]["minimum"], by_name["limit"]["schema"]["maximum"]) == (1, 50)


def test_the_catalog_documents_its_filters() -> None:
    operation = create_app().openapi()["paths"]["/v1/catalog"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"q", "license", "allowed_use", "min_price", "sort", "limit", "offset"} <= names

"""Property-based API testing with schemathesis against a live server's own /openapi.json.

Every operation gets generated requests (a bounded number each) with an admin token; every
response must not be a 5xx, must use a status code the schema documents, and must match the
documented response schema. The server runs with a rate limit high enough not to interfere.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import BaseOpenAPISchema

from tests.support.server import Server

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
# Bounded so the module finishes in a few minutes; raise it locally to dig deeper.
MAX_EXAMPLES = int(os.environ.get("TIDEFLOW_SCHEMATHESIS_EXAMPLES", "25"))

# FastAPI publishes OpenAPI 3.1; schemathesis 3 supports it behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()


@pytest.fixture(scope="module")
def fuzzed_server(
    metadata_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = Server(
        Path(tmp_path_factory.mktemp("fuzz")),
        database_url=metadata_url,
        worker=False,
        extra_env={
            "TIDEFLOW_RATE_LIMIT_PER_SECOND": "1000000",
            "TIDEFLOW_RATE_LIMIT_BURST": "1000000",
        },
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def token(fuzzed_server: Server) -> str:
    return fuzzed_server.token()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Server) -> BaseOpenAPISchema:
    return schemathesis.from_uri(f"{fuzzed_server.url}/openapi.json", base_url=fuzzed_server.url)


# POST /transforms/{id}/test runs user code in the sandboxes; hypothesis cannot generate
# enough distinct bodies for it without tripping its own filter health check, and its contract
# (outputs, line numbers, 404/422) is covered in test_api_transforms.py.
schema = schemathesis.from_pytest_fixture("api_schema").exclude(
    method="POST", path="/transforms/{transform_id}/test"
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: Any, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_operation_ids_are_unique(fuzzed_server: Server) -> None:
    """SDK generators need one operationId per operation (both /api and /v1/api included)."""
    spec = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    ids = collections.Counter(
        op["operationId"] for ops in spec["paths"].values() for op in ops.values()
    )
    assert [i for i, n in ids.items() if n > 1] == []

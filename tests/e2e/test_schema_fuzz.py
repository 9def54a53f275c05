"""schemathesis against the OpenAPI that `simgate serve` publishes: for requests made up
from the schema of every /3rdparty/v1 and /mobile/v1 operation, valid and not, the
server never answers 5xx, and what it answers matches the schema it published.

SIMGATE_FUZZ_EXAMPLES sets the examples per operation (default 6; a deeper run: 100).
"""

from __future__ import annotations

import base64
import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from simgate.testing import SimgateProcess

USER, PASSWORD = "fuzz-user", "fuzz-secret"
EXAMPLES = int(os.environ.get("SIMGATE_FUZZ_EXAMPLES", "6"))
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("fuzz"),
                             env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
                                  "SIMGATE_LOG_LEVEL": "warning"}).start()
    device = httpx.post(f"{process.url}/mobile/v1/device", auth=(USER, PASSWORD), timeout=30,
                        json={"name": "phone", "simCards": [{"slotIndex": 0},
                                                            {"slotIndex": 1}]})
    assert device.status_code == 201, device.text
    process.device_token = device.json()["token"]
    yield process
    process.stop()


@pytest.fixture(scope="module")
def published(served):
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


# the event stream stays open: its documented content type is checked on its own
schema = schemathesis.pytest.from_fixture("published").include(
    path_regex=r"^/(3rdparty/v1/|mobile/v1/(?!events$))")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_match_the_schema(case, served):
    # each family with its own credentials, so requests get past authentication
    device = case.path.startswith("/mobile/v1") and case.path != "/mobile/v1/device"
    authorization = f"Bearer {served.device_token}" if device else BASIC
    case.call_and_validate(
        headers={"Authorization": authorization}, timeout=30,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance])


def test_the_event_stream_is_documented_as_one(served):
    document = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    answer = document["paths"]["/mobile/v1/events"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/event-stream"]
    with httpx.stream("GET", f"{served.url}/mobile/v1/events", timeout=30, headers={
            "Authorization": f"Bearer {served.device_token}"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")

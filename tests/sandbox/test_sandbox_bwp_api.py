"""The order API stand-in, spoken to over real HTTP as the worker would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.bwp_api import SandboxApi, build_app
from sandbox.http import serve_asgi
from tasks.order_api.queries import order_request

BP = "bp-1"
ORDER = "322-ABC1-AAAAAA"


@pytest.fixture
def api() -> SandboxApi:
    api = SandboxApi()
    api.store.add_order(ORDER, BP, [("li-1", 2, "d-1"), ("li-2", None, "d-1"), ("li-3", 1, "d-2")])
    return api


@pytest.fixture
def client(api: SandboxApi) -> Iterator[httpx.Client]:
    with serve_asgi(build_app(api)) as server, httpx.Client(base_url=server.url) as client:
        yield client


def _token(client: httpx.Client, secret: str = "sandbox-secret") -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": secret,
    }
    return client.post("/token", data=form)


def _headers(client: httpx.Client, version: str = "2024-11-01", target: str = BP) -> dict[str, str]:
    token = _token(client).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "x-api-version": version, "x-api-target-id": target}


def _query(
    client: httpx.Client, version: str = "2024-11-01", order_id: str = ORDER, **kw: Any
) -> httpx.Response:
    headers = kw.pop("headers", None) or _headers(client, version)
    return client.post("/graphql", json=order_request(version, order_id), headers=headers)


def _classification(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["classification"]["type"])


def test_token_endpoint_issues_bearer_tokens_and_refuses_wrong_secrets(
    client: httpx.Client,
) -> None:
    good = _token(client)
    assert good.status_code == 200
    assert good.json()["token_type"] == "Bearer"
    assert good.json()["expires_in"] == 900
    bad = _token(client, secret="wrong")
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client"}


@pytest.mark.parametrize("version", ["2024-01-01", "2024-04-01"])
def test_order_query_2024_01_generation(
    client: httpx.Client, api: SandboxApi, version: str
) -> None:
    # Given one delivery in transit with tracking, one still pending
    api.move(ORDER, "d-2", "IN_TRANSIT", tracking_number="1Z", carrier_code="UPS")
    # When the worker's query for this version runs
    response = _query(client, version)
    # Then the data has the documented 2024-01 shape
    assert response.status_code == 200
    order = response.json()["data"]["order"]
    assert order["id"] == ORDER
    items = {item["id"]: item for item in order["lineItems"]}
    assert items["li-1"]["amount"] == {"unit": "ONE", "value": 2}
    assert items["li-2"]["amount"] is None
    assert items["li-1"]["deliveryInformation"]["details"] == [{"id": "d-1"}]
    details = {d["id"]: d for d in order["deliveryInformation"]["details"]}
    pending = details["d-1"]
    assert pending == {
        "id": "d-1",
        "state": "PENDING",
        "reason": None,
        "deliveryInformationDetailsFor": {
            "orderLineItems": [
                {"lineItem": {"id": "li-1"}, "amount": {"unit": "ONE", "value": 2}},
                {"lineItem": {"id": "li-2"}, "amount": None},
            ]
        },
        "estimatedDeliveryDate": None,
        "trackingDetails": None,
    }
    moving = details["d-2"]
    assert moving["state"] == "IN_TRANSIT"
    assert moving["trackingDetails"] == {"trackingId": "1Z", "carrierCode": "UPS"}


def test_order_query_2024_11_generation(client: httpx.Client, api: SandboxApi) -> None:
    api.move(
        ORDER,
        "d-2",
        "DELIVERED",
        tracking_number="1Z",
        carrier_code="UPS",
        tracking_url="https://track.example/1Z",
        milestone="DELIVERED",
        estimated_earliest="2024-12-01",
        estimated_latest="2024-12-03",
    )
    response = _query(client, "2024-11-01")
    assert response.status_code == 200
    order = response.json()["data"]["order"]
    details = {d["id"]: d for d in order["packageInformation"]["details"]}
    pending = details["d-1"]
    assert pending["packageTracker"] is None
    assert pending["packageInformationDetailsFor"]["orderLineItems"][0] == {
        "lineItem": {"id": "li-1"},
        "amount": {"unit": "ONE", "value": 2},
    }
    tracker = details["d-2"]["packageTracker"]
    assert tracker["packageTrackerIdentifier"] == {"trackingNumber": "1Z", "carrierCode": "UPS"}
    assert tracker["estimatedDeliveryDate"] == {"earliest": "2024-12-01", "latest": "2024-12-03"}
    assert tracker["latestMilestone"]["status"] == {"code": "DELIVERED"}
    assert tracker["latestMilestone"]["occurredAt"].endswith("Z")
    assert tracker["trackingUrl"] == "https://track.example/1Z"


@pytest.mark.parametrize("version", ["2024-01-01", "2024-04-01", "2024-11-01"])
def test_a_split_line_item_shows_its_units_per_delivery(
    client: httpx.Client, api: SandboxApi, version: str
) -> None:
    # Given li-1 (2 ordered in d-1) split: 1 unit moved to a new delivery d-3, cancelled
    admin = client.post(
        "/_sandbox/move",
        json={
            "orderId": ORDER,
            "deliveryId": "d-1",
            "split": {"lineItemId": "li-1", "units": 1, "toDeliveryId": "d-3"},
        },
    )
    assert admin.status_code == 200
    api.move(ORDER, "d-3", "CANCELLED", reason="UNFULFILLABLE")
    # When the worker's query runs
    order = _query(client, version).json()["data"]["order"]
    info = "packageInformation" if version == "2024-11-01" else "deliveryInformation"
    # Then the line item still says what was ordered, and each delivery its own units
    items = {item["id"]: item for item in order["lineItems"]}
    assert items["li-1"]["amount"]["value"] == 2
    assert [d["id"] for d in items["li-1"][info]["details"]] == ["d-1", "d-3"]
    held = {
        d["id"]: {
            e["lineItem"]["id"]: (e["amount"] or {}).get("value")
            for e in d[f"{info}DetailsFor"]["orderLineItems"]
        }
        for d in order[info]["details"]
    }
    assert held == {"d-1": {"li-1": 1, "li-2": None}, "d-2": {"li-3": 1}, "d-3": {"li-1": 1}}


def test_splitting_more_units_than_held_is_refused(client: httpx.Client) -> None:
    body = {"split": {"lineItemId": "li-3", "units": 5, "toDeliveryId": "d-9"}}
    reply = client.post("/_sandbox/move", json={"orderId": ORDER, "deliveryId": "d-2", **body})
    assert reply.status_code == 400


def test_a_new_milestone_on_a_tracked_delivery_publishes_a_milestone_event(
    api: SandboxApi,
) -> None:
    published: list[tuple[str, str, str]] = []
    api.milestone_publisher = lambda *args: published.append(args)
    api.move(ORDER, "d-2", None, milestone="IN_TRANSIT")  # not tracked yet: nothing
    api.move(ORDER, "d-2", "IN_TRANSIT", tracking_number="1Z", carrier_code="UPS")
    api.move(ORDER, "d-2", None, milestone="OUT_FOR_DELIVERY")
    api.move(ORDER, "d-2", None, milestone="OUT_FOR_DELIVERY")  # unchanged: nothing
    assert published == [(BP, "UPS", "1Z")]


@pytest.mark.parametrize(
    ("version", "query"),
    [
        ("2024-11-01", 'query { order(orderIdentifier: {orderId: "x"}) { id buyerEmail } }'),
        # 2024-11 field asked of the 2024-01 generation
        (
            "2024-04-01",
            'query { order(orderIdentifier: {orderId: "x"}) { packageInformation { id } } }',
        ),
    ],
)
def test_undocumented_field_fails_validation(
    client: httpx.Client, version: str, query: str
) -> None:
    response = client.post("/graphql", json={"query": query}, headers=_headers(client, version))
    assert response.status_code == 400
    assert _classification(response) == "ValidationError"


def test_unauthenticated_and_unknown_version_requests_are_refused(
    client: httpx.Client, api: SandboxApi
) -> None:
    bad_token = {
        "Authorization": "Bearer nope",
        "x-api-version": "2024-11-01",
        "x-api-target-id": BP,
    }
    response = _query(client, headers=bad_token)
    assert response.status_code == 401
    assert _classification(response) == "UnauthorizedError"

    # A once-valid token stops working when the sandbox invalidates tokens
    headers = _headers(client)
    api.invalidate_tokens()
    assert _query(client, headers=headers).status_code == 401

    old_version = {**_headers(client), "x-api-version": "2023-01-01"}
    response = _query(client, headers=old_version)
    assert response.status_code == 400
    assert _classification(response) == "ValidationError"


def test_expired_token_is_refused(api: SandboxApi) -> None:
    api.token_ttl = 0.0
    with serve_asgi(build_app(api)) as server, httpx.Client(base_url=server.url) as client:
        assert _query(client).status_code == 401


def test_target_id_mismatch_is_access_denied(client: httpx.Client) -> None:
    response = _query(client, headers=_headers(client, target="bp-other"))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"order": None}
    assert body["errors"][0]["path"] == ["order"]
    assert _classification(response) == "AccessDeniedError"


def test_unknown_order_is_resource_not_found(client: httpx.Client) -> None:
    response = _query(client, order_id="322-NOPE")
    assert response.status_code == 200
    assert response.json()["data"] == {"order": None}
    assert _classification(response) == "ResourceNotFoundError"


def test_faults_are_consumed_one_per_order_query_in_order(
    client: httpx.Client, api: SandboxApi
) -> None:
    # Given a queue of faults
    api.inject("throttle")
    api.inject("http429", retry_after=3)
    api.inject("http503")
    api.inject("internal")
    api.inject("validation")
    api.inject("access_denied")
    api.inject("not_found")
    headers = _headers(client)
    # When the order is queried repeatedly, each query meets the next fault
    seen = []
    for _ in range(8):
        response = _query(client, headers=headers)
        kind = _classification(response) if "errors" in response.json() else None
        seen.append((response.status_code, kind))
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "3"
    # Then the faults came in order and the last query succeeded
    assert seen == [
        (200, "ThrottlingError"),
        (429, "ThrottlingError"),
        (503, None),
        (200, "InternalServerError"),
        (400, "ValidationError"),
        (200, "AccessDeniedError"),
        (200, "ResourceNotFoundError"),
        (200, None),
    ]
    throttled = client.post("/graphql", json=order_request("2024-11-01", ORDER), headers=headers)
    assert throttled.json()["data"]["order"]["id"] == ORDER
    stats = api.stats()
    assert stats["order_queries"] == 9
    assert stats["order_queries_by_order"] == {ORDER: 9}
    assert stats["token_requests"] == 1


def test_admin_surface_injects_faults_and_reports_stats(client: httpx.Client) -> None:
    assert client.post("/_sandbox/faults", json={"kind": "throttle", "count": 2}).status_code == 200
    headers = _headers(client)
    assert _classification(_query(client, headers=headers)) == "ThrottlingError"
    assert _classification(_query(client, headers=headers)) == "ThrottlingError"
    assert _query(client, headers=headers).json()["data"]["order"]["id"] == ORDER
    stats = client.get("/_sandbox/stats").json()
    assert stats["order_queries"] == 3
    assert stats["graphql_requests"] == 3
    assert client.post("/_sandbox/invalidate-tokens").status_code == 204
    assert _query(client, headers=headers).status_code == 401


# --- the documented sandbox mutations -------------------------------------------------

MUTATION_2024_11 = """
mutation updateOrderPackageInformation(
  $orderIdentifier: OrderIdentifierInput!, $input: UpdateOrderPackageInformationInput!
) {
  updateOrderPackageInformation(orderIdentifier: $orderIdentifier, input: $input) {
    order { id packageInformation { details { id state reason } } }
  }
}
"""
MUTATION_2024_01 = """
mutation updateOrderDeliveryInformation($input: UpdateOrderDeliveryInformationInput!) {
  updateOrderDeliveryInformation(input: $input) {
    order { id deliveryInformation { details { id state reason } } }
  }
}
"""


def package_update(client: httpx.Client, *details: dict[str, Any]) -> httpx.Response:
    variables = {
        "orderIdentifier": {"orderId": ORDER},
        "input": {"packageInformation": {"details": list(details)}},
    }
    return client.post(
        "/graphql",
        json={"query": MUTATION_2024_11, "variables": variables},
        headers=_headers(client, "2024-11-01"),
    )


def state(value: str, reason: str | None = None) -> dict[str, Any]:
    return {"packageInformationState": {"state": value, "reason": reason}}


def tracker(number: str, carrier: str = "UPS", status: str | None = None) -> dict[str, Any]:
    ident = {"trackingNumber": number, "carrierCode": carrier}
    return {"packageTrackerState": {"packageTrackerIdentifier": ident, "status": status}}


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json()["errors"][0]["extensions"]["classification"])


def test_the_package_state_mutation_moves_a_package_and_publishes(
    client: httpx.Client, api: SandboxApi
) -> None:
    published: list[tuple[str, str, str, str]] = []
    api.publisher = lambda *args: published.append(args)
    # When d-1 is moved PENDING -> IN_TRANSIT, addressed by its package detail id
    response = package_update(client, {"id": "d-1", "packageState": state("IN_TRANSIT")})
    # Then the answer is the order, the package moved and its event was published
    assert response.status_code == 200, response.text
    details = response.json()["data"]["updateOrderPackageInformation"]["order"][
        "packageInformation"
    ]["details"]
    assert {"id": "d-1", "state": "IN_TRANSIT", "reason": None} in details
    assert published == [(BP, ORDER, "d-1", "IN_TRANSIT")]
    assert api.stats()["mutations"] == 1


def test_the_tracker_state_mutation_sets_the_tracker_and_moves_the_package(
    client: httpx.Client, api: SandboxApi
) -> None:
    milestones: list[tuple[str, str, str]] = []
    api.milestone_publisher = lambda *args: milestones.append(args)
    # When a PENDING package gets a tracker in transit, then the tracker is delivered
    first = package_update(
        client, {"id": "d-2", "packageState": tracker("1Z", status="IN_TRANSIT")}
    )
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    moved = api.store.delivery(ORDER, "d-2")
    assert (moved.state, moved.tracking_number, moved.carrier_code) == ("IN_TRANSIT", "1Z", "UPS")
    second = package_update(
        client, {"id": "d-2", "packageState": tracker("1Z", status="DELIVERED")}
    )
    assert "errors" not in second.json(), second.text
    # Then the package followed its tracker, and each milestone was published
    assert api.store.delivery(ORDER, "d-2").state == "DELIVERED"
    assert milestones == [(BP, "UPS", "1Z"), (BP, "UPS", "1Z")]


def test_package_and_tracker_state_cannot_both_be_given(
    client: httpx.Client, api: SandboxApi
) -> None:
    both = {**state("IN_TRANSIT"), **tracker("1Z")}
    response = package_update(client, {"id": "d-1", "packageState": both})
    assert _error(response)["type"] == "ValidationError"
    assert "can't provide both" in response.json()["errors"][0]["message"]
    assert api.store.delivery(ORDER, "d-1").state == "PENDING"


@pytest.mark.parametrize(
    ("before", "change", "expected"),
    [
        pytest.param(
            None, state("DELIVERED"), ("ConflictError", "ConflictException", "N/A"), id="skip"
        ),
        pytest.param(
            "DELIVERED",
            state("IN_TRANSIT"),
            ("ConflictError", "ConflictException", "N/A"),
            id="backwards",
        ),
        pytest.param(
            None,
            state("CANCELLED", "UNDELIVERABLE"),
            ("ValidationError", "ValidationException", "N/A"),
            id="wrong-reason",
        ),
        pytest.param(
            "CANCELLED",
            tracker("1Z"),
            ("ConflictError", "ConflictException", "PackageTrackerNotAvailableForUpdate"),
            id="tracker-on-a-terminal-package",
        ),
    ],
)
def test_moves_the_docs_do_not_allow_are_refused_with_documented_codes(
    client: httpx.Client,
    api: SandboxApi,
    before: str | None,
    change: dict[str, Any],
    expected: tuple[str, str, str],
) -> None:
    if before is not None:
        api.store.update_delivery(ORDER, "d-1", state=before, reason="CUSTOMER_REQUESTED")
    response = package_update(client, {"id": "d-1", "packageState": change})
    classification = _error(response)
    assert (
        classification["type"],
        classification["errorType"],
        classification["errorCode"],
    ) == expected
    assert response.json()["data"] == {"updateOrderPackageInformation": None}


def test_a_second_tracking_number_for_a_package_is_not_available(
    client: httpx.Client, api: SandboxApi
) -> None:
    api.move(ORDER, "d-1", "IN_TRANSIT", tracking_number="1Z-A", carrier_code="UPS")
    response = package_update(client, {"id": "d-1", "packageState": tracker("1Z-B")})
    assert _error(response)["errorCode"] == "PackageTrackerNotAvailableForUpdate"


def test_an_unknown_package_id_is_resource_not_found_by_name(client: httpx.Client) -> None:
    response = package_update(client, {"id": "d-404", "packageState": state("IN_TRANSIT")})
    classification = _error(response)
    assert classification["type"] == "ResourceNotFoundError"
    assert classification["errorCode"] == "ResourceNotFoundException"


def test_the_2024_01_mutation_takes_delivery_information_state(
    client: httpx.Client, api: SandboxApi
) -> None:
    published: list[tuple[str, str, str, str]] = []
    api.publisher = lambda *args: published.append(args)
    variables = {
        "input": {
            "orderId": ORDER,
            "details": [
                {
                    "id": "d-1",
                    "deliveryInformationState": {"state": "CANCELLED", "reason": "UNFULFILLABLE"},
                }
            ],
        }
    }
    response = client.post(
        "/graphql",
        json={"query": MUTATION_2024_01, "variables": variables},
        headers=_headers(client, "2024-04-01"),
    )
    assert response.status_code == 200, response.text
    assert api.store.delivery(ORDER, "d-1").reason == "UNFULFILLABLE"
    assert published == [(BP, ORDER, "d-1", "CANCELLED")]


def test_every_error_code_the_sandbox_writes_is_a_name(
    client: httpx.Client, api: SandboxApi
) -> None:
    for kind in ("throttle", "internal", "not_found", "access_denied", "conflict"):
        api.inject(kind)
        code = _error(_query(client))["errorCode"]
        assert isinstance(code, str)
        assert code == "N/A" or code.endswith("Exception")


# --- credentials without the package-tracker permission -----------------------------------


def test_without_the_tracker_permission_a_query_selecting_package_tracker_is_denied(
    client: httpx.Client, api: SandboxApi
) -> None:
    # Given credentials that hold Read Order only
    assert client.post("/_sandbox/permissions", json={"packageTracker": False}).status_code == 204
    headers = _headers(client)
    # When the worker's 2024-11-01 query runs, with and without the tracker fields
    denied = _query(client, headers=headers)
    allowed = client.post(
        "/graphql", json=order_request("2024-11-01", ORDER, tracker=False), headers=headers
    )
    # Then only the query selecting packageTracker is denied
    assert _classification(denied) == "AccessDeniedError"
    assert denied.json()["data"] == {"order": None}
    assert allowed.json()["data"]["order"]["id"] == ORDER
    # And the 2024-01 generation, which has no packageTracker, is not affected
    assert _query(client, "2024-04-01").json()["data"]["order"]["id"] == ORDER
    assert api.stats()["tracker_denied"] == 1

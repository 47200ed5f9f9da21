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


@pytest.mark.parametrize(
    ("version", "mutation", "state_field"),
    [
        ("2024-01-01", "updateOrderDeliveryInformation", "trackingDetails { trackingId }"),
        ("2024-11-01", "updateOrderPackageInformation", "packageTracker { trackingUrl }"),
    ],
)
def test_mutation_moves_the_delivery_and_publishes(
    client: httpx.Client, api: SandboxApi, version: str, mutation: str, state_field: str
) -> None:
    published: list[tuple[str, str, str, str]] = []
    api.publisher = lambda *args: published.append(args)
    query = (
        f"mutation Move($input: {mutation[0].upper()}{mutation[1:]}Input!) "
        f"{{ {mutation}(input: $input) {{ id state reason {state_field} }} }}"
    )
    variables = {
        "input": {
            "orderId": ORDER,
            "deliveryId": "d-1",
            "state": "CANCELLED",
            "reason": "UNFULFILLABLE",
        }
    }
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=_headers(client, version)
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"][mutation]["state"] == "CANCELLED"
    assert api.store.delivery(ORDER, "d-1").reason == "UNFULFILLABLE"
    assert published == [(BP, ORDER, "d-1", "CANCELLED")]
    assert api.stats()["mutations"] == 1

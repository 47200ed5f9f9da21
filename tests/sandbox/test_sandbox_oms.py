"""The OMS stand-in: auth, signatures, schema, idempotency and outages over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.http import serve_asgi
from sandbox.oms import SandboxOms, build_app, sign

SECRET = "s3cret"
TOKEN = "oms-token"


def _update(key: str = "k" * 32, state: str = "IN_TRANSIT") -> dict[str, Any]:
    return {
        "type": "delivery.updated",
        "schemaVersion": 1,
        "idempotencyKey": key,
        "businessProductId": "bp-1",
        "orderId": "o-1",
        "deliveryId": "d-1",
        "state": state,
        "reason": None,
        "lineItems": [{"lineItemId": "li-1", "quantity": 2}],
        "tracking": {"carrierCode": "UPS", "trackingNumber": "1Z"},
        "sourceEvent": {"id": "e-1", "detailType": "PACKAGE_DELIVERY_IN_TRANSIT", "time": "t"},
        "observedAt": "2024-12-01T10:00:00Z",
    }


@pytest.fixture
def oms() -> SandboxOms:
    return SandboxOms(signing_secret=SECRET, auth_token=TOKEN)


@pytest.fixture
def client(oms: SandboxOms) -> Iterator[httpx.Client]:
    with serve_asgi(build_app(oms)) as server, httpx.Client(base_url=server.url) as client:
        yield client


def _push(
    client: httpx.Client,
    body: dict[str, Any],
    *,
    secret: str | None = SECRET,
    key: str | None = None,
    token: str = TOKEN,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key if key is not None else body["idempotencyKey"],
        "Authorization": f"Bearer {token}",
    }
    if secret is not None:
        headers["X-Signature"] = sign(secret, int(time.time()), raw)
    return client.post("/deliveries", content=raw, headers=headers)


def test_a_signed_valid_update_is_applied_and_recorded(
    client: httpx.Client, oms: SandboxOms
) -> None:
    response = _push(client, _update())
    assert response.status_code == 200
    [push] = oms.received
    assert push.body == _update()
    assert push.headers["idempotency-key"] == "k" * 32
    assert push.headers["x-signature"].startswith("t=")
    assert oms.latest() == {("o-1", "d-1"): _update()}
    assert client.get("/_oms/latest").json() == {"o-1/d-1": _update()}
    assert len(client.get("/_oms/received").json()) == 1


@pytest.mark.parametrize(
    ("secret", "token", "reason"),
    [
        ("wrong", TOKEN, "X-Signature mismatch"),
        (None, TOKEN, "missing X-Signature"),
        (SECRET, "wrong", "bad or missing Authorization"),
    ],
)
def test_bad_signature_or_token_is_401(
    client: httpx.Client, oms: SandboxOms, secret: str | None, token: str, reason: str
) -> None:
    response = _push(client, _update(), secret=secret, token=token)
    assert response.status_code == 401
    assert response.json()["detail"] == reason
    assert oms.received == []
    assert [a.status for a in oms.attempts] == [401]


def test_a_tampered_body_fails_the_signature(client: httpx.Client) -> None:
    raw = json.dumps(_update()).encode()
    signature = sign(SECRET, int(time.time()), raw)
    headers = {
        "Idempotency-Key": "k" * 32,
        "X-Signature": signature,
        "Authorization": f"Bearer {TOKEN}",
    }
    tampered = raw.replace(b"IN_TRANSIT", b"DELIVERED")
    assert client.post("/deliveries", content=tampered, headers=headers).status_code == 401


def test_unsigned_receiver_accepts_unsigned_pushes() -> None:
    oms = SandboxOms()
    with serve_asgi(build_app(oms)) as server, httpx.Client(base_url=server.url) as client:
        assert _push(client, _update(), secret=None).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"state": "LOST"},
        {"lineItems": []},
        {"observedAt": "yesterday"},
        {"unexpected": 1},
        {"idempotencyKey": "short"},
    ],
)
def test_schema_violations_are_422(
    client: httpx.Client, oms: SandboxOms, change: dict[str, Any]
) -> None:
    response = _push(client, {**_update(), **change})
    assert response.status_code == 422
    assert "schema violation" in response.json()["detail"]
    assert oms.received == []


def test_idempotency_header_must_match_the_body(client: httpx.Client) -> None:
    response = _push(client, _update(), key="x" * 32)
    assert response.status_code == 422


def test_a_repeated_key_is_409_and_counted(client: httpx.Client, oms: SandboxOms) -> None:
    assert _push(client, _update()).status_code == 200
    assert _push(client, _update()).status_code == 409
    assert _push(client, _update("n" * 32, "DELIVERED")).status_code == 200
    assert oms.keys_seen["k" * 32] == 2
    assert oms.duplicates() == 1
    assert len(oms.received) == 2
    assert oms.latest()[("o-1", "d-1")]["state"] == "DELIVERED"


def test_down_and_injected_failures(client: httpx.Client, oms: SandboxOms) -> None:
    # Given an OMS that is down
    assert client.post("/_oms/down", json={"down": True}).status_code == 204
    assert _push(client, _update()).status_code == 503
    oms.set_down(False)
    # And then fails twice, the second time asking for a pause
    oms.fail_next(1, status=500)
    assert (
        client.post("/_oms/faults", json={"count": 1, "status": 429, "retry_after": 2}).status_code
        == 204
    )
    assert _push(client, _update()).status_code == 500
    throttled = _push(client, _update())
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    # Then the same key is applied once it recovers, and every attempt was recorded
    assert _push(client, _update()).status_code == 200
    assert [a.status for a in oms.attempts] == [503, 500, 429, 200]
    assert [a["status"] for a in client.get("/_oms/attempts").json()] == [503, 500, 429, 200]
    assert len(oms.received) == 1
    oms.reset()
    assert oms.received == [] and oms.attempts == []


def _rotation_header(raw: bytes, *secrets: str) -> str:
    """``t=…,v1=…,v1=…``: one v1 per secret, as a worker sends during a rotation."""
    now = int(time.time())
    values = [sign(secret, now, raw).rpartition(",")[2] for secret in secrets]
    return ",".join([f"t={now}", *values])


@pytest.mark.parametrize(
    ("secrets", "status"),
    [
        (("rotated-in", SECRET), 200),  # the OMS still knows the previous secret
        ((SECRET, "rotated-out"), 200),  # the OMS already knows the new one
        (("rotated-in", "rotated-out"), 401),  # it knows neither
    ],
)
def test_a_rotation_header_verifies_when_any_v1_does(
    client: httpx.Client, oms: SandboxOms, secrets: tuple[str, str], status: int
) -> None:
    raw = json.dumps(_update()).encode()
    headers = {
        "Idempotency-Key": "k" * 32,
        "X-Signature": _rotation_header(raw, *secrets),
        "Authorization": f"Bearer {TOKEN}",
    }
    response = client.post("/deliveries", content=raw, headers=headers)
    assert response.status_code == status, response.text
    assert len(oms.received) == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    "header", ["v1=abc", "t=1,t=2,v1=abc", "t=now,v1=abc", f"t={int(time.time())}"]
)
def test_a_malformed_signature_header_is_401(client: httpx.Client, header: str) -> None:
    raw = json.dumps(_update()).encode()
    headers = {
        "Idempotency-Key": "k" * 32,
        "X-Signature": header,
        "Authorization": f"Bearer {TOKEN}",
    }
    response = client.post("/deliveries", content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "malformed X-Signature"

"""tasks.oms.payload: the DeliveryUpdate body pushed to the OMS, and its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tasks.delivery.snapshot import extract_snapshots
from tasks.model.snapshot import Snapshot
from tasks.oms.payload import delivery_update, encode, rfc3339, signature

from .orders import ALL_VERSIONS, NEW_VERSION, detail, detail_2024_11, line_item, order

#: the contract's body schema, as the project keeps it (docs/contract.md)
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "sandbox" / "oms-delivery-update.schema.json"
OBSERVED = datetime(2024, 6, 1, 12, 30, 5, 123456, tzinfo=UTC)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.timezones()
)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def snapshot(api_version: str = NEW_VERSION, **detail_fields: Any) -> Snapshot:
    d = detail(api_version, "d-9", **detail_fields)
    response = order(
        "322-ABC1-AAAAAA",
        line_item("li-2", [d], api_version=api_version, quantity=None),
        line_item("li-1", [d], api_version=api_version, quantity=3),
    )
    found = extract_snapshots(response, business_product_id="bp-123", api_version=api_version)
    return found["d-9"]


def body(snap: Snapshot, observed_at: datetime = OBSERVED, **event: str) -> dict[str, Any]:
    source = {
        "event_id": "evt-1",
        "detail_type": "PACKAGE_DELIVERED",
        "event_time": "2024-06-01T12:30:00Z",
    }
    return delivery_update(snap, observed_at=observed_at, **(source | event))


STATES = [
    ("PENDING", None),
    ("IN_TRANSIT", None),
    ("DELIVERED", None),
    ("CANCELLED", "CUSTOMER_REQUESTED"),
    ("CANCELLED", "UNDELIVERABLE"),
]


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
@pytest.mark.parametrize(("state", "reason"), STATES)
@pytest.mark.parametrize("tracked", [True, False], ids=["tracked", "untracked"])
def test_body_validates_against_the_contract_schema(
    validator: Draft202012Validator,
    api_version: str,
    state: str,
    reason: str | None,
    tracked: bool,
) -> None:
    # Given a snapshot of any state, generation and tracking
    fields: dict[str, Any] = {"state": state, "reason": reason}
    if not tracked:
        fields |= {"number": None, "carrier": None}
    snap = snapshot(api_version, **fields)
    # When its DeliveryUpdate body is built and encoded
    raw = encode(body(snap))
    # Then the body on the wire validates against the contract's schema
    errors = sorted(validator.iter_errors(json.loads(raw)), key=str)
    assert errors == []


def test_schema_check_catches_a_broken_body(validator: Draft202012Validator) -> None:
    # The validator is strict enough to be worth running: a local-time observedAt fails.
    broken = body(snapshot()) | {"observedAt": "2024-06-01 12:30"}
    assert not validator.is_valid(broken)


def test_body_carries_the_delivery_and_the_source_event() -> None:
    # Given a 2024-11-01 snapshot of a delivery with two line items
    snap = snapshot(NEW_VERSION, state="IN_TRANSIT")
    # When the body is built for the event that led to the push
    update = body(snap, event_id="evt-7", detail_type="PACKAGE_DELIVERY_IN_TRANSIT", event_time="T")
    # Then it names the delivery, its line items and the event, as the contract says
    assert update == {
        "type": "delivery.updated",
        "schemaVersion": 1,
        "idempotencyKey": snap.idempotency_key,
        "businessProductId": "bp-123",
        "orderId": "322-ABC1-AAAAAA",
        "deliveryId": "d-9",
        "state": "IN_TRANSIT",
        "reason": None,
        "lineItems": [
            {"lineItemId": "li-1", "quantity": 3},
            {"lineItemId": "li-2", "quantity": None},
        ],
        "tracking": {
            "carrierCode": "UPS",
            "trackingNumber": "1Z999AA10123456784",
            "trackingUrl": "https://track.example/1Z999AA10123456784",
            "milestone": "IN_TRANSIT",
            "estimatedDelivery": {
                "earliest": "2024-06-03T00:00:00Z",
                "latest": "2024-06-05T00:00:00Z",
            },
        },
        "sourceEvent": {"id": "evt-7", "detailType": "PACKAGE_DELIVERY_IN_TRANSIT", "time": "T"},
        "observedAt": "2024-06-01T12:30:05.123Z",
    }


def test_old_generation_tracking_id_becomes_the_tracking_number() -> None:
    update = body(snapshot("2024-01-01", number="TID-1", carrier="USPS"))
    assert update["tracking"] == {
        "carrierCode": "USPS",
        "trackingNumber": "TID-1",
        "trackingUrl": None,
        "milestone": None,
        "estimatedDelivery": {
            "earliest": "2024-06-03T00:00:00Z",
            "latest": "2024-06-03T00:00:00Z",
        },
    }


def test_tracking_is_null_until_a_number_or_carrier_is_known() -> None:
    assert body(snapshot(number=None, carrier=None))["tracking"] is None


def test_estimated_delivery_is_null_without_either_end() -> None:
    update = body(snapshot(earliest=None, latest=None))
    assert update["tracking"]["estimatedDelivery"] is None


def test_estimated_delivery_keeps_a_one_sided_window() -> None:
    update = body(snapshot(earliest=None, latest="2024-06-05T00:00:00Z"))
    assert update["tracking"]["estimatedDelivery"] == {
        "earliest": None,
        "latest": "2024-06-05T00:00:00Z",
    }


def test_idempotency_key_depends_on_content_not_on_event_or_time() -> None:
    # Given one snapshot pushed for two twin events at two different times
    snap = snapshot()
    first = body(snap, event_id="evt-1", detail_type="ITEM_DELIVERED")
    second = body(
        snap,
        observed_at=OBSERVED + timedelta(hours=1),
        event_id="evt-2",
        detail_type="PACKAGE_DELIVERED",
    )
    # Then both carry the same Idempotency-Key
    assert first["idempotencyKey"] == second["idempotencyKey"] == snap.idempotency_key
    # And a change of content gives a new one
    assert body(snapshot(state="DELIVERED"))["idempotencyKey"] != first["idempotencyKey"]


# --- observedAt ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 6, 1, 12, 0, tzinfo=UTC), "2024-06-01T12:00:00.000Z"),
        (datetime(2024, 6, 1, 12, 0, 0, 999999, tzinfo=UTC), "2024-06-01T12:00:00.999Z"),
        (
            datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-06-01T12:00:00.000Z",
        ),
        (
            datetime(2024, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5))),
            "2024-01-01T05:30:00.000Z",
        ),
    ],
)
def test_rfc3339_writes_utc_with_z(moment: datetime, expected: str) -> None:
    assert rfc3339(moment) == expected


@given(moment=moments)
def test_rfc3339_of_any_aware_moment_is_the_same_instant_in_utc(moment: datetime) -> None:
    text = rfc3339(moment)
    assert text.endswith("Z")
    assert "+" not in text
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(parsed - moment) < timedelta(milliseconds=1)


def test_observed_at_is_rfc3339_with_z(validator: Draft202012Validator) -> None:
    update = body(
        snapshot(), observed_at=datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert update["observedAt"] == "2024-06-01T12:00:00.000Z"
    assert validator.is_valid(update)


# --- encoding and signature ----------------------------------------------------------


def test_encode_is_compact_sorted_json_bytes() -> None:
    update = body(snapshot())
    raw = encode(update)
    assert isinstance(raw, bytes)
    assert json.loads(raw) == update
    assert raw == json.dumps(update, sort_keys=True, separators=(",", ":")).encode()
    # the same body always encodes to the same bytes (the signature covers them)
    assert encode(dict(reversed(list(update.items())))) == raw


def _independent_signature(secret: str, t: int, raw: bytes) -> str:
    message = f"{t}.{raw.decode()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_signature_is_hmac_sha256_of_timestamp_dot_raw_body() -> None:
    # Given an encoded body and a signing secret
    raw = encode(body(snapshot()))
    # When it is signed at t=1717245005
    header = signature("s3cret-signing-key", 1717245005, raw)
    # Then the header carries t and the hex HMAC of "<t>.<raw body>"
    t, v1 = header.split(",")
    assert t == "t=1717245005"
    assert v1 == "v1=" + _independent_signature("s3cret-signing-key", 1717245005, raw)


def test_signature_changes_with_secret_time_and_body() -> None:
    raw = encode(body(snapshot()))
    base = signature("secret-a", 100, raw)
    assert signature("secret-b", 100, raw) != base
    assert signature("secret-a", 101, raw).split(",")[1] != base.split(",")[1]
    assert signature("secret-a", 100, raw + b" ") != base


@given(
    secret=st.text(min_size=1, max_size=40),
    timestamp=st.integers(min_value=0, max_value=2**40),
    text=st.text(max_size=200),
)
def test_any_signature_matches_an_independent_hmac(secret: str, timestamp: int, text: str) -> None:
    raw = json.dumps({"text": text}).encode()
    assert signature(secret, timestamp, raw) == (
        f"t={timestamp},v1={_independent_signature(secret, timestamp, raw)}"
    )


# --- properties ----------------------------------------------------------------------

contents = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["PENDING", "IN_TRANSIT", "DELIVERED"]),
        "number": st.one_of(st.none(), st.text(min_size=1, max_size=12)),
        "carrier": st.one_of(st.none(), st.text(min_size=1, max_size=6)),
        "url": st.one_of(st.none(), st.text(max_size=20)),
        "milestone": st.one_of(st.none(), st.sampled_from(["IN_TRANSIT", "DELAYED", "LOST"])),
        "earliest": st.one_of(st.none(), st.text(max_size=20)),
        "latest": st.one_of(st.none(), st.text(max_size=20)),
    }
)


@given(
    content=contents,
    quantities=st.lists(st.one_of(st.none(), st.integers(0, 10**6)), min_size=1, max_size=4),
    observed=moments,
)
def test_any_snapshot_gives_a_valid_body(
    validator: Draft202012Validator,
    content: dict[str, Any],
    quantities: list[int | None],
    observed: datetime,
) -> None:
    shared = detail_2024_11("d-1", **content)
    items = [line_item(f"li-{i}", [shared], quantity=q) for i, q in enumerate(quantities)]
    found = extract_snapshots(
        order("o-1", *items), business_product_id="bp", api_version=NEW_VERSION
    )
    update = body(found["d-1"], observed_at=observed)
    assert validator.is_valid(json.loads(encode(update)))


def test_during_a_rotation_the_header_carries_one_v1_per_secret() -> None:
    # Given a body and a signing secret being rotated (the previous one still configured)
    raw = encode(body(snapshot()))
    # When it is signed
    header = signature("new-signing-key", 1717245005, raw, previous="old-signing-key")
    # Then one timestamp and a v1 per secret follow: the current first, then the previous
    assert header == (
        "t=1717245005"
        f",v1={_independent_signature('new-signing-key', 1717245005, raw)}"
        f",v1={_independent_signature('old-signing-key', 1717245005, raw)}"
    )
    # and without a previous secret there is one v1, as before
    assert signature("new-signing-key", 1717245005, raw).count("v1=") == 1

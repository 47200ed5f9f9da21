"""tasks.events.envelope: SQS bodies read as Buy with Prime EventBridge events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.errors import MalformedEvent
from tasks.events.catalog import DeliveryState
from tasks.events.envelope import (
    MAX_BODY_BYTES,
    DeliveryEvent,
    Envelope,
    MilestoneEvent,
    delivery_event,
    parse_delivery_event,
    parse_envelope,
    payload_hash,
)
from tasks.events.samples import build_event, to_body
from tasks.keys import DeliveryRef

EVENT_ID = "3f1b2c1e-8a1d-4c7e-9e3b-2b9f6a1d0c55"
WHEN = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
RESOURCE = "businessProduct/bp-123/order/322-ABC1-AAAAAA/delivery/d-9"

#: the nine delivery-family detail-types and the state each one announces
DELIVERY_TYPES = [
    ("ITEM_IN_TRANSIT", DeliveryState.IN_TRANSIT),
    ("ITEM_DELIVERED", DeliveryState.DELIVERED),
    ("ITEM_CANCELLED", DeliveryState.CANCELLED),
    ("DELIVERY_IN_TRANSIT", DeliveryState.IN_TRANSIT),
    ("DELIVERY_COMPLETED", DeliveryState.DELIVERED),
    ("DELIVERY_CANCELLED", DeliveryState.CANCELLED),
    ("PACKAGE_DELIVERY_IN_TRANSIT", DeliveryState.IN_TRANSIT),
    ("PACKAGE_DELIVERED", DeliveryState.DELIVERED),
    ("PACKAGE_DELIVERY_CANCELLED", DeliveryState.CANCELLED),
]


def event(detail_type: str = "DELIVERY_COMPLETED", **fields: Any) -> dict[str, Any]:
    """A genuine delivery event of ``detail_type``; ``fields`` replace envelope fields."""
    built = build_event(
        detail_type,
        business_product_id="bp-123",
        order_id="322-ABC1-AAAAAA",
        delivery_id="d-9",
        event_id=EVENT_ID,
        time=WHEN,
        idempotency_key="idem-1" if detail_type.startswith("PACKAGE_") else None,
    )
    built.update(fields)
    return built


def without(name: str) -> dict[str, Any]:
    built = event()
    del built[name]
    return built


def assert_one_short_line(error: MalformedEvent, limit: int = 700) -> None:
    message = str(error)
    assert message
    assert "\n" not in message
    assert "\r" not in message
    assert len(message) <= limit


# --- well-formed delivery events -----------------------------------------------------


@pytest.mark.parametrize(("detail_type", "state"), DELIVERY_TYPES)
def test_every_delivery_detail_type_names_its_delivery(
    detail_type: str, state: DeliveryState
) -> None:
    # Given a genuine event of a delivery-family detail-type
    body = to_body(event(detail_type))
    # When the SQS body is parsed
    parsed = parse_delivery_event(body)
    # Then it names the delivery and the state its type announces
    assert isinstance(parsed, DeliveryEvent)
    assert parsed.business_product_id == "bp-123"
    assert parsed.order_id == "322-ABC1-AAAAAA"
    assert parsed.delivery_id == "d-9"
    assert parsed.implied_state is state
    assert parsed.envelope.id == EVENT_ID
    assert parsed.envelope.detail_type == detail_type
    assert parsed.envelope.time == "2024-06-01T12:30:00Z"
    assert parsed.envelope.resources == (RESOURCE,)


def test_body_may_be_bytes() -> None:
    parsed = parse_delivery_event(to_body(event()).encode())
    assert isinstance(parsed, DeliveryEvent)
    assert parsed.delivery_id == "d-9"


def test_pair_is_found_among_several_resources() -> None:
    # Given an event whose first resource names only the order
    body = to_body(
        event(
            resources=[
                "businessProduct/bp-123/order/o-1/",
                "businessProduct/bp-9/order/o-2/delivery/d-2",
            ]
        )
    )
    # Then the resource carrying both order and delivery names the delivery
    parsed = parse_delivery_event(body)
    assert isinstance(parsed, DeliveryEvent)
    assert (parsed.business_product_id, parsed.order_id, parsed.delivery_id) == (
        "bp-9",
        "o-2",
        "d-2",
    )


@pytest.mark.parametrize(
    ("fields", "expected_detail"),
    [
        pytest.param({}, {}, id="empty-detail"),
        pytest.param({"detail": None}, {}, id="null-detail"),
        pytest.param({"detail": {"note": "x"}}, {"note": "x"}, id="other-detail-fields"),
        pytest.param({"replay-name": "replay-1", "version": "0"}, {}, id="extra-envelope-fields"),
        pytest.param({"time": "2024-06-01T12:30:00+02:00"}, {}, id="time-with-offset"),
        pytest.param({"time": "2024-06-01T12:30:00.123Z"}, {}, id="time-with-fraction"),
    ],
)
def test_optional_envelope_variants_are_accepted(
    fields: dict[str, Any], expected_detail: dict[str, Any]
) -> None:
    parsed = parse_envelope(to_body(event(**fields)))
    assert parsed.detail == expected_detail


def test_missing_detail_reads_as_empty_detail() -> None:
    assert parse_envelope(to_body(without("detail"))).detail == {}


# --- other detail-types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail_type", "resources"),
    [
        ("ORDER_CONFIRMED", ["businessProduct/bp-123/order/o-1"]),
        ("REFUND_REQUESTED", ["businessProduct/bp-123/order/o-1/refund/r-1"]),
        ("INVENTORY_CHANGED", []),
        ("SOMETHING_NEW", ["not a resource we can read"]),
    ],
)
def test_other_detail_types_come_back_as_a_bare_envelope(
    detail_type: str, resources: list[str]
) -> None:
    # Given a well-formed event outside the delivery family
    body = to_body(event(**{"detail-type": detail_type, "resources": resources}))
    # When it is parsed, its resources are not required to name a delivery
    parsed = parse_delivery_event(body)
    # Then the bare envelope comes back for the caller to acknowledge or park
    assert isinstance(parsed, Envelope)
    assert parsed.detail_type == detail_type
    assert parsed.resources == tuple(resources)


def test_a_milestone_event_names_its_tracker() -> None:
    # Given PACKAGE_TRACKER_MILESTONE_CHANGED, whose resource names a carrier's tracker
    resource = "businessProduct/bp-123/carrier/UPS/tracker/1Z999AA10123456784"
    body = to_body(event("PACKAGE_TRACKER_MILESTONE_CHANGED", resources=[resource]))
    # When it is parsed
    parsed = parse_delivery_event(body)
    # Then the business product, carrier and tracking number come back (no order)
    assert isinstance(parsed, MilestoneEvent)
    assert (parsed.business_product_id, parsed.carrier_code, parsed.tracking_number) == (
        "bp-123",
        "UPS",
        "1Z999AA10123456784",
    )


@pytest.mark.parametrize(
    "resources",
    [[], ["businessProduct/bp-123/order/o-1"], ["businessProduct/bp-123/carrier/UPS"]],
)
def test_a_milestone_event_without_a_tracker_is_malformed(resources: list[str]) -> None:
    body = to_body(event("PACKAGE_TRACKER_MILESTONE_CHANGED", resources=resources))
    with pytest.raises(MalformedEvent):
        parse_delivery_event(body)


def test_every_order_delivery_pair_of_the_resources_is_kept() -> None:
    # Given a delivery event whose resources name two deliveries (and one twice)
    resources = [
        "businessProduct/bp-123/order/o-1/delivery/d-1",
        "businessProduct/bp-123/order/o-1/delivery/d-2",
        "businessProduct/bp-123/order/o-1/delivery/d-1",
    ]
    parsed = parse_delivery_event(to_body(event("PACKAGE_DELIVERED", resources=resources)))
    # Then the first is the event's delivery and the other is kept, once
    assert isinstance(parsed, DeliveryEvent)
    assert parsed.delivery_id == "d-1"
    assert parsed.others == (DeliveryRef("bp-123", "o-1", "d-2"),)


def test_delivery_event_refuses_a_non_delivery_envelope() -> None:
    envelope = parse_envelope(to_body(event(**{"detail-type": "ORDER_CONFIRMED"})))
    with pytest.raises(KeyError):
        delivery_event(envelope)


# --- dedup key -----------------------------------------------------------------------


def test_dedup_key_is_the_idempotency_key_when_present() -> None:
    # Given a 2024-11-01 event carrying detail.idempotencyKey
    body = to_body(event("PACKAGE_DELIVERED", detail={"idempotencyKey": "idem-42"}))
    # Then the dedup key is that key, not the envelope id
    assert parse_envelope(body).dedup_key == "idem-42"


@pytest.mark.parametrize("detail", [{}, {"idempotencyKey": None}, {"other": "x"}])
def test_dedup_key_is_the_envelope_id_otherwise(detail: dict[str, Any]) -> None:
    body = to_body(event("DELIVERY_COMPLETED", detail=detail))
    assert parse_envelope(body).dedup_key == EVENT_ID


def test_twins_with_one_idempotency_key_share_the_dedup_key() -> None:
    # Given one event re-published with a new envelope id and time
    first = event("PACKAGE_DELIVERED", detail={"idempotencyKey": "idem-42"})
    again = event(
        "PACKAGE_DELIVERED",
        id="9d7e1e8a-0000-4000-8000-000000000001",
        time="2024-06-01T13:00:00Z",
        detail={"idempotencyKey": "idem-42"},
    )
    # Then both share one dedup key and one payload hash: a duplicate, not a conflict
    a, b = parse_envelope(to_body(first)), parse_envelope(to_body(again))
    assert a.dedup_key == b.dedup_key == "idem-42"
    assert a.payload_hash == b.payload_hash


@pytest.mark.parametrize(
    "key",
    [
        # the documented form: base64 of "<uuid>#<event id>", with "=" padding
        "MGQ1YjE4ZGEtYjM2Ny00YjE5LWIxMGUtNTVmYmU0NmQ2ZWQ4IzNmMWIyYzFlLThhMWQ=",
        "ab+/cd==",
        "/" * 3,
        "+",
        "A" * 512,
        "idem-42",  # id-like keys stay accepted
    ],
)
def test_base64_idempotency_keys_are_accepted(key: str) -> None:
    body = to_body(event("PACKAGE_DELIVERED", detail={"idempotencyKey": key}))
    assert parse_envelope(body).dedup_key == key


@pytest.mark.parametrize(
    "key",
    [
        42,
        "",
        "has space",
        "line\nbreak",
        'quo"te',
        {"nested": "x"},
        ["idem"],
        True,
        "A" * 513,
        "ab/cd-ef",  # a slash outside the base64 alphabet's company
        "ab*cd",
    ],
)
def test_unusable_idempotency_key_is_malformed(key: object) -> None:
    body = to_body(event("PACKAGE_DELIVERED", detail={"idempotencyKey": key}))
    with pytest.raises(MalformedEvent, match="idempotencyKey"):
        parse_envelope(body)


# --- payload hash --------------------------------------------------------------------


def test_payload_hash_ignores_id_time_whitespace_and_key_order() -> None:
    # Given the same event with another id and time, pretty-printed with keys reversed
    original = event(detail={"idempotencyKey": "idem-1", "a": 1, "b": [1, 2]})
    copy = event(
        id="9d7e1e8a-0000-4000-8000-000000000001",
        time="2024-06-02T00:00:00Z",
        detail={"b": [1, 2], "a": 1, "idempotencyKey": "idem-1"},
    )
    copy_body = json.dumps(dict(reversed(list(copy.items()))), indent=2)
    # Then both hash the same
    assert parse_envelope(to_body(original)).payload_hash == parse_envelope(copy_body).payload_hash


def test_payload_hash_ignores_the_order_of_resources() -> None:
    resources = [RESOURCE, "businessProduct/bp-123/order/322-ABC1-AAAAAA"]
    forward = parse_envelope(to_body(event(resources=resources)))
    backward = parse_envelope(to_body(event(resources=resources[::-1])))
    assert forward.payload_hash == backward.payload_hash


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"detail-type": "ITEM_DELIVERED"}, id="detail-type"),
        pytest.param({"resources": [RESOURCE.replace("d-9", "d-10")]}, id="resources"),
        pytest.param({"detail": {"idempotencyKey": "idem-1"}}, id="detail-key-added"),
    ],
)
def test_payload_hash_changes_with_what_identifies_the_event(change: dict[str, Any]) -> None:
    base = parse_envelope(to_body(event()))
    changed = parse_envelope(to_body(event(**change)))
    assert changed.payload_hash != base.payload_hash


def test_payload_hash_changes_with_the_idempotency_key() -> None:
    first = parse_envelope(to_body(event(detail={"idempotencyKey": "idem-1"})))
    second = parse_envelope(to_body(event(detail={"idempotencyKey": "idem-2"})))
    assert first.payload_hash != second.payload_hash


@pytest.mark.parametrize(
    "volatile",
    [
        pytest.param({"eventTime": "2025-01-20T12:35:10Z"}, id="eventTime"),
        pytest.param({"data": {"refund": {"amount": 12}}}, id="data"),
        pytest.param({"subscriptionId": "sub-2"}, id="subscriptionId"),
        pytest.param({"eventId": "another-id", "apiVersion": "2024-11-01"}, id="eventId"),
        pytest.param({"state": "x"}, id="any-other-field"),
    ],
)
def test_payload_hash_ignores_the_volatile_rest_of_the_detail(volatile: dict[str, Any]) -> None:
    # Given a 2024-11-01 event whose detail carries the whole webhook body, re-published
    # under the same idempotencyKey with another eventTime, data, subscription, ...
    first = build_event(
        "PACKAGE_DELIVERED",
        business_product_id="bp-123",
        order_id="322-ABC1-AAAAAA",
        delivery_id="d-9",
        idempotency_key="idem-1",
        data={"refund": {"amount": 10}},
    )
    again = {**first, "detail": {**first["detail"], **volatile}}
    # Then both are one event: same dedup key, same payload hash (a duplicate, no conflict)
    a, b = parse_envelope(to_body(first)), parse_envelope(to_body(again))
    assert a.dedup_key == b.dedup_key == "idem-1"
    assert a.payload_hash == b.payload_hash


def test_payload_hash_function_is_the_envelope_field() -> None:
    envelope = parse_envelope(to_body(event(detail={"a": [1, {"b": None}]})))
    assert envelope.payload_hash == payload_hash(
        envelope.detail_type, envelope.resources, envelope.detail
    )


# --- malformed bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="text"),
        pytest.param("{", id="truncated"),
        pytest.param("{'id': 'single quotes'}", id="python-literal"),
        pytest.param("[]", id="array"),
        pytest.param("[{}]", id="array-of-object"),
        pytest.param('"a string"', id="string"),
        pytest.param("42", id="number"),
        pytest.param("null", id="null"),
        pytest.param("true", id="boolean"),
    ],
)
def test_body_that_is_not_a_json_object_is_malformed(body: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_envelope(body)
    assert_one_short_line(caught.value)


@pytest.mark.parametrize("name", ["id", "detail-type", "time", "resources"])
def test_envelope_missing_a_required_field_is_malformed(name: str) -> None:
    with pytest.raises(MalformedEvent, match=f"lacks {name}"):
        parse_envelope(to_body(without(name)))


def test_all_missing_fields_are_named_on_one_line() -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_envelope("{}")
    assert str(caught.value) == "envelope lacks id, detail-type, time, resources"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"id": 42}, id="id-number"),
        pytest.param({"id": ""}, id="id-empty"),
        pytest.param({"id": "   "}, id="id-blank"),
        pytest.param({"id": None}, id="id-null"),
        pytest.param({"id": "id with spaces"}, id="id-spaces"),
        pytest.param({"id": "id\nforged log line"}, id="id-newline"),
        pytest.param({"detail-type": 7}, id="detail-type-number"),
        pytest.param({"detail-type": ""}, id="detail-type-empty"),
        pytest.param({"detail-type": ["DELIVERY_COMPLETED"]}, id="detail-type-list"),
        pytest.param({"time": 1717245000}, id="time-number"),
        pytest.param({"time": ""}, id="time-empty"),
        pytest.param({"time": "yesterday"}, id="time-words"),
        pytest.param({"time": "2024-13-01T00:00:00Z"}, id="time-month-13"),
        pytest.param({"time": "2024-06-01T25:00:00Z"}, id="time-hour-25"),
        pytest.param({"resources": RESOURCE}, id="resources-string"),
        pytest.param({"resources": None}, id="resources-null"),
        pytest.param({"resources": {"r": RESOURCE}}, id="resources-object"),
        pytest.param({"resources": [RESOURCE, 5]}, id="resources-with-number"),
        pytest.param({"resources": [[RESOURCE]]}, id="resources-nested"),
        pytest.param({"detail": []}, id="detail-array"),
        pytest.param({"detail": "x"}, id="detail-string"),
        pytest.param({"detail": 0}, id="detail-number"),
    ],
)
def test_envelope_field_of_the_wrong_type_is_malformed(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_envelope(to_body(event(**fields)))
    assert_one_short_line(caught.value)


def test_sns_notification_wrapping_an_event_is_malformed() -> None:
    # Given an EventBridge event delivered through SNS without raw message delivery
    wrapped = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:bwp",
        "Message": to_body(event()),
        "Timestamp": "2024-06-01T12:30:01.000Z",
    }
    # Then it is refused with a reason that says what happened
    with pytest.raises(MalformedEvent, match="SNS"):
        parse_envelope(json.dumps(wrapped))


def test_sns_check_does_not_refuse_a_genuine_event_with_a_type_field() -> None:
    # An envelope that happens to carry "Type" but no SNS Message is still an event.
    assert parse_envelope(to_body(event(Type="Notification"))).id == EVENT_ID


def _padded_body(size: int) -> str:
    """A genuine event whose body is exactly ``size`` bytes long."""
    base = event(detail={"pad": ""})
    overhead = len(to_body(base).encode())
    base["detail"]["pad"] = "x" * (size - overhead)
    body = to_body(base)
    assert len(body.encode()) == size
    return body


def test_body_of_exactly_the_size_limit_is_accepted() -> None:
    parsed = parse_envelope(_padded_body(MAX_BODY_BYTES))
    assert parsed.id == EVENT_ID


def test_body_over_the_size_limit_is_malformed() -> None:
    # Given a genuine-looking event one byte over EventBridge's 256 KiB limit
    body = _padded_body(MAX_BODY_BYTES + 1)
    # Then it is refused for its size, without echoing it
    with pytest.raises(MalformedEvent, match="byte limit") as caught:
        parse_envelope(body)
    assert_one_short_line(caught.value, limit=120)


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    # Given a body under the limit in characters but over it in UTF-8 bytes
    base = event(detail={"pad": "é" * (MAX_BODY_BYTES // 2)})
    body = to_body(base).replace("\\u00e9", "é")
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    # Then it is refused
    with pytest.raises(MalformedEvent, match="byte limit"):
        parse_envelope(body)


def test_max_body_bytes_is_eventbridge_limit() -> None:
    assert MAX_BODY_BYTES == 256 * 1024


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe" + to_body(event()).encode(), id="bom-like-garbage"),
        pytest.param(to_body(event()).encode("utf-16"), id="utf-16"),
        pytest.param(to_body(event()).encode()[:-1] + b"\xc3", id="truncated-sequence"),
        pytest.param(
            to_body(event(detail={"x": "MARKER"})).replace("MARKER", "\ud800"),
            id="lone-surrogate-in-str",
        ),
    ],
)
def test_body_that_is_not_utf8_is_malformed(body: str | bytes) -> None:
    with pytest.raises(MalformedEvent, match="not UTF-8"):
        parse_envelope(body)


# --- delivery events without a delivery ------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "match"),
    [
        pytest.param(["businessProduct/bp-123/order/o-1"], "lack order", id="no-delivery"),
        pytest.param(["businessProduct/bp-123/delivery/d-1"], "lack order", id="no-order"),
        pytest.param(
            ["businessProduct/bp-123/order/o-1", "businessProduct/bp-123/delivery/d-1"],
            "lack order",
            id="order-and-delivery-in-two-resources",
        ),
        pytest.param(["order/o-1/delivery/d-1"], "lack order", id="no-prefix"),
        pytest.param([], "lack order", id="no-resources"),
        pytest.param(
            ["businessProduct/bp-123/order/o-1/returnDelivery/d-1"],
            "lack order",
            id="a-return-delivery-is-no-delivery",
        ),
        pytest.param(
            ["businessProduct/bp-123/order/o-1/delivery/d-1#RF"], "invalid", id="hash-in-delivery"
        ),
        pytest.param(
            [RESOURCE, "businessProduct/bp-123/order/o-1\nforged"],
            "invalid",
            id="one-resource-with-a-forged-id",
        ),
    ],
)
def test_delivery_event_without_order_and_delivery_is_malformed(
    resources: list[str], match: str
) -> None:
    body = to_body(event("ITEM_DELIVERED", resources=resources))
    with pytest.raises(MalformedEvent, match=match) as caught:
        parse_delivery_event(body)
    assert_one_short_line(caught.value)


# --- error messages ------------------------------------------------------------------

GARBAGE = "ZQ\n<script>" * 1000  # 10 KB with newlines and markup


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(GARBAGE, id="garbage-body"),
        pytest.param(json.dumps(GARBAGE), id="json-string"),
        pytest.param(to_body(event(id=GARBAGE)), id="garbage-id"),
        pytest.param(to_body(event(**{"detail-type": 5, "junk": GARBAGE})), id="garbage-field"),
        pytest.param(to_body(event(time=GARBAGE)), id="garbage-time"),
        pytest.param(to_body(event(resources=[GARBAGE])), id="garbage-resource"),
        pytest.param(to_body(event(resources=[RESOURCE + GARBAGE])), id="garbage-after-resource"),
        pytest.param(
            to_body(event("PACKAGE_DELIVERED", detail={"idempotencyKey": GARBAGE})),
            id="garbage-idempotency-key",
        ),
    ],
)
def test_reason_never_echoes_more_than_a_short_preview(body: str) -> None:
    # Given a body carrying 10 KB of garbage somewhere
    # When it is refused
    with pytest.raises(MalformedEvent) as caught:
        parse_delivery_event(body)
    # Then the reason is one short line carrying at most a 60-character escaped preview
    # (six of the thousand repetitions), never the garbage itself
    assert_one_short_line(caught.value, limit=200)
    assert str(caught.value).count("<script>") <= 6


def test_integer_with_too_many_digits_is_malformed() -> None:
    # Given a 5 KB body that is valid JSON but holds a 5000-digit number
    body = to_body(event(detail={"n": 0})).replace('"n":0', '"n":' + "1" * 5000)
    # Then it is refused like any other unreadable body, not with a ValueError
    with pytest.raises(MalformedEvent):
        parse_envelope(body)


# --- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
resource_texts = st.one_of(
    st.just(RESOURCE),
    st.text(max_size=30),
    st.lists(
        st.sampled_from(["businessProduct", "bp", "order", "o-1", "delivery", "d-1", "", "a b"]),
        max_size=7,
    ).map("/".join),
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.just(EVENT_ID), json_values),
        "detail-type": st.one_of(st.sampled_from([dt for dt, _ in DELIVERY_TYPES]), json_values),
        "time": st.one_of(st.just("2024-06-01T12:30:00Z"), st.text(max_size=30), json_values),
        "resources": st.one_of(st.lists(resource_texts, max_size=3), json_values),
        "detail": st.one_of(
            st.fixed_dictionaries({}, optional={"idempotencyKey": json_values}), json_values
        ),
        "Type": st.just("Notification"),
        "Message": st.text(max_size=10),
    },
)


def _parses_or_is_malformed(body: str | bytes) -> None:
    try:
        parsed = parse_delivery_event(body)
    except MalformedEvent as exc:
        assert_one_short_line(exc)
        return
    envelope = parsed.envelope if isinstance(parsed, DeliveryEvent) else parsed
    assert isinstance(envelope, Envelope)
    assert envelope.id
    assert envelope.dedup_key


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_json_value_parses_or_is_malformed(value: object) -> None:
    _parses_or_is_malformed(json.dumps(value))


@settings(max_examples=500, deadline=None)
@given(doc=envelope_like)
def test_any_envelope_shaped_object_parses_or_is_malformed(doc: dict[str, Any]) -> None:
    _parses_or_is_malformed(json.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.text(), st.binary()))
def test_any_text_or_bytes_parse_or_are_malformed(body: str | bytes) -> None:
    _parses_or_is_malformed(body)


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:~+=@-]{0,40}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    detail_type=st.sampled_from([dt for dt, _ in DELIVERY_TYPES]),
    business_product_id=ids,
    order_id=ids,
    delivery_id=ids,
    idempotency_key=st.one_of(st.none(), ids),
)
def test_any_built_delivery_event_round_trips(
    detail_type: str,
    business_product_id: str,
    order_id: str,
    delivery_id: str,
    idempotency_key: str | None,
) -> None:
    # Given any event the builder makes for ids of the id alphabet
    built = build_event(
        detail_type,
        business_product_id=business_product_id,
        order_id=order_id,
        delivery_id=delivery_id,
        idempotency_key=idempotency_key,
    )
    # When its body is parsed
    parsed = parse_delivery_event(to_body(built))
    # Then the same delivery and dedup key come back
    assert isinstance(parsed, DeliveryEvent)
    assert (parsed.business_product_id, parsed.order_id, parsed.delivery_id) == (
        business_product_id,
        order_id,
        delivery_id,
    )
    assert parsed.envelope.dedup_key == built["detail"].get("idempotencyKey", built["id"])

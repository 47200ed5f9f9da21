"""Events in the shapes real Buy with Prime subscriptions send (tests/data/realworld): the
whole webhook body in ``detail``, milestones naming their order, return resources whose ids
hold ``#``; and the limits every body meets in the poller and the worker alike: the cap on
the deliveries one event names, and one JSON nesting limit."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import MalformedEvent
from tasks.events.envelope import (
    MAX_DELIVERIES_PER_EVENT,
    MAX_JSON_DEPTH,
    DeliveryEvent,
    Envelope,
    MilestoneEvent,
    parse_delivery_event,
)
from tasks.events.samples import build_event, to_body
from tasks.keys import DeliveryRef

DATA = Path(__file__).resolve().parents[1] / "data" / "realworld"
CASES = json.loads((DATA / "cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_a_real_world_event_parses_into_what_it_names(case: dict[str, Any]) -> None:
    # Given an SQS body as EventBridge writes it for a Buy with Prime subscription
    body = (DATA / case["file"]).read_text()
    expect = case["expect"]
    # When it is parsed
    parsed = parse_delivery_event(body)
    # Then it is what the case says, with the documented dedup key
    envelope = parsed if isinstance(parsed, Envelope) else parsed.envelope
    assert envelope.dedup_key == expect["dedup_key"]
    if expect["kind"] == "delivery":
        assert isinstance(parsed, DeliveryEvent)
        named = (parsed.business_product_id, parsed.order_id, parsed.delivery_id)
        assert named == (expect["business_product_id"], expect["order_id"], expect["delivery_id"])
        assert [str(ref) for ref in parsed.others] == expect["others"]
    elif expect["kind"] == "milestone":
        assert isinstance(parsed, MilestoneEvent)
        named = (
            parsed.business_product_id,
            parsed.order_id,
            parsed.carrier_code,
            parsed.tracking_number,
        )
        assert named == (
            expect["business_product_id"],
            expect["order_id"],
            expect["carrier_code"],
            expect["tracking_number"],
        )
    else:
        assert isinstance(parsed, Envelope)
        assert parsed.detail_type == expect["detail_type"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_a_republished_copy_with_another_event_time_and_data_is_the_same_event(
    case: dict[str, Any],
) -> None:
    # Given a real-world event and a copy re-published under the same idempotencyKey whose
    # envelope id, time, detail.eventTime and detail.data all differ
    doc = json.loads((DATA / case["file"]).read_text())
    copy = {**doc, "id": "11111111-2222-4333-8444-555555555555", "time": "2026-01-01T00:00:00Z"}
    if doc["detail"]:
        copy["detail"] = {
            **doc["detail"],
            "eventTime": "2026-01-01T00:00:01Z",
            "data": {"changed": [1, 2, 3]},
        }
    first, again = parse_delivery_event(to_body(doc)), parse_delivery_event(to_body(copy))
    a = first if isinstance(first, Envelope) else first.envelope
    b = again if isinstance(again, Envelope) else again.envelope
    # Then (when it has an idempotencyKey) both are one event: a duplicate, never a conflict
    if doc["detail"]:
        assert (a.dedup_key, a.payload_hash) == (b.dedup_key, b.payload_hash)
    else:
        assert a.dedup_key != b.dedup_key  # 2024-01-01/04-01: the envelope id is the key


def test_a_milestone_takes_its_order_from_another_resource_of_its_business_product() -> None:
    event = build_event(
        "PACKAGE_TRACKER_MILESTONE_CHANGED", business_product_id="bp-1", tracker=("ups", "1Z1")
    )
    event["resources"] += ["businessProduct/bp-2/order/o-other", "businessProduct/bp-1/order/o-1"]
    parsed = parse_delivery_event(to_body(event))
    assert isinstance(parsed, MilestoneEvent)
    assert parsed.order_id == "o-1"


def test_a_milestone_naming_an_unreadable_order_is_malformed() -> None:
    resource = "businessProduct/bp-1/order/o 1/carrier/ups/tracker/1Z1"
    event = build_event(
        "PACKAGE_TRACKER_MILESTONE_CHANGED", business_product_id="bp-1", tracker=("ups", "1Z1")
    )
    event["resources"] = [resource]
    with pytest.raises(MalformedEvent, match="invalid order id"):
        parse_delivery_event(to_body(event))


def test_every_2024_11_01_event_the_samples_build_carries_the_webhook_body() -> None:
    for detail_type in ("ORDER_CONFIRMED", "REFUND_COMPLETED", "PACKAGE_DELIVERED"):
        event = build_event(detail_type, business_product_id="bp", order_id="o", delivery_id="d")
        detail = event["detail"]
        assert set(detail) == {
            "idempotencyKey",
            "eventDescriptor",
            "resources",
            "eventId",
            "apiVersion",
            "subscriptionId",
            "eventTime",
            "data",
        }
        assert detail["eventDescriptor"] == detail_type
        assert detail["eventId"] == event["id"]


# --- the cap on the deliveries one event names ----------------------------------------


def many_pairs(count: int) -> dict[str, Any]:
    event = build_event(
        "PACKAGE_DELIVERED", business_product_id="bp", order_id="o-0", delivery_id="d-0"
    )
    event["resources"] = [f"businessProduct/bp/order/o-{i}/delivery/d-{i}" for i in range(count)]
    return event


def test_an_event_at_the_cap_names_every_delivery() -> None:
    parsed = parse_delivery_event(to_body(many_pairs(MAX_DELIVERIES_PER_EVENT)))
    assert isinstance(parsed, DeliveryEvent)
    assert len(parsed.others) == MAX_DELIVERIES_PER_EVENT - 1


def test_an_event_past_the_cap_is_malformed_with_the_count() -> None:
    # Given an event whose resources name one pair more than allowed (and repeats)
    event = many_pairs(MAX_DELIVERIES_PER_EVENT + 1)
    event["resources"] += event["resources"][:5]
    # Then it is malformed, and the reason says how many distinct pairs it named
    with pytest.raises(MalformedEvent, match=f"names {MAX_DELIVERIES_PER_EVENT + 1} order/"):
        parse_delivery_event(to_body(event))


def test_the_cap_is_a_parameter() -> None:
    with pytest.raises(MalformedEvent, match="names 3 order/delivery pairs, over the cap of 2"):
        parse_delivery_event(to_body(many_pairs(3)), max_deliveries=2)


def test_pairs_are_deduplicated_without_comparing_each_with_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an event naming 600 distinct pairs, each twice
    event = many_pairs(600)
    event["resources"] += event["resources"]
    compared = [0]
    original = DeliveryRef.__eq__

    def counting(self: DeliveryRef, other: object) -> bool:
        compared[0] += 1
        return original(self, other)

    monkeypatch.setattr(DeliveryRef, "__eq__", counting)
    # When it is parsed with a cap that lets it through
    parsed = parse_delivery_event(to_body(event), max_deliveries=1000)
    # Then the 600 pairs come out once each, in order, after about one comparison per
    # repeat (a list scan compares each pair with every earlier one: ~360,000)
    assert isinstance(parsed, DeliveryEvent)
    assert [r.delivery_id for r in parsed.others] == [f"d-{i}" for i in range(1, 600)]
    assert compared[0] <= 2 * 1200


# --- one JSON nesting limit --------------------------------------------------------------


def nested(levels: int) -> str:
    """A genuine event plus a field nesting arrays so that the body is ``levels`` deep."""
    base = to_body(
        build_event("PACKAGE_DELIVERED", business_product_id="bp", order_id="o", delivery_id="d")
    )
    inner = levels - 1  # the envelope object is the first level
    return base[:-1] + ',"x":' + "[" * inner + "]" * inner + "}"


def in_a_deep_thread(body: str, frames: int = 60) -> bool:
    """Whether ``body`` parses on a thread whose stack already holds ``frames`` frames (a
    Celery worker thread runs a task well below its thread's first frame)."""
    result: list[bool] = []

    def descend(left: int) -> None:
        if left:
            descend(left - 1)
            return
        try:
            parse_delivery_event(body)
            result.append(True)
        except MalformedEvent:
            result.append(False)

    thread = threading.Thread(target=descend, args=(frames,))
    thread.start()
    thread.join()
    return result[0]


def parses(body: str) -> bool:
    try:
        parse_delivery_event(body)
    except MalformedEvent:
        return False
    return True


def test_a_body_at_the_nesting_limit_parses_and_one_level_more_is_malformed() -> None:
    assert parses(nested(MAX_JSON_DEPTH))
    with pytest.raises(MalformedEvent, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        parse_delivery_event(nested(MAX_JSON_DEPTH + 1))


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 300, 900, 950, 990])
def test_the_poller_and_a_worker_thread_agree_on_every_depth(levels: int) -> None:
    # Given a body nested ``levels`` deep (Python's own parser gives up near 1,000 levels
    # minus the caller's stack)
    body = nested(levels)
    # Then the main thread (the poller) and a deep worker thread give the same answer,
    # and it is the limit's answer
    assert parses(body) == in_a_deep_thread(body) == (levels <= MAX_JSON_DEPTH)


def test_a_wide_body_with_many_brackets_is_not_too_deep() -> None:
    # Given a genuine event holding thousands of shallow arrays (many brackets, little depth)
    event = build_event(
        "PACKAGE_DELIVERED",
        business_product_id="bp",
        order_id="o",
        delivery_id="d",
        data={"rows": [[i] for i in range(5000)]},
    )
    # Then it parses: only depth counts
    assert isinstance(parse_delivery_event(to_body(event)), DeliveryEvent)

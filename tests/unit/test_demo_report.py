"""sandbox.demo.report: the demo's verdict (what the OMS holds against the API) and its report."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sandbox.demo.report import (
    DeliveryView,
    Figures,
    Outcome,
    Parked,
    Row,
    by_label,
    compare,
    oms_view,
    parse_metrics,
    render_summary,
    render_table,
    total,
    verdict,
)

MALFORMED = "not json {"
SHIPPED = DeliveryView("IN_TRANSIT", None, "1Z1", "UPS", (("li-1", 2), ("li-2", 1)))
DELIVERED = replace(SHIPPED, state="DELIVERED")
CANCELLED = DeliveryView("CANCELLED", "CUSTOMER_REQUESTED", None, None, (("li-1", 1),))
A, B = ("322-1", "d-1"), ("322-2", "d-1")


def body(view: DeliveryView, order_id: str = "322-1", delivery_id: str = "d-1") -> dict[str, Any]:
    tracking = None
    if view.tracking_number or view.carrier_code:
        tracking = {"trackingNumber": view.tracking_number, "carrierCode": view.carrier_code}
    return {
        "orderId": order_id,
        "deliveryId": delivery_id,
        "state": view.state,
        "reason": view.reason,
        "tracking": tracking,
        "lineItems": [{"lineItemId": li, "quantity": q} for li, q in reversed(view.line_items)],
    }


def outcome(rows: list[Row], **changes: Any) -> Outcome:
    good = Outcome(
        rows=rows,
        repeated_keys=0,
        parked=[Parked("malformed", "body is not JSON", MALFORMED)],
        malformed_body=MALFORMED,
        queue_left=(0, 0),
    )
    return replace(good, **changes)


@pytest.mark.parametrize("view", [SHIPPED, DELIVERED, CANCELLED])
def test_an_oms_body_reads_as_the_view_it_was_built_from(view: DeliveryView) -> None:
    # line items arrive in any order; the view sorts them
    assert oms_view(body(view)) == view


def test_when_the_oms_holds_the_apis_state_the_verdict_is_clean() -> None:
    rows = compare({A: DELIVERED, B: CANCELLED}, {A: DELIVERED, B: CANCELLED})
    assert [r.ok for r in rows] == [True, True]
    assert verdict(outcome(rows)) == []


@pytest.mark.parametrize(
    ("oms", "problem"),
    [
        (SHIPPED, "state"),
        (replace(DELIVERED, tracking_number="1Z2"), "tracking number"),
        (replace(DELIVERED, carrier_code="DHL"), "carrier code"),
        (replace(DELIVERED, reason="UNDELIVERABLE"), "reason"),
        (replace(DELIVERED, line_items=(("li-1", 2),)), "line items"),
        (replace(DELIVERED, line_items=(("li-1", 3), ("li-2", 1))), "line items"),
        (None, "never pushed"),
    ],
)
def test_a_delivery_the_oms_holds_wrongly_fails_the_verdict(
    oms: DeliveryView | None, problem: str
) -> None:
    # Given the API shows the delivery DELIVERED and the OMS holds something else
    rows = compare({A: DELIVERED}, {A: oms} if oms is not None else {})
    # Then the row names what differs and the verdict fails on it
    [row] = rows
    assert row.problems == [problem]
    assert verdict(outcome(rows)) == [f"322-1/d-1: OMS differs from the API ({problem})"]


def test_a_pending_delivery_the_oms_never_heard_of_is_right() -> None:
    # No event announces PENDING, so the OMS rightly knows nothing of it.
    pending = DeliveryView("PENDING", line_items=(("li-1", 1),))
    rows = compare({A: pending}, {})
    assert rows[0].ok
    assert verdict(outcome(rows)) == []


def test_a_delivery_only_the_oms_knows_fails_the_verdict() -> None:
    rows = compare({}, {A: DELIVERED})
    assert rows[0].problems == ["unknown to the API"]
    assert verdict(outcome(rows)) != []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"repeated_keys": 2}, "the OMS got 2 push(es) with a repeated key"),
        ({"parked": []}, "the malformed message is not in the DLQ with kind 'malformed'"),
        (
            {"parked": [Parked("conflict", "why", MALFORMED)]},
            "the malformed message is not in the DLQ with kind 'malformed'",
        ),
        (
            {"parked": [Parked("malformed", "why", "another body")]},
            "the malformed message is not in the DLQ with kind 'malformed'",
        ),
        ({"queue_left": (1, 0)}, "the queue is not empty (1 visible, 0 in flight)"),
        ({"queue_left": (0, 3)}, "the queue is not empty (0 visible, 3 in flight)"),
    ],
)
def test_each_broken_promise_fails_the_verdict_with_its_reason(
    changes: dict[str, Any], reason: str
) -> None:
    rows = compare({A: DELIVERED}, {A: DELIVERED})
    assert verdict(outcome(rows, **changes)) == [reason]


def test_every_reason_is_reported_not_just_the_first() -> None:
    rows = compare({A: DELIVERED, B: CANCELLED}, {A: SHIPPED})
    reasons = verdict(outcome(rows, repeated_keys=1, queue_left=(2, 0)))
    assert len(reasons) == 4


METRICS = """\
# HELP bwp_messages_received_total SQS messages received
# TYPE bwp_messages_received_total counter
bwp_messages_received_total 33.0
bwp_messages_received_created 1.7e+09
# HELP bwp_messages_parked_total Messages parked in the DLQ
# TYPE bwp_messages_parked_total counter
bwp_messages_parked_total{kind="malformed"} 1.0
bwp_messages_parked_total{kind="conflict"} 0.0
# HELP bwp_unsupported_events_total Well-formed events of other detail-types
# TYPE bwp_unsupported_events_total counter
bwp_unsupported_events_total{detail_type="ORDER_CONFIRMED"} 2.0
"""


def test_the_pollers_counters_are_read_from_the_exposition_text() -> None:
    samples = parse_metrics(METRICS)
    assert total(samples, "bwp_messages_received_total") == 33
    assert total(samples, "bwp_duplicates_total") == 0  # absent: nothing counted
    assert by_label(samples, "bwp_messages_parked_total", "kind") == {"malformed": 1}
    assert by_label(samples, "bwp_unsupported_events_total", "detail_type") == {
        "ORDER_CONFIRMED": 2
    }


def test_the_summary_shows_the_figures_and_why_messages_were_parked() -> None:
    figures = Figures(
        sent={"from the API's subscriptions": 27, "malformed": 1},
        order_api_calls=9,
        oms_pushes=9,
        repeated_keys=0,
        parked=[Parked("malformed", "body is not JSON: JSONDecodeError", MALFORMED)],
        poller=parse_metrics(METRICS),
    )
    text = "\n".join(render_summary(figures))
    assert "events sent                28  (27 from the API's subscriptions, 1 malformed)" in text
    assert "received by the poller     33" in text
    assert "unsupported, acknowledged  2  (2 ORDER_CONFIRMED)" in text
    assert "OMS pushes                 9  (0 with a repeated key)" in text
    assert "malformed: body is not JSON: JSONDecodeError" in text


def test_the_summary_says_so_when_the_metrics_did_not_answer() -> None:
    figures = Figures(sent={}, order_api_calls=0, oms_pushes=0, repeated_keys=0, parked=[])
    assert any("did not answer" in line for line in render_summary(figures))


def test_the_table_marks_each_delivery_right_or_wrong() -> None:
    rows = compare({A: DELIVERED, B: CANCELLED}, {A: DELIVERED, B: SHIPPED})
    header, right, wrong = render_table(rows)
    assert header.split() == ["order", "delivery", "line", "items", "order", "API", "OMS"]
    assert right.endswith("✓")
    assert "DELIVERED 1Z1 UPS" in right
    assert "li-1 x2 li-2 x1" in right
    assert "CANCELLED (CUSTOMER_REQUESTED)" in wrong
    assert wrong.endswith("✗ state, reason, tracking number, carrier code, line items")

"""tasks.delivery.snapshot: delivery snapshots read from the order object, and fingerprints."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.delivery.snapshot import UnknownValue, extract_snapshots, read_order
from tasks.errors import PermanentApiError
from tasks.events.catalog import DeliveryState
from tasks.model.snapshot import LineItem, Snapshot, Tracking

from .orders import (
    ALL_VERSIONS,
    NEW_VERSION,
    OLD_VERSIONS,
    detail,
    detail_2024_01,
    detail_2024_11,
    holds,
    line_item,
    order,
    order_with_details,
)

BP = "bp-123"


def snapshots(order_obj: dict[str, Any], api_version: str = NEW_VERSION) -> dict[str, Snapshot]:
    return extract_snapshots(order_obj, business_product_id=BP, api_version=api_version)


def one(order_obj: dict[str, Any], api_version: str = NEW_VERSION) -> Snapshot:
    found = snapshots(order_obj, api_version)
    assert len(found) == 1
    return next(iter(found.values()))


# --- 2024-11-01 ----------------------------------------------------------------------


def test_new_generation_delivery_reads_package_tracker() -> None:
    # Given a 2024-11-01 order with one line item in one delivery
    response = order(
        "o-1", line_item("li-1", [detail_2024_11("d-1", state="IN_TRANSIT")], quantity=2)
    )
    # When the snapshots are extracted
    found = snapshots(response, NEW_VERSION)
    # Then the delivery carries the line item, its quantity and the tracker's fields
    assert found == {
        "d-1": Snapshot(
            business_product_id=BP,
            order_id="o-1",
            delivery_id="d-1",
            state=DeliveryState.IN_TRANSIT,
            reason=None,
            line_items=(LineItem("li-1", 2),),
            tracking=Tracking(
                carrier_code="UPS",
                tracking_number="1Z999AA10123456784",
                tracking_url="https://track.example/1Z999AA10123456784",
                milestone="IN_TRANSIT",
                estimated_earliest="2024-06-03T00:00:00Z",
                estimated_latest="2024-06-05T00:00:00Z",
            ),
        )
    }


@pytest.mark.parametrize(
    "tracker",
    [
        pytest.param(None, id="tracker-null"),
        pytest.param({}, id="tracker-empty"),
        pytest.param({"packageTrackerIdentifier": None}, id="identifier-null"),
        pytest.param(
            {
                "packageTrackerIdentifier": {"trackingNumber": None, "carrierCode": None},
                "trackingUrl": "https://track.example/x",
            },
            id="url-without-number-or-carrier",
        ),
    ],
)
def test_new_generation_tracking_is_null_without_number_and_carrier(
    tracker: dict[str, Any] | None,
) -> None:
    d = detail_2024_11("d-1", state="PENDING")
    d["packageTracker"] = tracker
    assert one(order("o-1", line_item("li-1", [d]))).tracking is None


@pytest.mark.parametrize(
    ("number", "carrier"), [("1Z9", None), (None, "UPS")], ids=["number-only", "carrier-only"]
)
def test_new_generation_tracking_appears_with_number_or_carrier(
    number: str | None, carrier: str | None
) -> None:
    d = detail_2024_11("d-1", number=number, carrier=carrier, milestone=None, url=None)
    tracking = one(order("o-1", line_item("li-1", [d]))).tracking
    assert tracking is not None
    assert (tracking.tracking_number, tracking.carrier_code) == (number, carrier)
    assert tracking.milestone is None
    assert tracking.tracking_url is None


def test_new_generation_tracker_without_milestone_or_estimate() -> None:
    d = detail_2024_11("d-1")
    d["packageTracker"]["latestMilestone"] = None
    d["packageTracker"]["estimatedDeliveryDate"] = None
    tracking = one(order("o-1", line_item("li-1", [d]))).tracking
    assert tracking is not None
    assert tracking.milestone is None
    assert (tracking.estimated_earliest, tracking.estimated_latest) == (None, None)


# --- 2024-01-01 / 2024-04-01 -----------------------------------------------------------


@pytest.mark.parametrize("api_version", OLD_VERSIONS)
def test_old_generation_delivery_reads_tracking_details(api_version: str) -> None:
    # Given a 2024-01-01 / 2024-04-01 order
    response = order(
        "o-1",
        line_item(
            "li-1",
            [detail_2024_01("d-1", state="DELIVERED", estimate="2024-06-03T00:00:00Z")],
            api_version=api_version,
            quantity=3,
        ),
    )
    # When the snapshots are extracted
    snap = one(response, api_version)
    # Then trackingId becomes the tracking number and the one estimate spans the window
    assert snap.state is DeliveryState.DELIVERED
    assert snap.line_items == (LineItem("li-1", 3),)
    assert snap.tracking == Tracking(
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        tracking_url=None,
        milestone=None,
        estimated_earliest="2024-06-03T00:00:00Z",
        estimated_latest="2024-06-03T00:00:00Z",
    )


@pytest.mark.parametrize("api_version", OLD_VERSIONS)
@pytest.mark.parametrize(
    "tracking_details",
    [None, {}, {"trackingId": None, "carrierCode": None}],
    ids=["null", "empty", "both-null"],
)
def test_old_generation_tracking_is_null_without_number_and_carrier(
    api_version: str, tracking_details: dict[str, Any] | None
) -> None:
    d = detail_2024_01("d-1", state="PENDING")
    d["trackingDetails"] = tracking_details
    response = order("o-1", line_item("li-1", [d], api_version=api_version))
    assert one(response, api_version).tracking is None


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_the_other_generation_shape_holds_no_delivery(api_version: str) -> None:
    # The API version selects which key is read; the other generation's key is ignored.
    other = OLD_VERSIONS[0] if api_version == NEW_VERSION else NEW_VERSION
    response = order("o-1", line_item("li-1", [detail(other, "d-1")], api_version=other))
    assert snapshots(response, api_version) == {}


# --- gathering -----------------------------------------------------------------------


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_line_items_sharing_a_delivery_are_gathered_and_sorted(api_version: str) -> None:
    # Given three line items, listed out of order, in one delivery
    shared = detail(api_version, "d-1", state="IN_TRANSIT")
    response = order(
        "o-1",
        line_item("li-c", [shared], api_version=api_version, quantity=1),
        line_item("li-a", [shared], api_version=api_version, quantity=2),
        line_item("li-b", [shared], api_version=api_version, quantity=None),
    )
    # When the snapshots are extracted
    snap = one(response, api_version)
    # Then the one delivery holds all three, sorted by line item id
    assert snap.line_items == (LineItem("li-a", 2), LineItem("li-b", None), LineItem("li-c", 1))


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_order_with_two_deliveries_gives_two_snapshots(api_version: str) -> None:
    # Given one line item split over two deliveries and another in the second one, and
    # no detail saying what each delivery holds
    first = detail(api_version, "d-1", state="DELIVERED")
    second = detail(api_version, "d-2", state="IN_TRANSIT", number="2Z", carrier="FEDEX")
    response = order(
        "o-1",
        line_item("li-1", [first, second], api_version=api_version),
        line_item("li-2", [second], api_version=api_version, quantity=4),
    )
    # When the snapshots are extracted
    found = snapshots(response, api_version)
    # Then each delivery has its own state, tracking and line items
    assert set(found) == {"d-1", "d-2"}
    assert found["d-1"].state is DeliveryState.DELIVERED
    # (the split line item's units in each delivery are unknown: null, not the total)
    assert found["d-1"].line_items == (LineItem("li-1", None),)
    assert found["d-2"].state is DeliveryState.IN_TRANSIT
    assert found["d-2"].line_items == (LineItem("li-1", None), LineItem("li-2", 4))
    assert found["d-2"].tracking is not None
    assert found["d-2"].tracking.carrier_code == "FEDEX"
    assert found["d-2"].tracking.tracking_number == "2Z"
    assert {s.order_id for s in found.values()} == {"o-1"}
    assert {s.business_product_id for s in found.values()} == {BP}


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(line_item("li-1", [detail_2024_11()], quantity=None), id="value-null"),
        pytest.param(line_item("li-1", [detail_2024_11()], amount=None), id="amount-null"),
        pytest.param(line_item("li-1", [detail_2024_11()], amount={"unit": "ONE"}), id="no-value"),
    ],
)
def test_quantity_is_null_when_the_amount_is_missing(item: dict[str, Any]) -> None:
    assert one(order("o-1", item)).line_items == (LineItem("li-1", None),)


def test_line_item_without_amount_key_has_null_quantity() -> None:
    item = line_item("li-1", [detail_2024_11()])
    del item["amount"]
    assert one(order("o-1", item)).line_items == (LineItem("li-1", None),)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(order("o-1"), id="no-line-items"),
        pytest.param({"id": "o-1", "lineItems": None}, id="line-items-null"),
        pytest.param(order("o-1", line_item("li-1", [])), id="no-details"),
        pytest.param(
            order("o-1", {"id": "li-1", "packageInformation": None}), id="information-null"
        ),
        pytest.param(
            order("o-1", {"id": "li-1", "packageInformation": {"details": None}}),
            id="details-null",
        ),
    ],
)
def test_order_without_delivery_details_has_no_snapshots(response: dict[str, Any]) -> None:
    assert snapshots(response) == {}


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("PENDING", None),
        ("IN_TRANSIT", None),
        ("DELIVERED", None),
        ("CANCELLED", "CUSTOMER_REQUESTED"),
        ("CANCELLED", "UNFULFILLABLE"),
        ("CANCELLED", "UNDELIVERABLE"),
    ],
)
def test_every_documented_state_and_reason_is_read(state: str, reason: str | None) -> None:
    snap = one(order("o-1", line_item("li-1", [detail_2024_11(state=state, reason=reason)])))
    assert snap.state is DeliveryState(state)
    assert snap.reason == reason


def test_snapshot_rank_follows_its_state() -> None:
    ranks = [
        one(order("o-1", line_item("li-1", [detail_2024_11(state=s)]))).rank
        for s in ("PENDING", "IN_TRANSIT", "DELIVERED", "CANCELLED")
    ]
    assert ranks[0] < ranks[1] < ranks[2] == ranks[3]


# --- malformed responses -------------------------------------------------------------


def _with_detail(**fields: Any) -> dict[str, Any]:
    d = detail_2024_11("d-1")
    d.update(fields)
    return order("o-1", line_item("li-1", [d]))


def _with_tracker(**fields: Any) -> dict[str, Any]:
    d = detail_2024_11("d-1")
    d["packageTracker"].update(fields)
    return order("o-1", line_item("li-1", [d]))


MALFORMED = [
    pytest.param([], id="order-is-a-list"),
    pytest.param("o-1", id="order-is-a-string"),
    pytest.param({"lineItems": []}, id="order-without-id"),
    pytest.param({"id": 7, "lineItems": []}, id="order-id-number"),
    pytest.param({"id": "o-1", "lineItems": {"li-1": {}}}, id="line-items-object"),
    pytest.param(order("o-1", "li-1"), id="line-item-string"),  # type: ignore[arg-type]
    pytest.param(order("o-1", {"packageInformation": {"details": []}}), id="line-item-no-id"),
    pytest.param(order("o-1", {"id": "", "packageInformation": None}), id="line-item-empty-id"),
    pytest.param(order("o-1", {"id": "li-1", "packageInformation": []}), id="information-list"),
    pytest.param(
        order("o-1", {"id": "li-1", "packageInformation": {"details": {"id": "d"}}}),
        id="details-object",
    ),
    pytest.param(order("o-1", line_item("li-1", ["d-1"])), id="detail-string"),  # type: ignore[list-item]
    pytest.param(_with_detail(id=None), id="detail-without-id"),
    pytest.param(_with_detail(id=""), id="detail-empty-id"),
    pytest.param(_with_detail(id=9), id="detail-id-number"),
    pytest.param(_with_detail(state="SHIPPED"), id="unknown-state"),
    pytest.param(_with_detail(state=None), id="state-null"),
    pytest.param(_with_detail(state="delivered"), id="state-lower-case"),
    pytest.param(_with_detail(reason="LOST_IN_SPACE"), id="unknown-reason"),
    pytest.param(_with_detail(reason=3), id="reason-number"),
    pytest.param(_with_detail(packageTracker="1Z9"), id="tracker-string"),
    pytest.param(_with_tracker(packageTrackerIdentifier=["1Z9"]), id="identifier-list"),
    pytest.param(
        _with_tracker(packageTrackerIdentifier={"trackingNumber": 123}), id="number-not-string"
    ),
    pytest.param(
        _with_tracker(packageTrackerIdentifier={"carrierCode": ["UPS"]}), id="carrier-not-string"
    ),
    pytest.param(_with_tracker(trackingUrl=1), id="url-not-string"),
    pytest.param(_with_tracker(latestMilestone={"status": "IN_TRANSIT"}), id="status-string"),
    pytest.param(_with_tracker(latestMilestone={"status": {"code": 5}}), id="code-not-string"),
    pytest.param(_with_tracker(estimatedDeliveryDate="2024-06-03"), id="estimate-string"),
    pytest.param(_with_tracker(estimatedDeliveryDate={"earliest": 1}), id="earliest-number"),
    pytest.param(
        order("o-1", line_item("li-1", [detail_2024_11()], amount="2")), id="amount-string"
    ),
    pytest.param(
        order("o-1", line_item("li-1", [detail_2024_11()], quantity=-1)), id="quantity-negative"
    ),
    pytest.param(
        order("o-1", line_item("li-1", [detail_2024_11()], amount={"value": "2"})),
        id="quantity-string",
    ),
    pytest.param(
        order("o-1", line_item("li-1", [detail_2024_11()], amount={"value": True})),
        id="quantity-boolean",
    ),
]


@pytest.mark.parametrize("response", MALFORMED)
def test_response_without_the_documented_shape_is_a_permanent_api_error(response: Any) -> None:
    with pytest.raises(PermanentApiError, match="order response"):
        snapshots(response, NEW_VERSION)


@pytest.mark.parametrize(
    "tracking_details",
    [
        pytest.param("1Z9", id="details-string"),
        pytest.param({"trackingId": 5}, id="tracking-id-number"),
        pytest.param({"carrierCode": {"code": "UPS"}}, id="carrier-object"),
    ],
)
def test_old_generation_malformed_tracking_is_a_permanent_api_error(
    tracking_details: Any,
) -> None:
    d = detail_2024_01("d-1")
    d["trackingDetails"] = tracking_details
    response = order("o-1", line_item("li-1", [d], api_version="2024-01-01"))
    with pytest.raises(PermanentApiError):
        snapshots(response, "2024-01-01")


def test_old_generation_estimate_must_be_a_string() -> None:
    response = order(
        "o-1",
        line_item("li-1", [detail_2024_01(estimate=20240603)], api_version="2024-01-01"),  # type: ignore[arg-type]
    )
    with pytest.raises(PermanentApiError):
        snapshots(response, "2024-01-01")


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "infinity"])
def test_non_finite_quantity_is_a_permanent_api_error(value: float) -> None:
    # httpx's response.json() accepts NaN and Infinity literals, so such values can arrive.
    response = order("o-1", line_item("li-1", [detail_2024_11()], amount={"value": value}))
    with pytest.raises(PermanentApiError):
        snapshots(response)


# --- fingerprints --------------------------------------------------------------------


def _key(response: dict[str, Any], api_version: str = NEW_VERSION) -> str:
    return one(response, api_version).idempotency_key


def _base(**detail_fields: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"state": "IN_TRANSIT"} | detail_fields
    shared = detail_2024_11("d-1", **fields)
    return order(
        "o-1",
        line_item("li-1", [shared], quantity=1),
        line_item("li-2", [shared], quantity=2),
    )


def test_fingerprint_is_a_stable_hex_digest() -> None:
    # Given two separately built, equal responses
    first, second = _key(_base()), _key(_base())
    # Then the fingerprint is the same, a 64-character hex digest (the schema allows 16-128)
    assert first == second
    assert len(first) == 64
    assert set(first) <= set("0123456789abcdef")


def test_fingerprint_is_stable_under_line_item_order() -> None:
    # Given the same delivery with its line items listed in another order
    response = _base()
    shuffled = copy.deepcopy(response)
    shuffled["lineItems"].reverse()
    # Then the fingerprint does not change
    assert _key(shuffled) == _key(response)


def test_fingerprint_ignores_fields_outside_the_delivery() -> None:
    # Given the same delivery read a second time, with the line items' units and the
    # milestone's occurrence time formatted differently (not part of the snapshot)
    response = _base()
    reread = copy.deepcopy(response)
    for item in reread["lineItems"]:
        item["amount"]["unit"] = "EACH"
        tracker = item["packageInformation"]["details"][0]["packageTracker"]
        tracker["latestMilestone"]["occurredAt"] = "2024-06-01T10:00:00+02:00"
    # Then the fingerprint does not change
    assert _key(reread) == _key(response)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"state": "DELIVERED"}, id="state"),
        pytest.param({"state": "CANCELLED"}, id="state-cancelled"),
        pytest.param({"reason": "UNDELIVERABLE"}, id="reason"),
        pytest.param({"number": "1Z000"}, id="tracking-number"),
        pytest.param({"carrier": "FEDEX"}, id="carrier"),
        pytest.param({"url": "https://track.example/other"}, id="url"),
        pytest.param({"milestone": "OUT_FOR_DELIVERY"}, id="milestone"),
        pytest.param({"earliest": "2024-06-04T00:00:00Z"}, id="estimate-earliest"),
        pytest.param({"latest": "2024-06-06T00:00:00Z"}, id="estimate-latest"),
        pytest.param({"number": None, "carrier": None}, id="tracking-gone"),
    ],
)
def test_fingerprint_changes_when_delivery_content_changes(change: dict[str, Any]) -> None:
    assert _key(_base(**change)) != _key(_base())


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda o: o["lineItems"][0]["amount"].update(value=5), id="quantity"),
        pytest.param(lambda o: o["lineItems"][0]["amount"].update(value=None), id="quantity-null"),
        pytest.param(lambda o: o["lineItems"].pop(), id="line-item-removed"),
        pytest.param(lambda o: o["lineItems"][1].update(id="li-9"), id="line-item-id"),
        pytest.param(lambda o: o.update(id="o-2"), id="order-id"),
    ],
)
def test_fingerprint_changes_when_line_items_change(edit: Any) -> None:
    response = _base()
    changed = copy.deepcopy(response)
    edit(changed)
    assert _key(changed) != _key(response)


@pytest.mark.parametrize("api_version", OLD_VERSIONS)
def test_old_generation_fingerprint_changes_with_the_estimate(api_version: str) -> None:
    def response(estimate: str) -> dict[str, Any]:
        d = detail_2024_01("d-1", estimate=estimate)
        return order("o-1", line_item("li-1", [d], api_version=api_version))

    assert _key(response("2024-06-03T00:00:00Z"), api_version) != _key(
        response("2024-06-04T00:00:00Z"), api_version
    )


def test_fingerprint_differs_between_deliveries_with_identical_content() -> None:
    # Given one line item in two deliveries that look exactly alike
    response = order(
        "o-1", line_item("li-1", [detail_2024_11("d-1"), detail_2024_11("d-2")], quantity=1)
    )
    # Then their fingerprints differ: the OMS must not merge them
    found = snapshots(response)
    assert found["d-1"].idempotency_key != found["d-2"].idempotency_key


def test_fingerprint_is_the_same_for_both_old_generations() -> None:
    # 2024-01-01 and 2024-04-01 share one shape, so one delivery reads the same in both.
    d = detail_2024_01("d-1")
    keys = {_key(order("o-1", line_item("li-1", [d], api_version=v)), v) for v in OLD_VERSIONS}
    assert len(keys) == 1


# --- properties ----------------------------------------------------------------------

delivery_ids = st.sampled_from(["d-1", "d-2", "d-3", "d-4"])
contents = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["PENDING", "IN_TRANSIT", "DELIVERED", "CANCELLED"]),
        "number": st.one_of(st.none(), st.text(max_size=8)),
        "carrier": st.one_of(st.none(), st.sampled_from(["UPS", "USPS", "FEDEX"])),
        "milestone": st.one_of(st.none(), st.sampled_from(["IN_TRANSIT", "DELAYED"])),
    }
)


@st.composite
def orders_with_deliveries(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """An order whose line items sit in some deliveries; each delivery reads the same on
    every line item. Also the expected line item ids of each delivery."""
    content = draw(st.dictionaries(delivery_ids, contents, min_size=1))
    item_ids = draw(st.lists(st.from_regex(r"li-[0-9]{1,3}", fullmatch=True), unique=True))
    items, expected = [], {}
    for item_id in item_ids:
        chosen = draw(st.lists(st.sampled_from(sorted(content)), unique=True, max_size=3))
        details = [detail_2024_11(d, **content[d]) for d in chosen]
        quantity = draw(st.one_of(st.none(), st.integers(0, 10)))
        items.append(line_item(item_id, details, quantity=quantity))
        for d in chosen:
            expected.setdefault(d, set()).add(item_id)
    return order("o-1", *items), expected


@settings(max_examples=150, deadline=None)
@given(case=orders_with_deliveries(), seed=st.integers())
def test_snapshots_gather_every_line_item_of_every_delivery(
    case: tuple[dict[str, Any], dict[str, set[str]]], seed: int
) -> None:
    response, expected = case
    # When the snapshots are extracted
    found = snapshots(response)
    # Then there is one per delivery, holding exactly its line items, sorted
    assert set(found) == set(expected)
    for delivery_id, snap in found.items():
        ids = [li.line_item_id for li in snap.line_items]
        assert ids == sorted(expected[delivery_id])
    # And listing the line items in any other order changes no fingerprint
    shuffled = copy.deepcopy(response)
    random.Random(seed).shuffle(shuffled["lineItems"])
    assert {d: s.idempotency_key for d, s in snapshots(shuffled).items()} == {
        d: s.idempotency_key for d, s in found.items()
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "state",
                    "reason",
                    "lineItems",
                    "amount",
                    "value",
                    "packageInformation",
                    "details",
                    "packageTracker",
                    "packageTrackerIdentifier",
                    "trackingNumber",
                    "carrierCode",
                    "latestMilestone",
                    "status",
                    "code",
                    "estimatedDeliveryDate",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(response=json_values, api_version=st.sampled_from(ALL_VERSIONS))
def test_any_response_gives_snapshots_or_a_permanent_api_error(
    response: Any, api_version: str
) -> None:
    try:
        found = extract_snapshots(response, business_product_id=BP, api_version=api_version)
    except PermanentApiError:
        return
    assert all(isinstance(s, Snapshot) and s.delivery_id == d for d, s in found.items())


# --- what each delivery holds (…DetailsFor) ------------------------------------------


def _split_order(api_version: str, in_transit_units: int = 2) -> dict[str, Any]:
    """3 x li-1 ordered: 1 unit CANCELLED (UNFULFILLABLE) in d-1, the rest IN_TRANSIT in
    d-2 together with li-2 (buy-with-prime-api.md section 4's example)."""
    cancelled = detail(api_version, "d-1", state="CANCELLED", reason="UNFULFILLABLE")
    moving = detail(api_version, "d-2", state="IN_TRANSIT")
    link_1, link_2 = {"id": "d-1"}, {"id": "d-2"}
    return order_with_details(
        api_version,
        "o-split",
        [
            line_item("li-1", [link_1, link_2], api_version=api_version, quantity=3),
            line_item("li-2", [link_2], api_version=api_version, quantity=5),
        ],
        [
            {**cancelled, **holds(api_version, ("li-1", 1))},
            {**moving, **holds(api_version, ("li-1", in_transit_units), ("li-2", 5))},
        ],
    )


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_a_split_line_item_sends_each_deliverys_own_units(api_version: str) -> None:
    # Given 3 units of li-1 ordered, 1 cancelled in d-1 and 2 in transit in d-2
    response = _split_order(api_version)
    # When the snapshots are extracted
    found = snapshots(response, api_version)
    # Then each delivery carries only its own units, not the ordered 3
    assert found["d-1"].state is DeliveryState.CANCELLED
    assert found["d-1"].reason == "UNFULFILLABLE"
    assert found["d-1"].line_items == (LineItem("li-1", 1),)
    assert found["d-2"].state is DeliveryState.IN_TRANSIT
    assert found["d-2"].line_items == (LineItem("li-1", 2), LineItem("li-2", 5))


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_the_fingerprint_changes_when_a_deliverys_units_change(api_version: str) -> None:
    before = snapshots(_split_order(api_version, in_transit_units=2), api_version)
    after = snapshots(_split_order(api_version, in_transit_units=1), api_version)
    assert before["d-2"].idempotency_key != after["d-2"].idempotency_key
    assert before["d-1"].idempotency_key == after["d-1"].idempotency_key


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_details_for_on_a_line_items_listing_is_read_too(api_version: str) -> None:
    # Given no order-level information, but the line item's listing says what d-1 holds
    listing = {**detail(api_version, "d-1"), **holds(api_version, ("li-1", 2))}
    response = order("o-1", line_item("li-1", [listing], api_version=api_version, quantity=7))
    # Then the delivery's own units win over the ordered amount
    assert one(response, api_version).line_items == (LineItem("li-1", 2),)


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
def test_without_details_for_a_line_item_in_one_delivery_sends_its_ordered_amount(
    api_version: str,
) -> None:
    # Given order-level details without …DetailsFor (an API that omits it)
    response = order_with_details(
        api_version,
        "o-1",
        [line_item("li-1", [{"id": "d-1"}], api_version=api_version, quantity=3)],
        [detail(api_version, "d-1")],
    )
    # Then the fallback is the line items listing the delivery, with their ordered amount
    assert one(response, api_version).line_items == (LineItem("li-1", 3),)


def test_a_details_for_entry_without_amount_has_null_quantity() -> None:
    listing = {**detail_2024_11("d-1"), **holds(NEW_VERSION, ("li-1", None))}
    response = order_with_details(
        NEW_VERSION, "o-1", [line_item("li-1", [{"id": "d-1"}], quantity=3)], [listing]
    )
    assert one(response).line_items == (LineItem("li-1", None),)


@pytest.mark.parametrize(
    "holder",
    [
        pytest.param({"packageInformationDetailsFor": []}, id="details-for-list"),
        pytest.param({"packageInformationDetailsFor": {"orderLineItems": {}}}, id="items-object"),
        pytest.param(
            {"packageInformationDetailsFor": {"orderLineItems": [{"lineItem": {}}]}},
            id="item-without-id",
        ),
        pytest.param(
            {
                "packageInformationDetailsFor": {
                    "orderLineItems": [{"lineItem": {"id": "li-1"}, "amount": {"value": -1}}]
                }
            },
            id="negative-units",
        ),
    ],
)
def test_a_malformed_details_for_is_a_permanent_api_error(holder: dict[str, Any]) -> None:
    response = order_with_details(NEW_VERSION, "o-1", [], [{**detail_2024_11("d-1"), **holder}])
    with pytest.raises(PermanentApiError):
        snapshots(response)


# --- siblings with values the worker does not know ------------------------------------


@pytest.mark.parametrize("api_version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "odd", [{"state": "RETURNED_TO_MARS"}, {"state": "CANCELLED", "reason": "METEOR"}]
)
def test_a_sibling_with_an_unknown_value_is_skipped_not_fatal(
    api_version: str, odd: dict[str, str]
) -> None:
    # Given d-1 reads normally and its sibling d-2 holds a value the worker does not know
    response = order(
        "o-1",
        line_item("li-1", [detail(api_version, "d-1")], api_version=api_version),
        line_item("li-2", [detail(api_version, "d-2", **odd)], api_version=api_version),
    )
    # When only d-1 must parse
    read = read_order(response, business_product_id=BP, api_version=api_version, strict={"d-1"})
    # Then d-1 is there and d-2 is reported as skipped
    assert set(read.snapshots) == {"d-1"}
    assert set(read.skipped) == {"d-2"}
    # But when d-2 is the event's own delivery, the unknown value is an error
    with pytest.raises(UnknownValue):
        read_order(response, business_product_id=BP, api_version=api_version, strict={"d-2"})

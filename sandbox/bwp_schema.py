"""The sandbox order API's GraphQL schemas, one per API generation, and their resolvers.

Generation "2024-01" serves x-api-version 2024-01-01 and 2024-04-01 (``deliveryInformation``
with ``trackingDetails``); generation "2024-11" serves 2024-11-01 (``packageInformation``
with ``packageTracker``). Only documented fields exist, so a query for any other field
fails validation. Sandbox choices where the docs are silent:

- ``amount`` is null when the line item has no quantity, else ``{unit: ONE, value}``; a
  line item's ``amount`` is what was ordered (its units over every delivery), and each
  detail's ``…DetailsFor.orderLineItems`` lists the line items and units that delivery
  holds (the shape buy-with-prime-api.md section 4 assumes).
- ``trackingDetails`` / ``packageTracker`` are null while a delivery has neither a
  tracking number nor a carrier.
- 2024-01's ``estimatedDeliveryDate`` is the latest estimate (else the earliest).
- Mutations have the documented shape (``sandbox.bwp_mutations`` says what each may do):
  ``updateOrderPackageInformation(orderIdentifier: {orderId}, input: {packageInformation:
  {details: [{id, packageState: {packageInformationState: {state reason}} |
  {packageTrackerState: {...}}}]}})`` and ``updateOrderDeliveryInformation(input:
  {orderId, details: [{id, deliveryInformationState | packageTrackerState}]})``, each
  returning ``{ order }``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Protocol

from graphql import GraphQLResolveInfo, GraphQLSchema, build_schema

from sandbox.bwp_errors import api_error
from sandbox.bwp_mutations import changes_of, move_of
from sandbox.bwp_store import MILESTONES, Delivery, Order, OrderStore

GENERATIONS: Final[dict[str, str]] = {
    "2024-01-01": "2024-01",
    "2024-04-01": "2024-01",
    "2024-11-01": "2024-11",
}

_COMMON = """
schema { query: Query mutation: Mutation }
type Query { order(orderIdentifier: OrderIdentifierInput!): Order }
input OrderIdentifierInput { orderId: String! }
enum DeliveryState { PENDING IN_TRANSIT DELIVERED CANCELLED }
enum CancellationReason { CUSTOMER_REQUESTED UNFULFILLABLE UNDELIVERABLE }
enum AmountUnit { ONE }
type Amount { unit: AmountUnit! value: Int }
type OrderLineItem { lineItem: LineItemReference! amount: Amount }
type LineItemReference { id: String! }
type DetailsFor { orderLineItems: [OrderLineItem!]! }
enum MilestoneCode { MILESTONE_CODES }
input PackageTrackerIdentifierInput { trackingNumber: String! carrierCode: String! }
input PackageTrackerStateInput {
  packageTrackerIdentifier: PackageTrackerIdentifierInput!
  status: MilestoneCode
  trackingUrl: String
}
""".replace("MILESTONE_CODES", " ".join(sorted(MILESTONES)))

_SDL_2024_01 = """
type Mutation {
  updateOrderDeliveryInformation(
    input: UpdateOrderDeliveryInformationInput!
  ): UpdateOrderDeliveryInformationResponse
}
input UpdateOrderDeliveryInformationInput {
  orderId: String! details: [DeliveryInformationDetailsInput!]!
}
input DeliveryInformationDetailsInput {
  id: String!
  deliveryInformationState: DeliveryInformationStateInput
  packageTrackerState: PackageTrackerStateInput
}
input DeliveryInformationStateInput { state: DeliveryState! reason: CancellationReason }
type UpdateOrderDeliveryInformationResponse { order: Order }
type Order { id: String! lineItems: [LineItem!]! deliveryInformation: DeliveryInformation }
type LineItem { id: String! amount: Amount deliveryInformation: DeliveryInformation }
type DeliveryInformation { details: [DeliveryDetail!]! }
type DeliveryDetail {
  id: String! state: DeliveryState! reason: CancellationReason
  deliveryInformationDetailsFor: DetailsFor
  estimatedDeliveryDate: String trackingDetails: TrackingDetails
}
type TrackingDetails { trackingId: String carrierCode: String }
"""

_SDL_2024_11 = """
type Mutation {
  updateOrderPackageInformation(
    orderIdentifier: OrderIdentifierInput!, input: UpdateOrderPackageInformationInput!
  ): UpdateOrderPackageInformationResponse
}
input UpdateOrderPackageInformationInput { packageInformation: PackageInformationInput! }
input PackageInformationInput { details: [PackageInformationDetailsInput!]! }
input PackageInformationDetailsInput { id: String! packageState: PackageStateInput! }
input PackageStateInput {
  packageInformationState: PackageInformationStateInput
  packageTrackerState: PackageTrackerStateInput
}
input PackageInformationStateInput { state: DeliveryState! reason: CancellationReason }
type UpdateOrderPackageInformationResponse { order: Order }
type Order { id: String! lineItems: [LineItem!]! packageInformation: PackageInformation }
type LineItem { id: String! amount: Amount packageInformation: PackageInformation }
type PackageInformation { details: [PackageDetail!]! }
type PackageDetail {
  id: String! state: DeliveryState! reason: CancellationReason
  packageInformationDetailsFor: DetailsFor packageTracker: PackageTracker
}
type PackageTracker {
  packageTrackerIdentifier: PackageTrackerIdentifier
  estimatedDeliveryDate: EstimatedDeliveryDate
  latestMilestone: Milestone
  trackingUrl: String
}
type PackageTrackerIdentifier { trackingNumber: String carrierCode: String }
type EstimatedDeliveryDate { earliest: String latest: String }
type Milestone { status: MilestoneStatus! occurredAt: String }
type MilestoneStatus { code: MilestoneCode! }
"""


@cache
def schema_for(generation: str) -> GraphQLSchema:
    """The schema of ``generation`` ("2024-01" or "2024-11"); KeyError for others."""
    sdl = {"2024-01": _SDL_2024_01, "2024-11": _SDL_2024_11}[generation]
    return build_schema(_COMMON + sdl)


class Backend(Protocol):
    """What the resolvers need from the sandbox API."""

    @property
    def store(self) -> OrderStore: ...

    def move(
        self, order_id: str, delivery_id: str, state: str | None, **changes: str | None
    ) -> Delivery: ...


@dataclass(frozen=True)
class Context:
    backend: Backend
    generation: str
    target_id: str | None


def _amount(units: int | None) -> dict[str, Any] | None:
    return None if units is None else {"unit": "ONE", "value": units}


def _holds(order: Order, delivery_id: str) -> dict[str, Any]:
    """The line items and units one delivery holds (its placements)."""
    return {
        "orderLineItems": [
            {"lineItem": {"id": li.id}, "amount": _amount(li.quantity)}
            for li in order.line_items
            if li.delivery_id == delivery_id
        ]
    }


def _ordered(order: Order) -> dict[str, int | None]:
    """Each line item's ordered units: the sum of its placements (null if any is)."""
    totals: dict[str, int | None] = {}
    for li in order.line_items:
        before = totals.get(li.id, 0)
        totals[li.id] = None if before is None or li.quantity is None else before + li.quantity
    return totals


def _detail_2024_01(d: Delivery) -> dict[str, Any]:
    tracked = d.tracking_number is not None or d.carrier_code is not None
    return {
        "id": d.id,
        "state": d.state,
        "reason": d.reason,
        "estimatedDeliveryDate": d.estimated_latest or d.estimated_earliest,
        "trackingDetails": (
            {"trackingId": d.tracking_number, "carrierCode": d.carrier_code} if tracked else None
        ),
    }


def _detail_2024_11(d: Delivery) -> dict[str, Any]:
    tracker = None
    if d.tracking_number is not None or d.carrier_code is not None:
        has_estimate = d.estimated_earliest is not None or d.estimated_latest is not None
        tracker = {
            "packageTrackerIdentifier": {
                "trackingNumber": d.tracking_number,
                "carrierCode": d.carrier_code,
            },
            "estimatedDeliveryDate": (
                {"earliest": d.estimated_earliest, "latest": d.estimated_latest}
                if has_estimate
                else None
            ),
            "latestMilestone": (
                {"status": {"code": d.milestone}, "occurredAt": d.milestone_at}
                if d.milestone is not None
                else None
            ),
            "trackingUrl": d.tracking_url,
        }
    return {"id": d.id, "state": d.state, "reason": d.reason, "packageTracker": tracker}


_SHAPES: Final = {
    "2024-01": ("deliveryInformation", _detail_2024_01),
    "2024-11": ("packageInformation", _detail_2024_11),
}


def order_data(order: Order, generation: str) -> dict[str, Any]:
    """``order`` as the query of ``generation`` returns it (before field selection)."""
    info_field, detail = _SHAPES[generation]
    for_field = f"{info_field}DetailsFor"

    def listed(delivery_id: str) -> dict[str, Any]:
        return {**detail(order.deliveries[delivery_id]), for_field: _holds(order, delivery_id)}

    line_items = [
        {
            "id": item_id,
            "amount": _amount(units),
            info_field: {
                "details": [
                    listed(delivery_id)
                    for delivery_id in dict.fromkeys(
                        li.delivery_id for li in order.line_items if li.id == item_id
                    )
                ]
            },
        }
        for item_id, units in _ordered(order).items()
    ]
    every = [listed(delivery_id) for delivery_id in order.deliveries]
    return {"id": order.id, "lineItems": line_items, info_field: {"details": every}}


def _visible_order(context: Context, order_id: str) -> Order:
    order = context.backend.store.get_order(order_id)
    if order is None:
        raise api_error("not_found", f"Order {order_id} not found")
    if order.business_product_id != context.target_id:
        raise api_error("access_denied", f"Access denied to order {order_id}")
    return order


def _resolve_order(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    context = info.context
    return order_data(
        _visible_order(context, args["orderIdentifier"]["orderId"]), context.generation
    )


def _resolve_update(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    """A documented sandbox mutation: every detail is checked before any is applied."""
    context = info.context
    order_id, changes = changes_of(context.generation, args)
    order = _visible_order(context, order_id)
    moves = []
    for change in changes:
        delivery = order.deliveries.get(change.delivery_id)
        if delivery is None:
            raise api_error("not_found", f"Package {change.delivery_id} not found")
        moves.append((change.delivery_id, move_of(delivery, change)))
    for delivery_id, move in moves:
        fields = {name: value for name, value in move.items() if name != "state"}
        context.backend.move(order.id, delivery_id, move["state"], **fields)
    return {"order": order_data(_visible_order(context, order.id), context.generation)}


#: root value for execution: graphql-core's default resolver calls these with (info, **args)
ROOT: Final[dict[str, Any]] = {
    "order": _resolve_order,
    "updateOrderDeliveryInformation": _resolve_update,
    "updateOrderPackageInformation": _resolve_update,
}

"""Publish the events Buy with Prime would send when a delivery moves, into an SQS queue.

Each SQS message body is the whole EventBridge event (no input transformer), one event
per message. A merchant subscribed to several twin detail-types gets one event per
subscribed twin, each with its own id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from tasks.events.catalog import DELIVERY_EVENTS, MILESTONE_EVENT, TWINS, DeliveryState
from tasks.events.samples import build_event, to_body

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_SUBSCRIPTIONS: Final = (
    "PACKAGE_DELIVERY_IN_TRANSIT",
    "PACKAGE_DELIVERED",
    "PACKAGE_DELIVERY_CANCELLED",
    MILESTONE_EVENT,
)


class Publisher(Protocol):
    def __call__(
        self, business_product_id: str, order_id: str, delivery_id: str, state: str
    ) -> object: ...


class MilestonePublisher(Protocol):
    def __call__(
        self, business_product_id: str, carrier_code: str, tracking_number: str
    ) -> object: ...


class SqsPublisher:
    """Sends delivery events for the subscribed detail-types to ``queue_url``.

    Raises ValueError for a subscription outside the delivery family and the milestone.
    """

    def __init__(
        self,
        sqs_client: SQSClient,
        queue_url: str,
        subscriptions: Sequence[str] = DEFAULT_SUBSCRIPTIONS,
    ) -> None:
        unknown = set(subscriptions) - DELIVERY_EVENTS.keys() - {MILESTONE_EVENT}
        if unknown:
            raise ValueError(f"not delivery-family detail-types: {sorted(unknown)}")
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._subscriptions = frozenset(subscriptions)

    def publish(
        self, business_product_id: str, order_id: str, delivery_id: str, state: str
    ) -> list[dict[str, Any]]:
        """Send one event per subscribed twin that implies ``state``; return the events.

        PENDING (and any state no event announces) sends nothing.
        """
        twins = TWINS.get(DeliveryState(state), ())
        events = [
            build_event(
                detail_type,
                business_product_id=business_product_id,
                order_id=order_id,
                delivery_id=delivery_id,
            )
            for detail_type in twins
            if detail_type in self._subscriptions
        ]
        for event in events:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=to_body(event))
        return events

    def publish_milestone(
        self, business_product_id: str, carrier_code: str, tracking_number: str
    ) -> list[dict[str, Any]]:
        """Send PACKAGE_TRACKER_MILESTONE_CHANGED for the tracker when subscribed."""
        if MILESTONE_EVENT not in self._subscriptions:
            return []
        event = build_event(
            MILESTONE_EVENT,
            business_product_id=business_product_id,
            tracker=(carrier_code, tracking_number),
        )
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=to_body(event))
        return [event]

    __call__ = publish

"""A delivery snapshot: what one delivery of an order looks like right now. Pure values.

``Snapshot.idempotency_key`` is the content fingerprint that the OMS sees as
``Idempotency-Key``; ``tasks.delivery.snapshot`` reads snapshots from an order response.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from tasks.events.catalog import DeliveryState, rank


@dataclass(frozen=True, slots=True)
class Tracking:
    carrier_code: str | None
    tracking_number: str | None
    tracking_url: str | None
    milestone: str | None
    estimated_earliest: str | None
    estimated_latest: str | None


@dataclass(frozen=True, slots=True)
class LineItem:
    line_item_id: str
    quantity: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    business_product_id: str
    order_id: str
    delivery_id: str
    state: DeliveryState
    reason: str | None
    line_items: tuple[LineItem, ...]
    tracking: Tracking | None

    @property
    def rank(self) -> int:
        return rank(self.state)

    @property
    def idempotency_key(self) -> str:
        """Fingerprint of the delivery's identity and content, never of time or attempt.

        It changes exactly when state, reason, line items, quantities or tracking change,
        and differs between deliveries, so the OMS can use it as an idempotency key.
        """
        content = asdict(self)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

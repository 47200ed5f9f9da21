"""The tracker index: carrier + tracking number → the delivery it belongs to.

A PACKAGE_TRACKER_MILESTONE_CHANGED event may name only ``carrier/<code>/tracker/<number>``;
this index, written whenever a push carries a tracking number, lets the milestone's task
find the delivery to re-sync. One hash per tracker, expiring after ``TRACKER_TTL_SECONDS``
(a tracker is refreshed by every push that carries it). A sync writes it in the same round
trip that records its push (``entry``, then tasks.ledger.scripts.deliveries.FINISH); reconciliation
and a milestone's own order query write it again (``remember``), so an index lost with
Redis comes back from the deliveries the worker reads.

Carrier codes are compared case-insensitively: events say ``ups`` where the API says
``UPS``, so the key holds the lower-case code.
"""

from __future__ import annotations

import redis

from tasks.events.resources import is_valid_id
from tasks.keys import DeliveryRef, Keys
from tasks.redis_outage import guarded, text


class Trackers:
    """Raises LedgerUnavailable when Redis is unreachable."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: int) -> None:
        self._r, self._keys, self._ttl = client, keys, ttl

    @property
    def ttl(self) -> int:
        return self._ttl

    def entry(self, ref: DeliveryRef, carrier_code: str | None, tracking_number: str) -> str | None:
        """The tracker's key, or None when a part is not id-like (no milestone event could
        ever name such a tracker, so it is not indexed)."""
        parts = (ref.business_product_id, (carrier_code or "").lower(), tracking_number)
        if not all(is_valid_id(part) for part in parts):
            return None
        return self._keys.tracker(*parts)

    def remember(self, ref: DeliveryRef, carrier_code: str | None, tracking_number: str) -> bool:
        """Point the tracker at ``ref`` now (one MULTI: the hash and its TTL together);
        False when the tracker cannot be indexed."""
        key = self.entry(ref, carrier_code, tracking_number)
        if key is None:
            return False
        fields = ["bp", ref.business_product_id, "order", ref.order_id, "delivery", ref.delivery_id]

        def write() -> None:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, items=fields)
                pipe.expire(key, self._ttl)
                pipe.execute()

        guarded(write)
        return True

    def lookup(
        self, business_product_id: str, carrier_code: str, tracking_number: str
    ) -> DeliveryRef | None:
        """The delivery the tracker was last pushed with, or None for a tracker never seen."""
        key = self._keys.tracker(business_product_id, carrier_code.lower(), tracking_number)
        bp, order, delivery = guarded(lambda: self._r.hmget(key, "bp", "order", "delivery"))
        if bp is None or order is None or delivery is None:
            return None
        return DeliveryRef(text(bp), text(order), text(delivery))

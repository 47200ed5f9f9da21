"""Every Redis key the worker writes, in one place. All live under one prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    business_product_id: str
    order_id: str
    delivery_id: str

    def __str__(self) -> str:
        return f"{self.business_product_id}/{self.order_id}/{self.delivery_id}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "bwp:"

    def event(self, dedup_key: str) -> str:
        """Hash: the dedup ledger record of one event (state, hash, body, times)."""
        return f"{self.prefix}evt:{dedup_key}"

    @property
    def queued_index(self) -> str:
        """Sorted set: dedup keys in state `queued`, scored by when they may be swept."""
        return f"{self.prefix}queued"

    def delivery(self, ref: DeliveryRef) -> str:
        """Hash: what was last pushed to the OMS for one delivery (fingerprint, rank)."""
        return f"{self.prefix}dlv:{ref}"

    def delivery_lock(self, ref: DeliveryRef) -> str:
        return f"{self.prefix}lock:dlv:{ref}"

    def tracker(self, business_product_id: str, carrier_code: str, tracking_number: str) -> str:
        """Hash: the delivery a carrier's tracker belongs to (milestone events name only
        the tracker). Only id-like parts are indexed, so "/" cannot make two keys collide."""
        return f"{self.prefix}trk:{business_product_id}/{carrier_code}/{tracking_number}"

    def milestone(self, business_product_id: str, carrier_code: str, tracking_number: str) -> str:
        """Hash: when a milestone of this tracker last began an order query, and the start
        of the latest one that finished (milestone coalescing, tasks.ledger.milestones)."""
        return f"{self.prefix}ms:{business_product_id}/{carrier_code}/{tracking_number}"

    def milestone_arrival(self, dedup_key: str) -> str:
        """String: when a milestone event's task first ran (survives its retries)."""
        return f"{self.prefix}msarr:{dedup_key}"

    @property
    def token(self) -> str:
        """String: the shared OAuth access token, expiring before the token does."""
        return f"{self.prefix}token"

    @property
    def token_lock(self) -> str:
        return f"{self.prefix}lock:token"

    @property
    def open_deliveries(self) -> str:
        """Sorted set: non-terminal deliveries seen, scored by last sync (reconciliation)."""
        return f"{self.prefix}open"

    @property
    def job_runs(self) -> str:
        """Hash: when each scheduled job last ran (job name → unix time)."""
        return f"{self.prefix}jobs"

    @property
    def circuits(self) -> str:
        """Hash: each dependency's circuit (``oms``: open/closed, ``oms:opens``, ...)."""
        return f"{self.prefix}circuits"

    def circuit_probe(self, dependency: str) -> str:
        """String: the one probe slot per probe interval of an open circuit."""
        return f"{self.prefix}circuit-probe:{dependency}"

    @property
    def api_rate(self) -> str:
        return f"{self.prefix}rate:api"

    @property
    def api_rate_milestones(self) -> str:
        """The milestone queries' own limiter: their share of the API budget."""
        return f"{self.prefix}rate:api:milestones"

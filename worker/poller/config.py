"""The poller's own configuration, derived from Settings by the runner."""

from __future__ import annotations

from dataclasses import dataclass

from config.clients import SQS_CONTROL_WORST_SECONDS
from tasks.events.envelope import MAX_DELIVERIES_PER_EVENT


@dataclass(frozen=True, slots=True)
class PollerConfig:
    queue_url: str
    wait_seconds: int = 20
    visibility_timeout: int = 60
    park_unsupported: bool = False
    max_queue_depth: int = 0
    #: the most messages one poller holds unsettled; intake pauses at this mark
    max_held: int = 5000
    #: seconds between settling ticks (one Redis round trip for everything held)
    settle_interval: float = 1.0
    #: seconds to wait after a failed receive or an unreachable Redis
    error_backoff: float = 2.0
    #: longest pause between probes of an unreachable Redis or broker
    max_backoff: float = 30.0
    #: seconds between repeated "Redis is down" log lines
    outage_log_interval: float = 30.0
    #: how long a stopping poller waits past its long poll for the receive to come back
    shutdown_grace: float = 5.0
    #: the most body bytes one poller holds; intake pauses at this mark
    max_held_bytes: int = 256 * 1024 * 1024
    #: a `queued` event nobody took, while the Celery queue is empty, is re-dispatched
    #: once it stayed so this long (worker/poller/settle.py)
    orphan_grace: float = 10.0
    #: re-dispatches of a lost task's event before it is parked as retries-exhausted
    max_redispatches: int = 5
    #: order/delivery pairs one event may name (MAX_DELIVERIES_PER_EVENT)
    max_deliveries: int = MAX_DELIVERIES_PER_EVENT

    @property
    def extend_margin(self) -> float:
        """Extend a held message's visibility when this little of it is left: a third of
        it, and at least the longest an SQS call on the loop's thread can take plus a tick
        (up to two thirds of the visibility timeout, below which it cannot be covered)."""
        cover = SQS_CONTROL_WORST_SECONDS + self.settle_interval
        return max(self.visibility_timeout / 3, min(cover, self.visibility_timeout * 2 / 3))

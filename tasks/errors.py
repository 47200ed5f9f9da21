"""The project's exception tree. Every error says whether a retry can help.

    BwpError
    ├── RetryableError            a later attempt may succeed
    │   ├── ApiUnavailable        order API throttled, 5xx, timeout, connection error
    │   ├── OrderNotVisibleYet    order or delivery not found (yet): an event can race it
    │   ├── OmsUnavailable        OMS 408/425/429/5xx, timeout, connection error
    │   ├── LedgerUnavailable     Redis unreachable
    │   ├── DeadLetterUnavailable the DLQ did not take a message to park
    │   ├── ApiBehindEvent        the order API does not show the event's state yet
    │   ├── DeliveryBusy          another worker holds the delivery's lock
    │   ├── DependencyDown        a dependency's circuit is open: wait, spend no budget
    │   ├── TrackerUnknownYet     a milestone's tracker is on no known delivery (yet)
    │   └── MilestoneDeferred     the tracker's delivery was queried moments ago: wait
    └── PermanentError            retrying cannot help: park the event
        ├── MalformedEvent        the SQS body is not a delivery event we can read
        ├── PermanentApiError     order API validation / access denied / not found for good
        │   └── ApiAccessDenied   order API AccessDeniedError (a missing permission)
        └── PermanentOmsError     OMS answered another 4xx

Adapters translate library errors into these with ``raise ... from exc``.
"""

from __future__ import annotations


class BwpError(Exception):
    """Root of every error the worker raises on purpose."""

    retryable: bool = False
    #: the dead-letter kind used when this error parks an event
    dlq_kind: str = "retries-exhausted"


class RetryableError(BwpError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: seconds the other side asked us to wait (Retry-After), when it said
        self.retry_after = retry_after


class ApiUnavailable(RetryableError):
    pass


class OrderNotVisibleYet(RetryableError):
    dlq_kind = "permanent-api-error"


class OmsUnavailable(RetryableError):
    pass


class LedgerUnavailable(RetryableError):
    pass


class DeliveryBusy(RetryableError):
    pass


class DeadLetterUnavailable(RetryableError):
    pass


class ApiBehindEvent(RetryableError):
    """The API shows less than the event announced: an earlier state, or CANCELLED for a
    DELIVERED event (or the other way round). A read lag: nothing is pushed and the event
    stays open; retried within the event's budget, then parked (a replay finishes it).
    """


class DependencyDown(RetryableError):
    """A dependency's circuit is open (an outage for everyone, not this event's failure):
    the task waits without calling it and without spending its retry budget."""

    def __init__(self, dependency: str, retry_after: float) -> None:
        super().__init__(f"{dependency} is down (circuit open)", retry_after=retry_after)
        self.dependency = dependency


class TrackerUnknownYet(RetryableError):
    """A milestone names a tracker no known delivery carries yet: its IN_TRANSIT event (which
    indexes the tracker) may still be on the way. Retried for a bounded time, then the
    event is acknowledged and counted, not parked (tasks.delivery.task_retry)."""


class MilestoneDeferred(RetryableError):
    """The tracker's delivery was queried moments ago: this milestone waits out the window
    (``retry_after``), then either a query that began after it arrived covers it, or it
    queries (tasks.ledger.milestones)."""


class PermanentError(BwpError):
    retryable = False


class MalformedEvent(PermanentError):
    dlq_kind = "malformed"


class PermanentApiError(PermanentError):
    dlq_kind = "permanent-api-error"


class ApiAccessDenied(PermanentApiError):
    """The order API answered AccessDeniedError: the credentials lack a permission (or
    BWP_TARGET_ID names another business product)."""


class PermanentOmsError(PermanentError):
    dlq_kind = "permanent-oms-error"

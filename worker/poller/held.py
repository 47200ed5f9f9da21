"""The messages a poller holds: received, handed off, not yet settled (design.md section 3.1).

Plain data, no I/O: the poller decides from it what to delete, extend or hand back. A
message is held from its hand-off until its event is `done` or parked; its visibility is
extended before it runs out, up to SQS's 12-hour cap on a message's time in flight (past
that it is let go, comes back, and is held again without running again).

Held messages are keyed by SQS MessageId. SQS delivers at least once: the same message
can be received again with a new receipt handle (a duplicate delivery, or its visibility
lapsed). That is the same message, not a copy: its new receipt replaces the old one, which
SQS no longer honours. Only another MessageId carrying the same event is a copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tasks.ledger.events import ClaimRequest

#: SQS's cap on a message's total time in flight
MAX_IN_FLIGHT_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Suspect:
    """A `queued` event nobody holds while the Celery queue was empty, first seen at
    ``since`` with ``takes`` takes: lost on its way to a worker if it stays so."""

    takes: int
    since: float


@dataclass(slots=True)
class Held:
    message_id: str
    receipt: str
    request: ClaimRequest
    body: str
    #: when SQS makes the message visible again unless extended
    visible_at: float
    #: when this receipt was received (the 12-hour cap counts from here)
    received_at: float
    #: when its event was last handed to the broker by this poller (or it was taken held)
    dispatched_at: float = 0.0
    suspect: Suspect | None = None


class HeldMessages:
    """Held messages by MessageId; several messages (copies) of one event may be held."""

    def __init__(self) -> None:
        self._by_id: dict[str, Held] = {}
        #: body bytes held (the poller's memory for held messages)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, held: Held) -> None:
        self.drop([held.message_id])
        self._by_id[held.message_id] = held
        self.bytes += len(held.body)

    def get(self, message_id: str) -> Held | None:
        return self._by_id.get(message_id)

    def received_again(self, message_id: str, receipt: str, now: float, visibility: int) -> bool:
        """The held message ``message_id`` came again with ``receipt``: only that receipt
        is valid now. False when it is not held."""
        held = self._by_id.get(message_id)
        if held is None:
            return False
        held.receipt, held.received_at, held.visible_at = receipt, now, now + visibility
        return True

    def drop(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            held = self._by_id.pop(message_id, None)
            if held is not None:
                self.bytes -= len(held.body)

    def all(self) -> list[Held]:
        return list(self._by_id.values())

    def dedup_keys(self) -> list[str]:
        return sorted({h.request.dedup_key for h in self._by_id.values()})

    def with_keys(self, dedup_keys: Iterable[str]) -> list[Held]:
        wanted = set(dedup_keys)
        return [h for h in self._by_id.values() if h.request.dedup_key in wanted]

    def due(self, now: float, margin: float, visibility: int) -> tuple[list[Held], list[Held]]:
        """(to extend by ``visibility``, to let go): those whose visibility ends within
        ``margin``. One that an extension would carry past the 12-hour cap is let go: it
        comes back as a new receipt and is held again."""
        extend: list[Held] = []
        let_go: list[Held] = []
        for held in self._by_id.values():
            if held.visible_at - now > margin:
                continue
            if now + visibility - held.received_at >= MAX_IN_FLIGHT_SECONDS:
                let_go.append(held)
            else:
                extend.append(held)
        return extend, let_go

    def extended(self, helds: Sequence[Held], until: float) -> None:
        for held in helds:
            held.visible_at = until

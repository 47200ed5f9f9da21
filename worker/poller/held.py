"""The messages a poller holds: received, handed off, not yet settled (design.md section 3.1).

Plain data, no I/O: the poller decides from it what to delete, extend or hand back. A
message is held from its hand-off until its event is `done` or parked; its visibility is
extended before it runs out, up to SQS's 12-hour cap on a message's time in flight (past
that it is let go, comes back, and is held again without running again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tasks.ledger.events import ClaimRequest

#: SQS's cap on a message's total time in flight
MAX_IN_FLIGHT_SECONDS = 12 * 3600


@dataclass(slots=True)
class Held:
    receipt: str
    request: ClaimRequest
    body: str
    #: when SQS makes the message visible again unless extended
    visible_at: float
    #: when this receipt was received (the 12-hour cap counts from here)
    received_at: float


class HeldMessages:
    """Held messages by receipt handle; several copies of one event may be held."""

    def __init__(self) -> None:
        self._by_receipt: dict[str, Held] = {}

    def __len__(self) -> int:
        return len(self._by_receipt)

    def add(self, held: Held) -> None:
        self._by_receipt[held.receipt] = held

    def drop(self, receipts: Iterable[str]) -> None:
        for receipt in receipts:
            self._by_receipt.pop(receipt, None)

    def all(self) -> list[Held]:
        return list(self._by_receipt.values())

    def dedup_keys(self) -> list[str]:
        return sorted({h.request.dedup_key for h in self._by_receipt.values()})

    def with_keys(self, dedup_keys: Iterable[str]) -> list[Held]:
        wanted = set(dedup_keys)
        return [h for h in self._by_receipt.values() if h.request.dedup_key in wanted]

    def due(self, now: float, margin: float, visibility: int) -> tuple[list[Held], list[Held]]:
        """(to extend by ``visibility``, to let go): those whose visibility ends within
        ``margin``. One that an extension would carry past the 12-hour cap is let go: it
        comes back as a new receipt and is held again."""
        extend: list[Held] = []
        let_go: list[Held] = []
        for held in self._by_receipt.values():
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

"""Settled messages on their way out of SQS, in full batches of ten (one DeleteMessageBatch).

A settled message may wait up to ``DELETE_LINGER`` for batch mates: it is settled, and if
it came back meanwhile the ledger would know it as done. It waits only while mates may
come: when the poller holds nothing and no batch arrived lately, it goes at once.
Plain logic over a clock; the poller supplies the SQS call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tasks.sqs.batches import MAX_ENTRIES

#: seconds a settled message may wait for batch mates before it is deleted alone
DELETE_LINGER = 0.5
#: seconds without a received batch after which no batch mates are expected
QUIET_AFTER = 0.1


class PendingDeletes:
    def __init__(
        self,
        delete: Callable[[Sequence[str]], list[str]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``delete(receipts)`` deletes and returns the receipts it could not delete."""
        self._delete, self._clock = delete, clock
        self._receipts: list[str] = []
        self._since = 0.0

    def __len__(self) -> int:
        return len(self._receipts)

    def add(self, receipts: Sequence[str]) -> None:
        if receipts and not self._receipts:
            self._since = self._clock()
        self._receipts += receipts

    def flush(self, *, quiet_since: float | None = None, force: bool = False) -> list[str]:
        """Delete the full batches, or everything when ``force``d, when it has lingered
        long enough, or when the poller has been quiet (holds nothing, received nothing)
        since ``quiet_since``. Returns the receipts SQS did not delete."""
        now = self._clock()
        quiet = quiet_since is not None and now - quiet_since >= QUIET_AFTER
        everything = force or quiet or now - self._since >= DELETE_LINGER
        waiting = len(self._receipts)
        count = waiting if everything else waiting - waiting % MAX_ENTRIES
        if not count:
            return []
        batch, self._receipts = self._receipts[:count], self._receipts[count:]
        self._since = now
        return self._delete(batch)

"""The sync task's call: its one declaration of the task's arguments. Pure.

Every publisher (the poller's dispatch, the sweep, the task's own retries) takes the
arguments from ``SyncCall``, and the task (tasks/jobs.py) takes its fields as parameters,
in this order (tests/unit/test_publish.py holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.publish.names import SYNC_TASK


@dataclass(frozen=True, slots=True)
class SyncCall:
    """One call of the sync task: the event's body and dedup key, and on a retry the
    failures and busy waits so far."""

    body: str
    dedup_key: str
    failures: int = 0
    busy: int = 0

    name: ClassVar[str] = SYNC_TASK

    @property
    def args(self) -> tuple[str, str]:
        return (self.body, self.dedup_key)

    @property
    def kwargs(self) -> dict[str, int]:
        """The counters, when either is not 0; else none (the task's defaults: a first
        attempt, or a retry that only waited out an outage)."""
        if not self.failures and not self.busy:
            return {}
        return {"failures": self.failures, "busy": self.busy}

    @property
    def argsrepr(self) -> str:
        """What Flower and Celery's logs show of the arguments: the body's size, never the
        body (a few KB of an event; Celery's default would show its first 1 KiB)."""
        return f"['<event body, {len(self.body)} characters>', {self.dedup_key!r}]"

    @property
    def kwargsrepr(self) -> str:
        """Celery's own repr of these (a few ints), without its size-bounded repr's cost."""
        return repr(self.kwargs)

    @staticmethod
    def dedup_key_in(args: object) -> str | None:
        """The dedup key in a received task's positional arguments; None when they are not
        a sync call's."""
        if isinstance(args, list | tuple) and len(args) >= 2:
            return str(args[1])
        return None

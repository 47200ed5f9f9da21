"""Feed a phase of the stream into the queue and wait until the consumer is through it.

moto's receive cost grows with queue depth, so the saturating feed keeps at most
``window`` messages in the queue (visible + in flight, polled every 50 ms): the consumer
always finds work, and the emulator works at a shallow depth. The paced feed sends one
message every ``1/rate`` seconds (open loop), for latency at a known load. Either way the
send time of each envelope id is recorded (the first send, for a redelivered copy).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox.sqs import sqs_client

POLL_SECONDS = 0.05
BATCH = 10  # SendMessageBatch's limit


@dataclass(frozen=True)
class Phase:
    started: float  # wall clock of the first send
    ended: float  # wall clock at which the end was seen
    timed_out: bool
    max_depth: int

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Feeder:
    def __init__(self, sqs_url: str, queue_url: str) -> None:
        self._sqs = sqs_client(sqs_url)
        self._queue_url = queue_url
        #: envelope id -> wall clock of its first send
        self.sent_at: dict[str, float] = {}

    def close(self) -> None:
        self._sqs.close()

    def depth(self) -> int:
        attrs = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def _send(self, bodies: Sequence[tuple[str, str]]) -> None:
        now = time.time()
        for event_id, _ in bodies:
            self.sent_at.setdefault(event_id, now)
        if len(bodies) == 1:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=bodies[0][1])
            return
        entries = [{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(bodies)]
        reply = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)  # type: ignore[arg-type]
        if reply.get("Failed"):
            raise RuntimeError(f"send_message_batch failed: {reply['Failed']}")

    def phase(
        self,
        bodies: Sequence[str],
        done: Callable[[], bool],
        *,
        window: int = 30,
        rate: float | None = None,
        timeout: float = 300.0,
    ) -> Phase:
        """Send ``bodies``, then wait until the queue is empty and ``done()`` is true."""
        pending = deque((json.loads(body)["id"], body) for body in bodies)
        started = time.time()
        sent, depth, max_depth, next_poll = 0, 0, 0, 0.0
        while pending:
            now = time.time()
            if now - started > timeout:
                return Phase(started, now, True, max_depth)
            if rate is not None:
                due = started + sent / rate
                if now < due:
                    time.sleep(min(due - now, POLL_SECONDS))
                    continue
                batch = [pending.popleft()]
            else:
                if now >= next_poll:
                    depth, next_poll = self.depth(), now + POLL_SECONDS
                    max_depth = max(max_depth, depth)
                room = min(window - depth, BATCH, len(pending))
                if room < min(BATCH, len(pending)):
                    time.sleep(0.005)
                    continue
                batch = [pending.popleft() for _ in range(room)]
            self._send(batch)
            sent, depth = sent + len(batch), depth + len(batch)
        while True:
            now = time.time()
            if now - started > timeout:
                return Phase(started, now, True, max_depth)
            if self.depth() == 0 and done():
                return Phase(started, now, False, max_depth)
            time.sleep(POLL_SECONDS)

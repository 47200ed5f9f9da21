"""The delivery lock against a real Redis: a short TTL renewed by its live holder, and a
fenced finish that writes only for the lock's holder and never lowers the rank."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from tasks.errors import DeliveryBusy
from tasks.keys import DeliveryRef, Keys
from tasks.ledger.deliveries import DeliveryStates, Record
from tasks.ledger.keeper import Keeper
from tasks.model.pushed import Pushed

REF = DeliveryRef("bp", "322-LOCK-1", "d-1")


def states(client: redis.Redis, prefix: str, *, lock_ttl: float = 0.6) -> DeliveryStates:
    return DeliveryStates(
        client,
        Keys(prefix),
        state_ttl=3600,
        done_ttl=3600,
        lock_ttl=lock_ttl,
        lock_wait=0.0,
        longest_sync=30,
    )


def test_a_live_holder_keeps_its_lock_long_past_the_ttl(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a lock with a 0.6 s TTL held by a sync that takes 2 s
    deliveries = states(redis_client, key_prefix)
    lease = deliveries.begin(REF)
    assert lease is not None
    time.sleep(2.0)
    # Then nobody else could take it meanwhile, and the holder still holds it
    with pytest.raises(DeliveryBusy):
        states(redis_client, key_prefix).begin(REF)
    assert lease.still_held()
    # ... in a renewal every third of the TTL, one round trip for all kept locks
    assert 2 <= deliveries.keeper.rounds <= 12
    deliveries.finish(lease, record=Record(Pushed("fp-1", 1), "IN_TRANSIT", terminal=False))
    assert deliveries.last_pushed(REF) == Pushed("fp-1", 1)


def test_a_finish_after_the_lock_was_lost_writes_nothing(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a holder whose lock expired (its process stalled) and was taken by another
    slow = states(redis_client, key_prefix, lock_ttl=0.3)
    stale = slow.begin(REF)
    assert stale is not None
    slow.keeper.release(stale.hold)  # type: ignore[arg-type]  # the stalled watchdog
    time.sleep(0.5)
    fresh_side = states(redis_client, key_prefix)
    fresh = fresh_side.begin(REF)
    assert fresh is not None
    assert not stale.still_held()
    # When the stale holder finishes with an older snapshot
    with pytest.raises(DeliveryBusy):
        slow.finish(stale, record=Record(Pushed("old", 1), "IN_TRANSIT", terminal=False))
    # Then nothing was recorded, and the new holder's finish goes through
    assert slow.last_pushed(REF) is None
    fresh_side.finish(fresh, record=Record(Pushed("new", 2), "DELIVERED", terminal=True))
    assert slow.last_pushed(REF) == Pushed("new", 2)


def test_the_recorded_rank_never_goes_down(redis_client: redis.Redis, key_prefix: str) -> None:
    deliveries = states(redis_client, key_prefix)
    deliveries.record_push(REF, Pushed("delivered", 2), "DELIVERED", terminal=True)
    deliveries.record_push(REF, Pushed("in-transit", 1), "IN_TRANSIT", terminal=False)
    assert deliveries.last_pushed(REF) == Pushed("delivered", 2)


class BusyRedis:
    """A Redis stand-in that answers every command as a Redis stuck in a long script
    does: ``-BUSY``. redis-py raises it as a plain ResponseError."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        self.commands = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                self.commands += 1
                conn.sendall(b"-BUSY Redis is busy running a script.\r\n")

    def close(self) -> None:
        self._server.close()


def test_the_keeper_thread_survives_a_busy_redis_and_the_lease_is_lost() -> None:
    # Given a lock kept while Redis answers BUSY to everything (a script past its limit)
    busy = BusyRedis()
    client = redis.Redis.from_url(busy.url)
    keeper = Keeper(client, 0.3)
    hold = keeper.keep("lock:dlv:bp/322/d-1", "token", longest=30)
    # When several renewal rounds fail
    time.sleep(1.0)
    # Then the keeper thread is alive and still trying, and the hold is no longer held
    assert keeper._thread is not None and keeper._thread.is_alive()
    assert keeper.rounds >= 3
    assert not hold.held(time.monotonic())
    assert not keeper.confirm(hold)
    keeper.release(hold)
    client.close()
    busy.close()

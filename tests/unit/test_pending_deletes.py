"""Settled messages leave SQS in full batches of ten, and never wait when no mates come."""

from __future__ import annotations

from collections.abc import Sequence

from worker.poller.deletes import DELETE_LINGER, QUIET_AFTER, PendingDeletes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rig() -> tuple[PendingDeletes, list[list[str]], Clock]:
    calls: list[list[str]] = []
    clock = Clock()

    def delete(receipts: Sequence[str]) -> list[str]:
        calls.append(list(receipts))
        return []

    return PendingDeletes(delete, clock=clock), calls, clock


def test_full_batches_go_at_once_and_the_rest_waits_for_mates() -> None:
    deletes, calls, clock = rig()
    deletes.add([f"r{i}" for i in range(13)])
    deletes.flush()
    assert [len(c) for c in calls] == [10]
    assert len(deletes) == 3
    # still within the linger, mates may come
    clock.now += DELETE_LINGER / 2
    deletes.flush()
    assert len(calls) == 1


def test_a_partial_batch_goes_once_it_has_lingered() -> None:
    deletes, calls, clock = rig()
    deletes.add(["a", "b"])
    clock.now += DELETE_LINGER
    deletes.flush()
    assert calls == [["a", "b"]]
    assert len(deletes) == 0


def test_a_partial_batch_goes_at_once_when_the_poller_is_quiet() -> None:
    deletes, calls, clock = rig()
    last_batch_at = clock.now
    deletes.add(["a"])
    # the batch that brought it arrived just now: mates may follow
    deletes.flush(quiet_since=last_batch_at)
    assert calls == []
    # nothing held and nothing received since: no mates are coming
    clock.now += QUIET_AFTER
    deletes.flush(quiet_since=last_batch_at)
    assert calls == [["a"]]


def test_force_deletes_everything_and_failures_are_returned() -> None:
    calls: list[list[str]] = []

    def delete(receipts: Sequence[str]) -> list[str]:
        calls.append(list(receipts))
        return [receipts[0]]

    deletes = PendingDeletes(delete, clock=Clock())
    deletes.add(["a", "b"])
    assert deletes.flush(force=True) == ["a"]
    assert calls == [["a", "b"]]
    assert deletes.flush(force=True) == []

"""``bwp-worker replay-dlq`` against moto's SQS server: only the selected kinds move, bodies
arrive unchanged and unlabelled, the rest stays in the DLQ visible, and the run ends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.sqs import SqsServer
from tasks.sqs.dlq import DeadLetters, Parcel
from tests.integration.test_ops_support import bwp_worker
from worker.ops.replay import replay_dead_letters

BODIES = {
    "permanent-oms-error": ['{"id": "e-1",  "detail": {"ü": "x"}}\n', '{"id":"e-2"}', '{"id": 3}'],
    "malformed": ["not json at all", '{"no": "envelope"}'],
}


@pytest.fixture
def dlq(sqs: Any, queues: tuple[str, str]) -> Iterator[str]:
    """The DLQ holding BODIES (parked with their kinds) and one message SQS redrove itself."""
    _, dlq_url = queues
    parcels = [
        Parcel(body, kind, f"reason for {kind}", event_id=f"evt-{i}")
        for kind, bodies in BODIES.items()
        for i, body in enumerate(bodies)
    ]
    assert all(DeadLetters(sqs, dlq_url).park(parcels))
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody='{"redriven": true}',
        MessageAttributes={"trace": {"DataType": "String", "StringValue": "t-1"}},
    )
    yield dlq_url


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in ``url`` (received, so invisible afterwards)."""
    found: list[dict[str, Any]] = []
    while reply := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages"):
        found += reply
    return found


def counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def calls_of(sqs: Any, operation: str) -> list[int]:
    """Entries per call of a batch ``operation``, recorded from the client's own events."""
    sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["Entries"]))

    sqs.meta.events.register(f"provide-client-params.sqs.{operation}", record)
    return sizes


def test_only_the_selected_kind_moves_with_its_body_unchanged(
    sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    queue_url, _ = queues
    # When the operator replays one kind
    report = replay_dead_letters(
        sqs, dlq_url=dlq, queue_url=queue_url, kinds={"permanent-oms-error"}, wait_seconds=0
    )
    # Then exactly those messages moved, bodies byte for byte, without the parking labels
    assert report.moved == Counter({"permanent-oms-error": 3})
    assert report.kept == Counter({"malformed": 2, "redriven": 1})
    assert not report.failed
    moved = drain(sqs, queue_url)
    assert sorted(m["Body"] for m in moved) == sorted(BODIES["permanent-oms-error"])
    assert all("MessageAttributes" not in m for m in moved)
    # and the others are still in the DLQ, visible at once
    assert counts(sqs, dlq) == (3, 0)


def test_without_kind_everything_moves_and_own_attributes_travel(
    sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    queue_url, _ = queues
    report = replay_dead_letters(sqs, dlq_url=dlq, queue_url=queue_url, wait_seconds=0)
    assert report.moved == Counter({"permanent-oms-error": 3, "malformed": 2, "redriven": 1})
    moved = {m["Body"]: m.get("MessageAttributes", {}) for m in drain(sqs, queue_url)}
    assert len(moved) == 6
    assert moved['{"redriven": true}'] == {"trace": {"DataType": "String", "StringValue": "t-1"}}
    assert counts(sqs, dlq) == (0, 0)


def test_max_stops_after_n_and_sends_in_batches_of_ten(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, dlq_url = queues
    # Given 25 parked messages of one kind
    parcels = [Parcel(f'{{"n": {i}}}', "retries-exhausted", "gave up") for i in range(25)]
    assert all(DeadLetters(sqs, dlq_url).park(parcels))
    sends, deletes = calls_of(sqs, "SendMessageBatch"), calls_of(sqs, "DeleteMessageBatch")
    # When at most 23 may move
    report = replay_dead_letters(
        sqs, dlq_url=dlq_url, queue_url=queue_url, limit=23, wait_seconds=0
    )
    # Then 23 moved in batches of at most ten, and 2 stay behind, visible
    assert report.moved == Counter({"retries-exhausted": 23})
    assert sends == deletes == [10, 10, 3]
    assert counts(sqs, queue_url) == (23, 0)
    assert counts(sqs, dlq_url) == (2, 0)


def test_max_with_a_kind_leaves_the_surplus_visible(
    sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    queue_url, _ = queues
    report = replay_dead_letters(
        sqs,
        dlq_url=dlq,
        queue_url=queue_url,
        kinds={"permanent-oms-error"},
        limit=2,
        wait_seconds=0,
    )
    assert report.moved == Counter({"permanent-oms-error": 2})
    assert counts(sqs, queue_url) == (2, 0)
    assert counts(sqs, dlq) == (4, 0)


def test_large_bodies_are_split_below_the_batch_size_limit(
    sqs: Any, queues: tuple[str, str]
) -> None:
    queue_url, dlq_url = queues
    bodies = [f'{{"pad": "{c * 100_000}"}}' for c in "abcde"]
    assert all(DeadLetters(sqs, dlq_url).park([Parcel(b, "malformed", "big") for b in bodies]))
    sends = calls_of(sqs, "SendMessageBatch")
    report = replay_dead_letters(sqs, dlq_url=dlq_url, queue_url=queue_url, wait_seconds=0)
    assert report.moved == Counter({"malformed": 5})
    assert sum(sends) == 5 and max(sends) <= 2
    assert sorted(m["Body"] for m in drain(sqs, queue_url)) == bodies


def test_dry_run_moves_nothing_and_leaves_everything_visible(
    sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    queue_url, _ = queues
    report = replay_dead_letters(
        sqs, dlq_url=dlq, queue_url=queue_url, kinds={"malformed"}, dry_run=True, wait_seconds=0
    )
    assert report.moved == Counter({"malformed": 2})
    assert report.kept == Counter({"permanent-oms-error": 3, "redriven": 1})
    assert counts(sqs, queue_url) == (0, 0)
    assert counts(sqs, dlq) == (6, 0)


def test_an_empty_dlq_ends_the_run_at_once(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, dlq_url = queues
    report = replay_dead_letters(sqs, dlq_url=dlq_url, queue_url=queue_url, wait_seconds=0)
    assert report.kinds() == []


def test_cli_reports_counts_per_kind(
    sqs_server: SqsServer, sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    queue_url, _ = queues
    env = {"SQS_QUEUE_URL": queue_url, "SQS_DLQ_URL": dlq, "AWS_ENDPOINT_URL": sqs_server.url}
    done = bwp_worker("replay-dlq", "--kind", "malformed", "--kind", "redriven", env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert rows == {
        "kind": ["moved", "kept", "failed"],
        "malformed": ["2", "0", "0"],
        "permanent-oms-error": ["0", "3", "0"],
        "redriven": ["1", "0", "0"],
        "total": ["3", "3", "0"],
    }
    assert counts(sqs, queue_url) == (3, 0)
    # Without a DLQ configured, the command refuses with a configuration error
    refused = bwp_worker("replay-dlq", env={**env, "SQS_DLQ_URL": ""})
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "bwp-worker: configuration error: SQS_DLQ_URL is required but not set"
    )


def test_a_refusing_queue_fails_in_one_line_and_leaves_the_dlq_whole(
    sqs_server: SqsServer, sqs: Any, queues: tuple[str, str], dlq: str
) -> None:
    # Given a queue URL that does not exist
    queue_url, _ = queues
    env = {
        "SQS_QUEUE_URL": f"{queue_url}-gone",
        "SQS_DLQ_URL": dlq,
        "AWS_ENDPOINT_URL": sqs_server.url,
    }
    # When the operator replays
    done = bwp_worker("replay-dlq", env=env)
    # Then the command fails with one line, no traceback
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [reason] = [line for line in done.stderr.splitlines() if line.startswith("bwp-worker:")]
    assert reason.startswith("bwp-worker: replay-dlq failed: QueueDoesNotExist")
    # and every message is still in the DLQ, visible at once
    assert counts(sqs, dlq) == (6, 0)

"""Bad input never stops the poller (design.md 3.4, contract "Events the worker accepts").

Every body of the corpus in tests/data/malformed/ goes through a real Poller (real Redis,
moto's SQS server, a real Celery app publishing to a Redis broker), one receive each, in
one queue. Each must be parked in the DLQ on that first receive as kind ``malformed``
with a one-line reason and its body unchanged, dispatch nothing, and leave exactly one
``message_malformed`` error line that neither breaks lines nor echoes more than a short
preview of the input. After the whole corpus, a genuine event is still dispatched.

Cases the current code gets wrong are strict xfails: KNOWN_GAPS says what goes wrong.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog

from config.settings import Settings
from sandbox.sqs import SqsServer, create_queue_pair, sqs_client
from sandbox.stack import delete_prefix
from tasks.celery import broker_prefix, make_app
from tasks.dispatch import Dispatcher
from tasks.events.samples import build_event, to_body
from tasks.runtime import make_ledger
from tasks.sqs.dlq import DeadLetters
from tests.integration.workers import finish_queued
from worker.poller.config import PollerConfig
from worker.poller.loop import Poller

CORPUS = Path(__file__).parents[1] / "data" / "malformed"
#: EventBridge's event size limit (contract); deliberately not tasks.events.envelope's constant
LIMIT_BYTES = 256 * 1024
#: what a log line or a DLQ reason may quote of the input, at most
PREVIEW_CHARS = 60
#: long enough that a message whose batch failed stays invisible for the rest of the run
VISIBILITY_SECONDS = 600

KNOWN_GAPS: dict[str, str] = {}


# --- the corpus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    body: str
    why: str


def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
    return manifest


def oversized_body() -> str:
    """A genuine delivery event padded to exactly one byte over the limit."""
    event = build_event(
        "PACKAGE_DELIVERED",
        business_product_id="bp-123",
        order_id="322-BAD-OVERSIZED",
        delivery_id="d-9",
        event_id="0b8c2f1e-5a3d-4e7a-9c1b-oversized000",
        idempotency_key="idem-bad-oversized",
    )
    event["detail"]["pad"] = ""
    bare = to_body(event)
    return bare.replace('"pad":""', '"pad":"' + "x" * (LIMIT_BYTES + 1 - len(bare)) + '"')


def load_corpus() -> list[Case]:
    manifest = _manifest()
    cases = [
        Case(
            entry["file"].removesuffix(".body"),
            (CORPUS / entry["file"]).read_text("utf-8"),
            entry["why"],
        )
        for entry in manifest["cases"]
    ]
    generated = {"over-256-kib": oversized_body}
    cases += [Case(g["name"], generated[g["name"]](), g["why"]) for g in manifest["generated"]]
    return cases


CASES = load_corpus()


def _params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[case.name])]
            if case.name in KNOWN_GAPS
            else [],
        )
        for case in CASES
    ]


def _sqs_accepts(body: str) -> bool:
    """Only the characters SQS allows in a message body (#x9 #xA #xD #x20-#xD7FF ...)."""
    return all(
        ch in "\t\n\r" or " " <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd" or ch >= "\U00010000"
        for ch in body
    )


# --- a poller against real services --------------------------------------------------------


@dataclass
class Rig:
    poller: Poller
    settings: Settings
    sqs: Any
    queue_url: str
    dlq_url: str
    redis: redis.Redis

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def poll(self) -> None:
        self.poller.run(threading.Event(), max_polls=self.poller.totals.polls + 1)

    def work(self) -> int:
        """Stand in for the Celery workers: every `queued` event is done now."""
        return finish_queued(self.redis, self.settings)

    def broker_depth(self) -> int:
        return int(self.redis.llen(broker_prefix(self.settings) + self.settings.celery_queue))

    def queue_counts(self) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain_dlq(self) -> dict[str, list[dict[str, Any]]]:
        """Every DLQ message, by body."""
        parked: dict[str, list[dict[str, Any]]] = {}
        empty_replies = 0
        while empty_replies < 2:
            messages = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=VISIBILITY_SECONDS,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            empty_replies = 0 if messages else empty_replies + 1
            for message in messages:
                parked.setdefault(message["Body"], []).append(message)
        return parked


@contextmanager
def open_rig(sqs_server: SqsServer, redis_url: str) -> Iterator[Rig]:
    """A poller on a fresh queue pair and key prefix; everything is removed afterwards."""
    sqs = sqs_client(sqs_server.url)
    prefix = f"bwp-test-{uuid.uuid4().hex[:10]}:"
    queue_url, dlq_url = create_queue_pair(sqs, f"bwp-bad-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        redis_url=redis_url,
        redis_key_prefix=prefix,
        celery_queue=f"{prefix}q",
        sqs_queue_url=queue_url,
        sqs_dlq_url=dlq_url,
    )
    client = redis.Redis.from_url(redis_url)
    poller = Poller(
        sqs,
        make_ledger(client, settings),
        Dispatcher.for_settings(make_app(settings), settings),
        DeadLetters(sqs, dlq_url),
        PollerConfig(
            queue_url=queue_url,
            wait_seconds=0,
            visibility_timeout=VISIBILITY_SECONDS,
            error_backoff=0,
        ),
    )
    try:
        yield Rig(poller, settings, sqs, queue_url, dlq_url, client)
    finally:
        delete_prefix(client, prefix)
        client.close()
        for url in (queue_url, dlq_url):
            sqs.delete_queue(QueueUrl=url)
        sqs.close()


@pytest.fixture(scope="module")
def rigged(sqs_server: SqsServer, redis_url: str) -> Iterator[Rig]:
    with open_rig(sqs_server, redis_url) as rig:
        yield rig


@pytest.fixture
def rig(sqs_server: SqsServer, redis_url: str) -> Iterator[Rig]:
    with open_rig(sqs_server, redis_url) as fresh:
        yield fresh


# --- one run of the whole corpus -------------------------------------------------------------


@dataclass
class Outcome:
    """What one case did: read off the poller, the queues, the broker and the logs."""

    received: int
    dispatched: int
    broker_growth: int
    #: (visible, in flight) messages it added to the queue: (0, 0) once it was deleted
    left_in_queue: tuple[int, int]
    logs: list[dict[str, Any]]


@dataclass
class CorpusRun:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    parked: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    genuine: Outcome | None = None


def feed(rig: Rig, body: str) -> Outcome:
    """Send ``body`` and poll until it has been received once (a few polls at most)."""
    totals = rig.poller.totals
    received, dispatched, depth = totals.received, totals.dispatched, rig.broker_depth()
    visible, in_flight = rig.queue_counts()
    rig.send(body)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            rig.poll()
            if rig.poller.totals.received > received:
                break
    visible_after, in_flight_after = rig.queue_counts()
    totals = rig.poller.totals
    return Outcome(
        received=totals.received - received,
        dispatched=totals.dispatched - dispatched,
        broker_growth=rig.broker_depth() - depth,
        left_in_queue=(visible_after - visible, in_flight_after - in_flight),
        logs=[dict(entry) for entry in logs],
    )


@pytest.fixture(scope="module")
def corpus_run(rigged: Rig) -> CorpusRun:
    # Given one queue and one poller; When every case is sent and polled in turn,
    # then a genuine event after them all
    run = CorpusRun()
    for case in CASES:
        run.outcomes[case.name] = feed(rigged, case.body)
    genuine = build_event(
        "PACKAGE_DELIVERED", business_product_id="bp-1", order_id="322-AFTER-1", delivery_id="d-1"
    )
    run.genuine = feed(rigged, to_body(genuine))
    run.parked = rigged.drain_dlq()
    return run


# --- the corpus itself -----------------------------------------------------------------------


def test_the_corpus_is_large_listed_and_deliverable_by_sqs() -> None:
    # Given the corpus directory and its manifest
    manifest = _manifest()
    listed = {entry["file"] for entry in manifest["cases"]}
    on_disk = {path.name for path in CORPUS.glob("*.body")}
    # Then every file is listed with a reason, and every listed file exists
    assert listed == on_disk
    assert all(entry["why"].strip() for entry in [*manifest["cases"], *manifest["generated"]])
    # And there are at least 40 distinct bodies, each one SQS would carry
    assert len(CASES) >= 40
    assert len({case.body for case in CASES}) == len(CASES)
    assert [case.name for case in CASES if not _sqs_accepts(case.body)] == []
    # And the known gaps name real cases, and the generated body is one byte too big
    assert set(KNOWN_GAPS) <= {case.name for case in CASES}
    assert len(oversized_body().encode()) == LIMIT_BYTES + 1


# --- every case, through a real poller -------------------------------------------------------


def _strings(entry: dict[str, Any]) -> list[str]:
    return [value if isinstance(value, str) else repr(value) for value in entry.values()]


def _echo(value: str, body: str) -> str | None:
    """A piece of ``body`` longer than a preview that ``value`` repeats, if any."""
    for start in range(len(value) - PREVIEW_CHARS):
        piece = value[start : start + PREVIEW_CHARS + 1]
        if piece in body:
            return piece
    return None


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_parked_at_once_and_logged_once(corpus_run: CorpusRun, case: Case) -> None:
    # Given the case, sent alone and polled once in the corpus run
    outcome = corpus_run.outcomes[case.name]
    # Then it was received once and left the queue on that receive: nothing comes back
    assert outcome.received == 1
    assert outcome.left_in_queue == (0, 0), "still in SQS: it would return until redriven"
    # And nothing was dispatched for it
    assert (outcome.dispatched, outcome.broker_growth) == (0, 0)
    # And its body sits unchanged in the DLQ, kind malformed, with a one-line reason
    [parked] = corpus_run.parked.get(case.body, [])
    attributes = parked["MessageAttributes"]
    assert attributes["bwp-error-kind"]["StringValue"] == "malformed"
    reason = attributes["bwp-error"]["StringValue"]
    assert reason.strip()
    assert reason.isprintable(), f"reason is not one clean line: {reason!r}"
    assert _echo(reason, case.body) is None
    # And exactly one error line was logged: message_malformed, one clean short line
    errors = [entry for entry in outcome.logs if entry["log_level"] in ("error", "critical")]
    assert [entry["event"] for entry in errors] == ["message_malformed"]
    for value in _strings(errors[0]):
        assert value.isprintable(), f"log field breaks the line or hides text: {value!r}"
        assert _echo(value, case.body) is None, "log field repeats more than a preview"
    # And no other line carried the input's line breaks or control characters either
    for entry in outcome.logs:
        assert all(value.isprintable() for value in _strings(entry)), entry


def test_metrics_still_render_after_the_whole_corpus(corpus_run: CorpusRun, rigged: Rig) -> None:
    # Then /metrics can still be served: no label holds text UTF-8 cannot encode
    assert b"bwp_messages_parked_total" in rigged.poller.metrics.render()


def test_the_loop_goes_on_after_the_whole_corpus(corpus_run: CorpusRun, rigged: Rig) -> None:
    # Then the genuine event sent after every bad body was dispatched, its message held
    # until the event is done (handed back when the poll ended: still in SQS)
    assert corpus_run.genuine is not None
    assert corpus_run.genuine.dispatched == corpus_run.genuine.broker_growth == 1
    assert corpus_run.genuine.left_in_queue == (1, 0)
    # And the poller kept count of the corpus: received once each, plus the genuine one
    assert rigged.poller.totals.received == len(CASES) + 1


# --- whole batches ----------------------------------------------------------------------------


def genuine(n: int) -> str:
    return to_body(
        build_event(
            "DELIVERY_COMPLETED",
            business_product_id="bp-1",
            order_id=f"322-GOOD-{n:04d}",
            delivery_id="d-1",
        )
    )


def test_bad_input_mixed_with_genuine_events_is_sorted_in_full_batches(rig: Rig) -> None:
    # Given every handled case, with a genuine event after every ninth, all in the queue
    handled = [case for case in CASES if case.name not in KNOWN_GAPS]
    bodies: list[str] = []
    for i, case in enumerate(handled):
        bodies.append(case.body)
        if i % 9 == 8:
            bodies.append(genuine(i))
    for body in bodies:
        rig.send(body)
    good = len(bodies) - len(handled)
    # When the poller polls until the queue is empty
    # (and the workers finish what it dispatched)
    for _ in range(3 * len(bodies)):
        if rig.queue_counts() == (0, 0):
            break
        rig.poll()
        rig.work()
    # Then the bad ones were parked on their one receive, the genuine ones dispatched once
    # and deleted when received again after their event was done
    assert rig.queue_counts() == (0, 0)
    assert rig.poller.totals.received == len(bodies) + good
    assert rig.poller.totals.duplicates == good
    assert rig.poller.totals.dispatched == good == rig.broker_depth()
    assert rig.poller.totals.by_kind == {"malformed": len(handled)}
    parked = rig.drain_dlq()
    assert sorted(parked) == sorted(case.body for case in handled)
    assert all(len(copies) == 1 for copies in parked.values())
    assert {
        message["MessageAttributes"]["bwp-error-kind"]["StringValue"]
        for messages in parked.values()
        for message in messages
    } == {"malformed"}


def test_a_poison_body_does_not_hold_back_its_batch_mates(rig: Rig) -> None:
    # Given a body on which json.loads raises ValueError, not JSONDecodeError (an integer
    # over Python's 4300-digit limit), received in one batch with a genuine event
    [poison] = [case for case in CASES if case.name == "huge-integer"]
    rig.send(poison.body)
    rig.send(genuine(1))
    # When the poller polls once
    rig.poll()
    # Then the genuine event is dispatched (its message held until done, then handed back
    # as the poll ended) and the poison parked, on that one receive
    assert rig.poller.totals.received == 2
    assert rig.poller.totals.dispatched == 1
    assert list(rig.drain_dlq()) == [poison.body]
    assert rig.queue_counts() == (1, 0)


def test_oversized_bodies_arriving_together_are_each_parked_at_once(rig: Rig) -> None:
    # Given four bodies over the limit, received in one batch (together over 1 MiB)
    bodies = [oversized_body().replace("oversized", f"oversized-{i}") for i in range(4)]
    for body in bodies:
        rig.send(body)
    # When the poller polls once
    rig.poll()
    # Then each is parked on that receive
    assert rig.poller.totals.received == 4
    assert rig.queue_counts() == (0, 0)
    assert sorted(rig.drain_dlq()) == sorted(bodies)

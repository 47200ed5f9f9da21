"""The sync task's signature, declared once (tasks/publish/call.py), and the message every
publisher builds from it with Celery's and kombu's own code (tasks/publish/message.py)."""

from __future__ import annotations

import base64
import inspect
import json
import warnings
from dataclasses import MISSING, fields

import pytest
from celery.exceptions import DuplicateTaskNameWarning

from config.settings import load_settings
from tasks.celery import make_app
from tasks.jobs import register
from tasks.publish.call import SyncCall
from tasks.publish.message import redis_messages


def test_the_sync_task_takes_the_calls_fields_in_order_with_their_defaults() -> None:
    # Given the task as a worker registers it (Celery shares tasks between apps: another
    # test's app may have registered the same function first)
    app = make_app(load_settings())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateTaskNameWarning)
        register(app)
        task = app.tasks[SyncCall.name]
    # Then its parameters are SyncCall's fields: a new argument on one side fails here
    parameters = [(p.name, p.default) for p in inspect.signature(task.run).parameters.values()]
    declared = [
        (f.name, inspect.Parameter.empty if f.default is MISSING else f.default)
        for f in fields(SyncCall)
    ]
    assert parameters == declared


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        (SyncCall("{}", "k"), {}),
        (SyncCall("{}", "k", failures=2), {"failures": 2, "busy": 0}),
        (SyncCall("{}", "k", busy=1), {"failures": 0, "busy": 1}),
    ],
)
def test_a_first_attempt_carries_no_counters_a_retry_both(
    call: SyncCall, kwargs: dict[str, int]
) -> None:
    assert call.args == ("{}", "k")
    assert call.kwargs == kwargs
    assert call.kwargsrepr == repr(kwargs)


@pytest.mark.parametrize(
    ("args", "dedup_key"),
    [(["body", "k-1"], "k-1"), (("body", "k-2"), "k-2"), (["body"], None), ("body", None)],
)
def test_the_dedup_key_is_read_where_the_call_puts_it(args: object, dedup_key: str | None) -> None:
    assert SyncCall.dedup_key_in(args) == dedup_key


def test_the_argsrepr_names_the_size_and_the_key_never_the_body() -> None:
    call = SyncCall('{"order": "322-SECRET-1"}', "k-1")
    assert call.argsrepr == "['<event body, 25 characters>', 'k-1']"


def test_a_batch_message_is_a_celery_protocol_2_task_in_kombus_redis_envelope() -> None:
    # Given two calls rendered for a Redis broker's queue
    app = make_app(load_settings())
    calls = [SyncCall('{"id": "e-1"}', "k-1"), SyncCall('{"id": "e-2"}', "k-2", failures=1)]
    raw = redis_messages(app, calls, "bwp-sync", origin="bwp-poller@test")
    # Then each is kombu's envelope around Celery's protocol 2 task, routed to the queue
    assert len(raw) == 2
    for call, message in zip(calls, map(json.loads, raw), strict=True):
        headers, properties = message["headers"], message["properties"]
        assert headers["task"] == "bwp.sync_delivery"
        assert headers["id"] == headers["root_id"] == properties["correlation_id"]
        assert headers["argsrepr"] == call.argsrepr
        assert headers["kwargsrepr"] == call.kwargsrepr
        assert headers["origin"] == "bwp-poller@test"
        assert properties["delivery_info"] == {"exchange": "", "routing_key": "bwp-sync"}
        assert properties["body_encoding"] == "base64"
        assert message["content-type"] == "application/json"
        args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
        assert (args, kwargs) == (list(call.args), call.kwargs)
        assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

"""What Flower and Celery's logs show of a sync task's arguments (``argsrepr``): the
body's size and the dedup key, never the body, whichever way the task is published (the
batched LPUSH of the poller and the sweep, the producer of a broker other than Redis).
Real Redis broker; the
messages are read back from the queue's list. (A Celery retry is checked through a real
Flower: tests/e2e/test_flower.py.)"""

from __future__ import annotations

import json

import redis

from config.settings import load_settings
from tasks.celery import celery_queue_key, make_app
from tasks.dispatch import Dispatcher
from tasks.events.samples import build_event, to_body
from tasks.ledger.events import QueuedEvent


def test_every_publish_path_hides_the_event_body(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given the settings of a Redis broker and an event whose body names an order
    settings = load_settings(redis_url=redis_url, redis_key_prefix=key_prefix)
    event = build_event(
        "PACKAGE_DELIVERED", business_product_id="bp-1", order_id="322-ARGS-1", delivery_id="d-1"
    )
    queued = QueuedEvent(event["detail"]["idempotencyKey"], to_body(event))
    app = make_app(settings)
    try:
        # When it is published as a batch and through the broker's producer
        assert Dispatcher.for_settings(app, settings).publish([queued]) == [True]
        assert Dispatcher(app, settings.celery_queue).publish([queued]) == [True]
    finally:
        app.close()
    # Then both messages carry the body as an argument, and only its size as argsrepr
    key = celery_queue_key(settings)
    assert key is not None
    messages = [json.loads(raw) for raw in redis_client.lrange(key, 0, -1)]
    assert len(messages) == 2
    expected = f"['<event body, {len(queued.body)} characters>', {queued.dedup_key!r}]"
    for message in messages:
        assert message["headers"]["argsrepr"] == expected
        assert "322-ARGS-1" not in json.dumps(message["headers"])

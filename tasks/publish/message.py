"""The sync task's Celery message, built by Celery's and kombu's own code.

Every message goes through Celery's ``create_task_message`` (protocol 2) and
``send_task_message`` into a kombu producer: a broker's own producer (``send``), or in
``redis_messages`` a producer whose transport keeps each message as kombu's Redis
transport would store it, so that the caller pushes a whole batch in one LPUSH.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from celery import Celery
from kombu import Connection, Producer
from kombu.transport import virtual
from kombu.utils.json import dumps
from kombu.utils.uuid import uuid

from tasks.publish.call import SyncCall


def send(
    app: Celery, producer: Any, call: SyncCall, queue: str, *, origin: str, **options: Any
) -> None:
    """Publish ``call`` onto ``queue`` through ``producer``; ``options`` go to Celery's
    ``send_task_message`` (retry, retry_policy, declare); ``origin`` names the publisher
    in the message's headers. Raises what the producer raises."""
    message = app.amqp.create_task_message(
        uuid(),
        call.name,
        call.args,
        call.kwargs,
        argsrepr=call.argsrepr,
        kwargsrepr=call.kwargsrepr,
        origin=origin,
    )
    app.amqp.send_task_message(producer, call.name, message, queue=queue, **options)


def redis_messages(app: Celery, calls: Iterable[SyncCall], queue: str, *, origin: str) -> list[str]:
    """One message per call as kombu's Redis transport LPUSHes it onto ``queue``'s list
    (its virtual channel's envelope, the body base64, in kombu's JSON). Nothing is sent:
    the caller pushes the batch. Celery's publish signals fire as they do for a message
    kombu buffers in a batch, before the push."""
    with Connection(transport=_Keeping) as connection:
        channel = cast(_KeepingChannel, connection.default_channel)
        producer = Producer(channel)
        for call in calls:
            send(app, producer, call, queue, origin=origin, declare=[], retry=False)
        routed = {name for name, _ in channel.kept}
        if routed - {queue}:
            raise RuntimeError(f"kombu routed sync tasks to {sorted(routed)}, not {queue!r}")
        return [dumps(message) for _, message in channel.kept]


class _KeepingChannel(virtual.Channel):
    """A virtual channel that keeps each routed message instead of storing it. The Redis
    transport's channel is this same virtual channel storing ``dumps(message)`` on the
    queue's list (priority 0: the list named as the queue)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kept: list[tuple[str, dict[str, Any]]] = []

    def _put(self, queue: str, message: dict[str, Any], **_: Any) -> None:
        self.kept.append((queue, message))


class _Keeping(virtual.Transport):
    Channel = _KeepingChannel
    driver_type = driver_name = "bwp-keeping"

    def driver_version(self) -> str:
        return "1"

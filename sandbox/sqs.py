"""A local SQS: moto's server on a free loopback port, plus queue and client helpers.

moto keeps its state per process, not per server: two servers started in one process
see the same queues, so tests give their queues unique names.

Two of SQS's checks that moto leaves out are added (``_enforce_aws_checks``), since the
worker must live with them: a message attribute value may hold only the characters SQS
accepts, and a message's body and attributes together must fit the queue's
MaximumMessageSize (moto counts the body alone).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import boto3
from moto.server import ThreadedMotoServer
from moto.sqs.exceptions import InvalidParameterValue
from moto.sqs.models import SQSBackend

from sandbox.stops import StopsOnExit

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"

#: characters SQS refuses in a message or an attribute value
_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _size(body: str, attributes: dict[str, Any]) -> int:
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        size += len(str(value.get("StringValue", "") or "").encode())
        binary = value.get("BinaryValue") or b""
        size += len(binary) if isinstance(binary, bytes) else len(str(binary))
    return size


def _enforce_aws_checks() -> None:
    """Wrap moto's ``send_message`` (single and batch) with SQS's own refusals."""
    original = SQSBackend.send_message
    if getattr(original, "_bwp_checked", False):
        return

    @functools.wraps(original)
    def send_message(
        self: SQSBackend, queue_name: str, message_body: str, *args: Any, **kwargs: Any
    ) -> Any:
        attributes = kwargs.get("message_attributes") or {}
        for name, value in attributes.items():
            if _REFUSED.search(str(value.get("StringValue", "") or "")):
                raise InvalidParameterValue(
                    f"Message (user) attribute '{name}' value contains invalid characters."
                )
        limit = int(self.get_queue(queue_name).maximum_message_size)  # type: ignore[attr-defined]
        if _size(message_body, attributes) > limit:
            raise InvalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than "
                f"{limit} bytes."
            )
        return original(self, queue_name, message_body, *args, **kwargs)

    send_message._bwp_checked = True  # type: ignore[attr-defined]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


class SqsServer(StopsOnExit):
    """A running moto server: ``url`` to reach it, ``stop()`` to end it."""

    def __init__(self) -> None:
        _enforce_aws_checks()
        # werkzeug logs every request at INFO: a line per SQS call, and CPU for nothing.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        wsgi = self._server._server  # shutdown() leaves the listening socket open
        self._server.stop()
        if wsgi is not None:
            wsgi.server_close()


def sqs_client(endpoint_url: str) -> SQSClient:
    """A boto3 SQS client for ``endpoint_url`` with dummy credentials; close() it when done."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
        aws_session_token="testing",  # noqa: S106
    )


def create_queue_pair(
    sqs: SQSClient, name: str, *, max_receive_count: int = 5, visibility_timeout: int = 30
) -> tuple[str, str]:
    """Create ``<name>-dlq`` and ``<name>`` redriving into it; return (queue url, dlq url)."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"]}
    redrive["maxReceiveCount"] = str(max_receive_count)
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": str(visibility_timeout),
        },
    )["QueueUrl"]
    return queue_url, dlq_url

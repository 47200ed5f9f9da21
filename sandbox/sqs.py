"""A local SQS: moto's server on a free loopback port, plus queue and client helpers.

moto keeps its state per process, not per server: two servers started in one process
see the same queues, so tests give their queues unique names.
"""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import TYPE_CHECKING

import boto3
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"


class SqsServer:
    """A running moto server: ``url`` to reach it, ``stop()`` to end it."""

    def __init__(self) -> None:
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

    def __enter__(self) -> SqsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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

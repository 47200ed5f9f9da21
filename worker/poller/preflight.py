"""Before the first receive: do the queues the poller was given exist, and may it use them?

A queue that does not exist, or that the task role may not touch, is a configuration
error: the poller stops with one line naming the variable and exit code 2 (ECS shows the
exit code and the log line), instead of logging a failed receive every few seconds
forever. An SQS that does not answer is not: the contract keeps a process running
through outages, so that case is logged and the loop starts (and retries, logging each
error with its code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import botocore.exceptions
import structlog

from config.clients import queue_name
from config.settings import Settings, SettingsError
from tasks.sqs.errors import UNUSABLE_QUEUE_CODES, describe, error_code, one_line

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = structlog.get_logger("bwp.poller")


def check_queues(sqs: SQSClient, settings: Settings) -> None:
    """Raise SettingsError when SQS_QUEUE_URL or SQS_DLQ_URL cannot be used as configured.

    One GetQueueAttributes per queue (the poller's role grants it on both).
    """
    for variable, url in (
        ("SQS_QUEUE_URL", settings.sqs_queue_url),
        ("SQS_DLQ_URL", settings.sqs_dlq_url),
    ):
        if url:
            _check(sqs, variable, url)


def _check(sqs: SQSClient, variable: str, url: str) -> None:
    try:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    except botocore.exceptions.NoCredentialsError as exc:
        raise SettingsError(f"{variable}: no AWS credentials found ({exc})") from None
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in UNUSABLE_QUEUE_CODES:
            raise SettingsError(f"{variable}: queue {queue_name(url)}: {one_line(exc)}") from None
        log.warning("queue_check_failed", queue=queue_name(url), **describe(exc))
    except botocore.exceptions.BotoCoreError as exc:
        # unreachable (network, endpoint down): an outage, not a configuration error
        log.warning("queue_check_failed", queue=queue_name(url), **describe(exc))

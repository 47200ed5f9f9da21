"""moto's SQS server, queue pairs with redrive, and twin publishing read back from the queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sandbox.bwp_api import SandboxApi, build_app
from sandbox.http import serve_asgi
from sandbox.publisher import SqsPublisher
from sandbox.sqs import SqsServer, create_queue_pair, sqs_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

TWINS_DELIVERED = ["ITEM_DELIVERED", "DELIVERY_COMPLETED", "PACKAGE_DELIVERED"]


@pytest.fixture(scope="module")
def moto() -> Iterator[SqsServer]:
    server = SqsServer()
    yield server
    server.stop()


@pytest.fixture
def client(moto: SqsServer) -> Iterator[SQSClient]:
    client = sqs_client(moto.url)
    yield client
    client.close()


@pytest.fixture
def pair(client: SQSClient) -> tuple[str, str]:
    return create_queue_pair(client, f"sandbox-{uuid.uuid4().hex[:8]}", max_receive_count=2)


def _drain(client: SQSClient, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while True:
        batch = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = batch.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_queue_pair_redrives_into_its_dlq(client: SQSClient, pair: tuple[str, str]) -> None:
    queue_url, dlq_url = pair
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    policy = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(dlq_url.rsplit("/", 1)[1])
    assert int(policy["maxReceiveCount"]) == 2
    assert attributes["Attributes"]["VisibilityTimeout"] == "30"
    # A message received max_receive_count times without being deleted moves to the DLQ
    client.send_message(QueueUrl=queue_url, MessageBody="poison")
    for _ in range(2):
        batch = client.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)
        assert [m["Body"] for m in batch["Messages"]] == ["poison"]
    assert client.receive_message(QueueUrl=queue_url).get("Messages", []) == []
    parked = client.receive_message(QueueUrl=dlq_url)["Messages"]
    assert [m["Body"] for m in parked] == ["poison"]


def test_publisher_sends_one_event_per_subscribed_twin(
    client: SQSClient, pair: tuple[str, str]
) -> None:
    queue_url, _ = pair
    publisher = SqsPublisher(client, queue_url, [*TWINS_DELIVERED, "PACKAGE_DELIVERY_IN_TRANSIT"])
    # PENDING is announced by no event
    assert publisher.publish("bp-1", "o-1", "d-1", "PENDING") == []
    # When a delivery is DELIVERED
    sent = publisher.publish("bp-1", "o-1", "d-1", "DELIVERED")
    # Then the queue holds three twin events, distinct ids, same delivery resource
    received = _drain(client, queue_url)
    assert sorted(e["id"] for e in received) == sorted(e["id"] for e in sent)
    assert sorted(e["detail-type"] for e in received) == sorted(TWINS_DELIVERED)
    assert {e["resources"][0] for e in received} == {"businessProduct/bp-1/order/o-1/delivery/d-1"}
    new_generation = [e for e in received if e["detail-type"] == "PACKAGE_DELIVERED"]
    assert "idempotencyKey" in new_generation[0]["detail"]


def test_unknown_subscription_is_refused(client: SQSClient, pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="ORDER_CONFIRMED"):
        SqsPublisher(client, pair[0], ["ORDER_CONFIRMED"])


def test_a_sandbox_mutation_publishes_into_the_queue(
    client: SQSClient, pair: tuple[str, str]
) -> None:
    # Given the order API stand-in publishing the default (2024-11-01) subscriptions
    queue_url, _ = pair
    api = SandboxApi(publisher=SqsPublisher(client, queue_url).publish)
    api.store.add_order("o-9", "bp-9", [("li-1", 1, "d-9")])
    mutation = (
        "mutation($id: OrderIdentifierInput!, $input: UpdateOrderPackageInformationInput!) "
        "{ updateOrderPackageInformation(orderIdentifier: $id, input: $input) { order { id } } }"
    )
    detail = {"id": "d-9", "packageState": {"packageInformationState": {"state": "IN_TRANSIT"}}}
    variables = {
        "id": {"orderId": "o-9"},
        "input": {"packageInformation": {"details": [detail]}},
    }
    with serve_asgi(build_app(api)) as server, httpx.Client(base_url=server.url) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": api.client_id,
            "client_secret": api.client_secret,
        }
        token = http.post("/token", data=form).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-version": "2024-11-01",
            "x-api-target-id": "bp-9",
        }
        # When the delivery is moved through the API
        response = http.post(
            "/graphql", json={"query": mutation, "variables": variables}, headers=headers
        )
        assert response.json() == {
            "data": {"updateOrderPackageInformation": {"order": {"id": "o-9"}}}
        }
    # Then exactly the subscribed event is waiting in the queue
    [event] = _drain(client, queue_url)
    assert event["detail-type"] == "PACKAGE_DELIVERY_IN_TRANSIT"
    assert event["resources"] == ["businessProduct/bp-9/order/o-9/delivery/d-9"]

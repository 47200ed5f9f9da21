"""The shared services of a benchmark run: moto's SQS and the sandbox API + OMS, each in a
process of its own (``python -m sandbox.serve``), driven through their admin routes.

Each contender gets a fresh queue pair, a fresh private Redis and a reset OMS; the
services themselves live for the whole run (their CPU is measured per contender).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from sandbox.redis_server import EmbeddedRedis
from sandbox.sqs import create_queue_pair, sqs_client
from sandbox.stack import OMS_TOKEN, SIGNING_SECRET

CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"  # sandbox.bwp_api defaults
API_VERSION = "2024-11-01"


def _serve(what: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.serve", what], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"sandbox.serve {what} exited with {proc.wait()}")
    return proc, json.loads(line)


@dataclass
class Queue:
    url: str
    dlq_url: str


@dataclass
class Services:
    """moto and the sandbox, started by ``start()``; ``stop()`` ends both."""

    sqs_url: str = ""
    api_url: str = ""
    oms_url: str = ""
    processes: dict[str, psutil.Process] = field(default_factory=dict)
    _popens: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> Services:
        sqs, sqs_info = _serve("sqs")
        api, api_info = _serve("api")
        self._popens = [sqs, api]
        self.sqs_url, self.api_url, self.oms_url = sqs_info["sqs"], api_info["api"], api_info["oms"]
        self.processes = {"moto": psutil.Process(sqs.pid), "sandbox": psutil.Process(api.pid)}
        self.http = httpx.Client(timeout=30.0)
        self.sqs = sqs_client(self.sqs_url)
        return self

    def stop(self) -> None:
        if hasattr(self, "http"):
            self.http.close()
            self.sqs.close()
        for proc in self._popens:
            proc.terminate()
        for proc in self._popens:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    # --- SQS ------------------------------------------------------------------------
    def new_queue(self) -> Queue:
        url, dlq = create_queue_pair(
            self.sqs, f"bench-{uuid.uuid4().hex[:8]}", visibility_timeout=60
        )
        return Queue(url, dlq)

    def drop_queue(self, queue: Queue) -> None:
        for url in (queue.url, queue.dlq_url):
            self.sqs.delete_queue(QueueUrl=url)

    # --- the sandbox's admin routes ---------------------------------------------------
    def _post(self, url: str, body: dict[str, Any] | None = None) -> Any:
        reply = self.http.post(url, json=body or {})
        reply.raise_for_status()
        return reply.json() if reply.content else None

    def _get(self, url: str) -> Any:
        reply = self.http.get(url)
        reply.raise_for_status()
        return reply.json()

    def add_order(self, body: dict[str, Any]) -> None:
        self._post(f"{self.api_url}/_sandbox/orders", body)

    def move(self, body: dict[str, Any]) -> None:
        self._post(f"{self.api_url}/_sandbox/move", body)

    def set_api_latency(self, seconds: float) -> None:
        self._post(f"{self.api_url}/_sandbox/latency", {"seconds": seconds})

    def api_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._get(f"{self.api_url}/_sandbox/stats")
        return stats

    def oms_summary(self) -> dict[str, int]:
        summary: dict[str, int] = self._get(f"{self.oms_url}/_oms/summary")
        return summary

    def oms_attempts(self) -> list[dict[str, Any]]:
        attempts: list[dict[str, Any]] = self._get(f"{self.oms_url}/_oms/attempts")
        return attempts

    def oms_latest(self) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = self._get(f"{self.oms_url}/_oms/latest")
        return latest

    def reset_oms(self) -> None:
        self._post(f"{self.oms_url}/_oms/reset")

    # --- what the consumers get ---------------------------------------------------------
    def contract_env(self, queue: Queue, redis_url: str) -> dict[str, str]:
        """The contract's variables (docs/contract.md), the same for every contender."""
        return {
            "SQS_QUEUE_URL": queue.url,
            "SQS_DLQ_URL": queue.dlq_url,
            "AWS_ENDPOINT_URL": self.sqs_url,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "REDIS_URL": redis_url,
            "BWP_API_URL": f"{self.api_url}/graphql",
            "BWP_TOKEN_URL": f"{self.api_url}/token",
            "BWP_CLIENT_ID": CLIENT_ID,
            "BWP_CLIENT_SECRET": CLIENT_SECRET,
            "BWP_API_VERSION": API_VERSION,
            "OMS_URL": f"{self.oms_url}/deliveries",
            "OMS_SIGNING_SECRET": SIGNING_SECRET,
            "OMS_AUTH_TOKEN": OMS_TOKEN,
        }


def private_redis() -> EmbeddedRedis:
    """A fresh redis-server of its own, so INFO commandstats counts one contender only."""
    return EmbeddedRedis().start()

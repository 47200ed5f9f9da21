"""``bwp-worker demo --keep-running``: after the story, leave the stack up with Flower, say
how to reach each part and how to send events to it, and stop everything on Ctrl-C."""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # the sandbox is never imported by production code at import time
    from sandbox.stack import LocalStack

Say = Callable[[str], None]
FLOWER_TIMEOUT = 30.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Flower:
    """``celery -A tasks flower`` with the stack's environment, its output in a log file."""

    def __init__(self, stack: LocalStack, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path: Path = stack.log_dir / "flower.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        args = [sys.executable, "-m", "celery", "-A", "tasks", "flower"]
        args += [f"--port={port}", "--address=127.0.0.1"]
        # The API lists the workers; unauthenticated is fine on a loopback-only demo (and
        # allowed on loopback only: tasks/flower_guard.py).
        env = stack.env(
            FLOWER_UNAUTHENTICATED_API="true",
            ALLOW_UNAUTHENTICATED_FLOWER="true",
            CELERY_BROKER_URL=stack.redis_url,
        )
        self._popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def workers(self) -> list[str]:
        """Worker names Flower sees (asks the workers); empty while it does not answer."""
        try:
            reply = httpx.get(f"{self.url}/api/workers", params={"refresh": "1"}, timeout=5.0)
            reply.raise_for_status()
            return sorted(reply.json())
        except (httpx.HTTPError, ValueError):
            return []

    def wait_for_workers(self, timeout: float = FLOWER_TIMEOUT) -> list[str]:
        deadline = time.monotonic() + timeout
        while self._popen.poll() is None and time.monotonic() < deadline:
            if names := self.workers():
                return names
            time.sleep(0.5)
        return []

    def stop(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(5)
        self._log.close()


def _instructions(stack: LocalStack, flower: Flower, metrics_port: int, order_id: str) -> list[str]:
    env = {
        "SQS_QUEUE_URL": stack.queue_url,
        "AWS_ENDPOINT_URL": stack.env()["AWS_ENDPOINT_URL"],
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    move = '{"orderId": "%s", "deliveryId": "d-2", "state": "DELIVERED"}' % order_id  # noqa: UP031
    return [
        f"  Flower         {flower.url}",
        f"  poller         http://127.0.0.1:{metrics_port}/metrics",
        f"  order API      {stack.api_server.url}/graphql",
        f"  OMS            {stack.oms_server.url}/_oms/latest",
        f"  logs           {stack.log_dir}",
        "Move a delivery: the sandbox API publishes its events, the pipeline does the rest:",
        f"  curl -s -X POST {stack.api_server.url}/_sandbox/move"
        f" -H 'content-type: application/json' -d {shlex.quote(move)}",
        "Or send an event to the local queue yourself:",
        "  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
        "  bwp-worker send-event --detail-type PACKAGE_DELIVERY_IN_TRANSIT"
        f" --business-product-id bp-demo --order-id {order_id} --delivery-id d-2",
        "Ctrl-C stops everything.",
    ]


def keep_running(stack: LocalStack, metrics_port: int, order_id: str, say: Say) -> int:
    """Start Flower, print where everything is, block until Ctrl-C or SIGTERM.

    Returns 0 after a requested stop, 1 when Flower never saw the worker or a process died.
    """
    flower = Flower(stack, free_port())
    try:
        names = flower.wait_for_workers()
        if not names:
            say(f"✗ Flower did not see the worker within {FLOWER_TIMEOUT:.0f} s")
            say(f"  logs: {stack.log_dir}")
            return 1
        say(f"Everything stays up (Flower sees {', '.join(names)}):")
        for line in _instructions(stack, flower, metrics_port, order_id):
            say(line)
        return _block(stack, say)
    finally:
        flower.stop()


def _block(stack: LocalStack, say: Say) -> int:
    """Wait for Ctrl-C (SIGINT) or SIGTERM; 1 when a process of the stack exits first."""
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        while not stop.wait(1.0):
            for process in stack.processes:
                if process.popen.poll() is not None:
                    say(f"✗ the {process.name} exited; its log: {process.log_path}")
                    return 1
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    say("Stopping…")
    return 0

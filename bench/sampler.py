"""CPU seconds and peak RSS per process, sampled with psutil while a contender runs.

Each tracked root process is sampled with its descendants (Celery's pool children),
except the roles in ``alone`` (the driver, whose children are everything else); a
descendant is reported under its root's role with a ``*`` (``worker*``: the pool).
CPU is the difference between the last sample and the baseline taken at ``start()``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

INTERVAL = 0.2


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0  # the largest process of the role
    processes: int = 0


@dataclass
class Sampler:
    roots: dict[str, psutil.Process]
    alone: frozenset[str] = frozenset({"driver"})
    _cpu: dict[tuple[str, int], float] = field(default_factory=dict)
    _base: dict[tuple[str, int], float] = field(default_factory=dict)
    _rss: dict[tuple[str, int], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _sample(self) -> None:
        for role, root in self.roots.items():
            tree = [(role, root)]
            if role not in self.alone:
                try:
                    tree += [(f"{role}*", p) for p in root.children(recursive=True)]
                except psutil.Error:
                    continue
            for name, proc in tree:
                try:
                    with proc.oneshot():
                        times, rss = proc.cpu_times(), proc.memory_info().rss
                except psutil.Error:
                    continue  # gone: its last sample stands
                key = (name, proc.pid)
                with self._lock:
                    self._cpu[key] = times.user + times.system
                    self._rss[key] = max(self._rss.get(key, 0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def start(self) -> Sampler:
        self._sample()
        with self._lock:
            self._base = dict(self._cpu)
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Usage]:
        """Take a last sample and return the usage per role since ``start()``."""
        self._stop.set()
        self._thread.join()
        self._sample()
        usage: dict[str, Usage] = defaultdict(Usage)
        with self._lock:
            for key, cpu in self._cpu.items():
                role = usage[key[0]]
                role.cpu_seconds += cpu - self._base.get(key, 0.0)
                role.peak_rss_mb = max(role.peak_rss_mb, self._rss[key] / 2**20)
                role.processes += 1
        return dict(usage)

"""A circuit per dependency (the OMS, the order API, the token endpoint), shared by every
worker through Redis (design.md section 3.7): an outage is not an event's failure.

- **Closed**: calls go through. A process that sees ``threshold`` outage-kind failures in
  a row (5xx, 429, timeouts, connection errors: ``ApiUnavailable`` / ``OmsUnavailable``)
  with no success between them opens the circuit for everyone. Counting in a row, per
  process, costs no Redis write on success and does not open on a scattered error rate.
- **Open**: no task calls the dependency. A task that needs it gets ``DependencyDown``
  and waits (a short retry countdown that spends no retry budget). Once per
  ``probe_interval`` one task in the whole deployment is let through as the probe (a
  ``SET NX PX`` slot): its success closes the circuit, and the backlog flows at once.

Each process reads the shared states at most once per ``refresh`` seconds (one round
trip for all circuits): a closed circuit costs a task nothing in Redis. A state change
is written by one Lua call and logged once, by the process that made it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import redis
import structlog

from tasks.errors import DependencyDown
from tasks.keys import Keys
from tasks.ledger import lua
from tasks.ledger.scripts import circuits as scripts
from tasks.redis_outage import UNAVAILABLE, text

log = structlog.get_logger("bwp.circuit")

T = TypeVar("T")

OMS: Final = "oms"
API: Final = "api"
TOKEN: Final = "token"  # noqa: S105 - a dependency's name
DEPENDENCIES: Final = (OMS, API, TOKEN)


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    #: outage-kind failures in a row, in one process, that open a circuit
    threshold: int = 5
    #: seconds between probes of an open circuit, across the deployment
    probe_interval: float = 1.0
    #: seconds a process trusts its last read of the shared states
    refresh: float = 1.0


class Circuits:
    """The shared circuits as one process sees them. Thread-safe.

    ``on_change(dependency, opened)`` is told of each state change this process made.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        config: CircuitConfig = CircuitConfig(),
        *,
        on_change: Callable[[str, bool], None] = lambda dependency, opened: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._r, self._keys, self._cfg = client, keys, config
        self._on_change, self._clock = on_change, clock
        self._open_script = lua.Runner(client, scripts.CIRCUIT_OPEN)
        self._close_script = lua.Runner(client, scripts.CIRCUIT_CLOSE)
        self._lock = threading.Lock()
        self._open: set[str] = set()
        self._read_at = -float("inf")
        self._in_a_row: dict[str, int] = dict.fromkeys(DEPENDENCIES, 0)

    @property
    def config(self) -> CircuitConfig:
        return self._cfg

    def is_open(self, dependency: str) -> bool:
        """What this process believes now (refreshed at most every ``refresh`` seconds)."""
        self._refresh()
        with self._lock:
            return dependency in self._open

    def admit(self, dependency: str) -> bool:
        """May this call go to ``dependency``? Raises DependencyDown while its circuit is
        open, except for the one probe per ``probe_interval``: True means this call is
        that probe."""
        if not self.is_open(dependency):
            return False
        slot = self._keys.circuit_probe(dependency)
        try:
            probe = bool(
                self._r.set(slot, "1", nx=True, px=max(1, int(self._cfg.probe_interval * 1000)))
            )
        except UNAVAILABLE:
            probe = False
        if not probe:
            raise DependencyDown(dependency, self._cfg.probe_interval)
        return True

    def hold_back(self, *dependencies: str) -> None:
        """Raise DependencyDown when one of ``dependencies`` is open and its probe slot is
        taken: a task checks this before it spends anything (a rate-limit slot, a lock, an
        order query for a push that cannot go out). With the slot free it goes on, and
        likely becomes the probe when it calls."""
        for dependency in dependencies:
            if not self.is_open(dependency):
                continue
            try:
                probing = bool(self._r.exists(self._keys.circuit_probe(dependency)))
            except UNAVAILABLE:
                probing = True
            if probing:
                raise DependencyDown(dependency, self._cfg.probe_interval)

    def succeeded(self, dependency: str, *, probe: bool = False) -> None:
        """The dependency answered (anything but an outage). A probe's answer closes the
        circuit for everyone."""
        with self._lock:
            self._in_a_row[dependency] = 0
            was_open = dependency in self._open
        if probe or was_open:
            self._close(dependency)

    def failed(self, dependency: str, error: Exception) -> Exception:
        """An outage-kind failure: the error to raise. ``DependencyDown`` (retry without
        spending the event's budget) when the circuit is open now — opened by this
        failure or by others — else ``error`` itself (it may still be the event's own)."""
        with self._lock:
            self._in_a_row[dependency] += 1
            opens = self._in_a_row[dependency] >= self._cfg.threshold
        if opens:
            self._trip(dependency, error)
        if self.is_open(dependency):
            return DependencyDown(dependency, self._cfg.probe_interval)
        return error

    # --- shared state ---------------------------------------------------------------------
    def _refresh(self, *, force: bool = False) -> None:
        now = self._clock()
        with self._lock:
            if not force and now - self._read_at < self._cfg.refresh:
                return
            self._read_at = now
        try:
            raw = self._r.hgetall(self._keys.circuits)
        except UNAVAILABLE:
            return  # keep the last view: Redis down is the ledger's problem, not a verdict
        states = {text(k): text(v) for k, v in raw.items()}
        with self._lock:
            self._open = {d for d in DEPENDENCIES if states.get(d) == "open"}

    def _trip(self, dependency: str, error: Exception) -> None:
        try:
            changed = int(self._open_script(self._args(dependency)))
        except UNAVAILABLE:
            return
        with self._lock:
            self._open.add(dependency)
            self._in_a_row[dependency] = 0
        if changed:
            log.error(
                "circuit_opened",
                dependency=dependency,
                error=type(error).__name__,
                detail=str(error)[:200],
            )
            self._on_change(dependency, True)

    def _close(self, dependency: str) -> None:
        try:
            changed = int(self._close_script(self._args(dependency)))
        except UNAVAILABLE:
            return
        with self._lock:
            self._open.discard(dependency)
        if changed:
            log.warning("circuit_closed", dependency=dependency)
            self._on_change(dependency, False)

    def _args(self, dependency: str) -> scripts.CircuitArgs:
        return scripts.CircuitArgs(circuits=self._keys.circuits, dependency=dependency)

    def states(self) -> dict[str, bool]:
        """Each dependency: open? (read now, for the poller's gauge)."""
        self._refresh(force=True)
        with self._lock:
            return {d: d in self._open for d in DEPENDENCIES}


class Breaker:
    """One dependency's circuit, for the client that calls it: ``breaker.call(attempt)``
    runs one attempt through it. Without circuits (operators' tools) it only calls."""

    def __init__(self, circuits: Circuits | None, dependency: str) -> None:
        self._circuits, self.dependency = circuits, dependency

    def call(self, attempt: Callable[[], T], outage: type[Exception]) -> T:
        """``attempt()``, unless the circuit is open (DependencyDown, the dependency not
        called). An ``outage`` error is recorded, and raised as DependencyDown when the
        circuit is open by now; any other answer counts as the dependency answering."""
        circuits = self._circuits
        if circuits is None:
            return attempt()
        probe = circuits.admit(self.dependency)
        try:
            result = attempt()
        except outage as exc:
            error = circuits.failed(self.dependency, exc)
            if error is exc:
                raise
            raise error from exc
        except Exception:
            circuits.succeeded(self.dependency, probe=probe)
            raise
        circuits.succeeded(self.dependency, probe=probe)
        return result

"""A line logged at most once per interval: an error that repeats every tick of a loop is
told once, not a hundred times a second. Plain logic over a clock; one owner thread."""

from __future__ import annotations

from collections.abc import Callable


class Throttle:
    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval, self._clock = interval, clock
        self._last = -float("inf")

    def allow(self) -> bool:
        """True at most once per ``interval``; the caller logs then."""
        now = self._clock()
        if now - self._last < self._interval:
            return False
        self._last = now
        return True

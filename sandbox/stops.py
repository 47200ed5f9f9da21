"""``with`` for the stand-ins that end with ``stop()``: the block's end stops them."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StopsOnExit:
    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

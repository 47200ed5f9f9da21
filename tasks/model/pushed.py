"""What the OMS last received for a delivery: the ledger records it, the guard compares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pushed:
    """What the OMS last received for a delivery."""

    fingerprint: str
    rank: int

"""The shared circuits' state changes (tasks.http.circuit): one hash, one field per
dependency, changed atomically so that exactly one process logs each change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import SERVER_MS, Key, Script


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitArgs:
    circuits: Key
    dependency: str


# Open a dependency's circuit.
CIRCUIT_OPEN: Final = Script(
    CircuitArgs,
    """
-- Reply: 1 when this call opened the circuit (it logs the change), else 0.
-- KEYS:
--   circuits    the circuits hash
-- ARGV:
--   dependency  the dependency whose circuit opens
local circuits = KEYS[1]
local dependency = ARGV[1]

if redis.call('HGET', circuits, dependency) == 'open' then return 0 end
redis.call('HSET', circuits, dependency, 'open', dependency .. ':opened_at', server_ms())
redis.call('HINCRBY', circuits, dependency .. ':opens', 1)
return 1
""",
    (SERVER_MS,),
)

# Close a dependency's circuit.
CIRCUIT_CLOSE: Final = Script(
    CircuitArgs,
    """
-- Reply: 1 when this call closed the circuit, else 0.
-- KEYS:
--   circuits    the circuits hash
-- ARGV:
--   dependency  the dependency whose circuit closes
local circuits = KEYS[1]
local dependency = ARGV[1]

if redis.call('HGET', circuits, dependency) ~= 'open' then return 0 end
redis.call('HSET', circuits, dependency, 'closed')
return 1
""",
)

"""Lua scripts with named arguments.

Each script is a ``Script``: its Lua text and the frozen dataclass that builds its KEYS
and ARGV, keyword-only (so that no caller can pass two arguments in each other's place).
The dataclass's fields are in the script's order: a field typed ``Key`` is a Redis key
(KEYS), any other field an argument (ARGV; a ``bool`` is sent as '1' or '0').
A script that takes a batch ends with one field holding a tuple of items, each a
dataclass of its own: every item's keys follow the fixed keys, every item's arguments the
fixed arguments, item after item.

The script's header documents each key and argument and binds it to a local of the same
name (``local event_key = KEYS[1]``; a batch as a table of records); nothing below the
header reads KEYS or ARGV. tests/unit/test_scripts.py fails when a header and its
dataclass disagree in names, count or order.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar

import redis

#: the mark of a field that is a Redis key
KEY: Final = "KEYS"
#: a Redis key the script touches (declared in KEYS, as Redis Cluster and ACLs want)
Key = Annotated[str, KEY]

C = TypeVar("C")

# Milliseconds of Redis server time: leases and circuits are judged on one clock, whatever
# the hosts'.
SERVER_MS: Final = """
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""


@dataclass(frozen=True, slots=True)
class Script(Generic[C]):
    """One Lua script: ``fragments`` (shared functions) then ``body`` (header first)."""

    call: type[C]
    body: str
    fragments: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return "".join(self.fragments) + self.body


@dataclass(frozen=True, slots=True)
class Layout:
    """Which fields of a call dataclass are keys, which arguments, and its batch."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    #: the last field, when it holds a batch: (its name, its items' layout)
    batch: tuple[str, Layout] | None = None


_layouts: dict[type[Any], Layout] = {}


def layout(call: type[Any]) -> Layout:
    """The layout of a call dataclass (see the module docstring); worked out once."""
    found = _layouts.get(call)
    if found is None:
        found = _layouts[call] = _layout(call)
    return found


def _layout(call: type[Any]) -> Layout:
    hints = typing.get_type_hints(call, include_extras=True)
    keys: list[str] = []
    args: list[str] = []
    fields = dataclasses.fields(call)
    for position, field in enumerate(fields):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            if position != len(fields) - 1:
                raise TypeError(f"{call.__name__}.{field.name}: a batch must be the last field")
            item = layout(typing.get_args(hint)[0])
            if item.batch is not None:
                raise TypeError(f"{call.__name__}.{field.name}: a batch cannot hold a batch")
            return Layout(tuple(keys), tuple(args), (field.name, item))
        is_key = typing.get_origin(hint) is Annotated and KEY in hint.__metadata__
        (keys if is_key else args).append(field.name)
    return Layout(tuple(keys), tuple(args))


def _arg(value: object) -> Any:
    if isinstance(value, bool):
        return "1" if value else "0"
    return value


def arguments(call: Any) -> tuple[list[str], list[Any]]:
    """The KEYS and the ARGV of ``call``, in the script's order."""
    shape = layout(type(call))
    keys: list[str] = [getattr(call, name) for name in shape.keys]
    args: list[Any] = [_arg(getattr(call, name)) for name in shape.args]
    if shape.batch is not None:
        name, item = shape.batch
        for entry in getattr(call, name):
            keys += [getattr(entry, key) for key in item.keys]
            args += [_arg(getattr(entry, arg)) for arg in item.args]
    return keys, args


class Runner(Generic[C]):
    """A script registered with a client (EVALSHA, loaded again after a NOSCRIPT)."""

    def __init__(self, client: redis.Redis, script: Script[C]) -> None:
        self._script = client.register_script(script.source)

    def __call__(self, call: C, *, client: redis.client.Pipeline | None = None) -> Any:
        keys, args = arguments(call)
        return self._script(keys=keys, args=args, client=client)

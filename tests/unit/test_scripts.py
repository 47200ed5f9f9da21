"""Every Lua script and the dataclass that builds its arguments agree (tasks.ledger.lua):
the script's header binds each key and argument to a local named as the dataclass's field,
in the same order and count, and documents it; nothing below the header reads KEYS or
ARGV. The check reads the Lua as text, so a script and its caller cannot drift apart
silently (one argument out of place would corrupt the ledger without an error)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

import tasks.ledger.scripts as family
from tasks.ledger.lua import Key, Layout, Script, arguments, layout
from tasks.ledger.scripts.deliveries import FinishArgs
from tasks.ledger.scripts.events import ClaimArgs, ClaimItem

ROOT = Path(__file__).resolve().parents[2]

_BINDING = r"(?:tonumber\()?(KEYS|ARGV)\[([^\]]+)\]\)?"
_FIXED = re.compile(rf"local (\w+) = {_BINDING}")
_TABLE = re.compile(r"local (\w+) = \{\}")
_LOOP = re.compile(r"for i = 1, (.+) do")
_RECORD = re.compile(r"(\w+)\[i\] = \{(.*)\}")
_ENTRY = re.compile(rf"(\w+) = {_BINDING}")
_DOCUMENTED = re.compile(r"--\s{2,}(\w+)(?:\s{2,}|$)")
_ARITHMETIC = re.compile(r"[\d\si+\-*/()]+")


def all_scripts() -> dict[str, Script[Any]]:
    found: dict[str, Script[Any]] = {}
    for info in pkgutil.iter_modules(family.__path__):
        module = importlib.import_module(f"{family.__name__}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Script):
                found[f"{info.name}.{name}"] = value
    return found


@dataclass
class Header:
    """What a script's header binds: (name, KEYS or ARGV, index expression) in order."""

    fixed: list[tuple[str, str, str]] = field(default_factory=list)
    batch: str | None = None
    bound: str = ""
    record: list[tuple[str, str, str]] = field(default_factory=list)
    documented: set[str] = field(default_factory=set)
    rest: list[str] = field(default_factory=list)


def read_header(body: str) -> Header:
    """Split a script body into its header (comments, then bindings) and the rest."""
    header = Header()
    lines = [line.strip() for line in body.strip().splitlines()]
    at = 0
    while at < len(lines):
        line = lines[at]
        if not line or line.startswith("--"):
            if match := _DOCUMENTED.match(line):
                header.documented.add(match.group(1))
        elif match := _FIXED.fullmatch(line):
            header.fixed.append(match.groups())  # type: ignore[arg-type]
        elif (match := _TABLE.fullmatch(line)) and header.batch is None:
            header.batch = match.group(1)
            loop = _LOOP.fullmatch(lines[at + 1])
            end = lines.index("end", at)
            record = _RECORD.fullmatch(" ".join(lines[at + 2 : end]))
            if loop is None or record is None or record.group(1) != header.batch:
                break
            header.bound = loop.group(1)
            entries = [e.strip() for e in record.group(2).split(",") if e.strip()]
            for entry in entries:
                if (bound := _ENTRY.fullmatch(entry)) is None:
                    raise AssertionError(f"not a binding: {entry!r}")
                header.record.append(bound.groups())  # type: ignore[arg-type]
            at = end
        else:
            break
        at += 1
    header.rest = lines[at:]
    return header


def evaluate(expression: str, **names: int) -> int:
    assert _ARITHMETIC.fullmatch(expression), f"not plain arithmetic: {expression!r}"
    value = eval(expression, {"__builtins__": {}}, names)  # only digits, i, + - * / ( )
    assert value == int(value), expression
    return int(value)


def problems(script: Script[Any]) -> list[str]:
    """Where ``script``'s header and its dataclass disagree, or KEYS/ARGV is read below
    the header; [] when they agree."""
    header = read_header(script.body)
    shape = layout(script.call)
    found: list[str] = []
    for line in header.rest:
        if re.search(r"\b(KEYS|ARGV)\b", line.split("--")[0]):
            found.append(f"KEYS/ARGV below the header: {line!r}")
    names: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for name, source, index in header.fixed:
        names[source].append(name)
        if evaluate(index) != len(names[source]):
            found.append(f"{name} = {source}[{index}]: expected {source}[{len(names[source])}]")
    if names["KEYS"] != list(shape.keys):
        found.append(f"KEYS {names['KEYS']} != the dataclass's {list(shape.keys)}")
    if names["ARGV"] != list(shape.args):
        found.append(f"ARGV {names['ARGV']} != the dataclass's {list(shape.args)}")
    found += _batch_problems(header, shape)
    bound = [name for name, _, _ in header.fixed + header.record]
    found += [
        f"{name} is not documented in the header" for name in bound if name not in header.documented
    ]
    return found


def _batch_problems(header: Header, shape: Layout) -> list[str]:
    if shape.batch is None or header.batch is None:
        if shape.batch is None and header.batch is None:
            return []
        return [f"a batch on one side only: the script's {header.batch}, {shape.batch}"]
    name, item = shape.batch
    found = [] if header.batch == name else [f"batch {header.batch!r} != the field {name!r}"]
    fixed = {"KEYS": len(shape.keys), "ARGV": len(shape.args)}
    each = {"KEYS": list(item.keys), "ARGV": list(item.args)}
    for source, expected in each.items():
        entries = [(n, index) for n, s, index in header.record if s == source]
        if [n for n, _ in entries] != expected:
            found.append(f"per item {source} {[n for n, _ in entries]} != {expected}")
            continue
        for i in (1, 2):
            start = fixed[source] + len(expected) * (i - 1)
            at = [evaluate(index, i=i) for _, index in entries]
            if at != list(range(start + 1, start + 1 + len(expected))):
                found.append(f"item {i}'s {source} at {at}, expected from {start + 1}")
    for n in (1, 3):
        count = header.bound
        for source in ("KEYS", "ARGV"):
            count = count.replace(f"#{source}", f"({fixed[source]} + {len(each[source])} * {n})")
        if evaluate(count) != n:
            found.append(f"the loop 1, {header.bound} runs {evaluate(count)} times for {n}")
    return found


@pytest.mark.parametrize("name", sorted(all_scripts()))
def test_each_script_and_its_dataclass_agree(name: str) -> None:
    assert problems(all_scripts()[name]) == []


@pytest.mark.parametrize("name", sorted(all_scripts()))
def test_each_script_is_called_with_named_fields_only(name: str) -> None:
    # (a dataclass built by keyword cannot take two same-typed arguments in swapped places)
    call = all_scripts()[name].call
    shapes = [call]
    if (batch := layout(call).batch) is not None:
        shapes.append(typing.get_args(typing.get_type_hints(call)[batch[0]])[0])
    for shape in shapes:
        assert all(f.kw_only for f in fields(shape)), f"{shape.__name__} is not keyword-only"


def test_every_family_is_found() -> None:
    assert {name.split(".")[0] for name in all_scripts()} == {
        "circuits",
        "deliveries",
        "events",
        "leases",
        "milestones",
        "order_api",
    }


def test_scripts_live_with_the_ledger_and_run_through_their_dataclass() -> None:
    # Given every production module
    files = sorted(f for top in ("config", "tasks", "worker") for f in (ROOT / top).rglob("*.py"))
    scripts_dir = ROOT / "tasks" / "ledger" / "scripts"
    lua_helper = ROOT / "tasks" / "ledger" / "lua.py"
    # Then Lua is written only in tasks/ledger/scripts (and the helper's shared fragment)
    writing_lua = {f for f in files if "redis.call(" in f.read_text()}
    assert {f for f in writing_lua if scripts_dir not in f.parents} == {lua_helper}
    # and only the helper registers a script with a client
    registering = {f for f in files if "register_script(" in f.read_text()}
    assert registering == {lua_helper}


# --- the check itself: it catches what it is for --------------------------------------------
@dataclass(frozen=True, slots=True)
class Pair:
    first_key: Key
    second_key: Key
    ttl: int
    reason: str


_GOOD = """
-- KEYS:
--   first_key   the first
--   second_key  the second
-- ARGV:
--   ttl         ttl (s)
--   reason      why
local first_key = KEYS[1]
local second_key = KEYS[2]
local ttl = tonumber(ARGV[1])
local reason = ARGV[2]

redis.call('HSET', first_key, 'why', reason)
redis.call('EXPIRE', second_key, ttl)
"""


def test_a_script_that_agrees_passes() -> None:
    assert problems(Script(Pair, _GOOD)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("redis.call('EXPIRE', second_key, ttl)", "redis.call('EXPIRE', KEYS[2], ttl)"), "below"),
        (("'why', reason)", "'why', ARGV[2])"), "below"),
        (("local reason = ARGV[2]\n", ""), "ARGV ['ttl'] != the dataclass's ['ttl', 'reason']"),
        (("local ttl = tonumber(ARGV[1])", "local ttl = tonumber(ARGV[2])"), "ttl = ARGV[2]"),
        (("local first_key = KEYS[1]", "local first = KEYS[1]"), "KEYS ['first', 'second_key']"),
        (("--   reason      why\n", ""), "reason is not documented"),
    ],
    ids=["key-in-body", "arg-in-body", "count", "position", "name", "undocumented"],
)
def test_a_script_that_disagrees_fails_the_check(change: tuple[str, str], expected: str) -> None:
    # Given a script that agrees with its dataclass, changed in one place
    old, new = change
    assert old in _GOOD
    script = Script(Pair, _GOOD.replace(old, new))
    # Then the check names the change
    found = problems(script)
    assert any(expected in p for p in found), found


def test_two_arguments_swapped_in_the_dataclass_fail_the_check() -> None:
    @dataclass(frozen=True, slots=True)
    class Swapped:
        first_key: Key
        second_key: Key
        reason: str
        ttl: int

    assert problems(Script(Swapped, _GOOD)) == [
        "ARGV ['ttl', 'reason'] != the dataclass's ['reason', 'ttl']"
    ]


@dataclass(frozen=True, slots=True)
class Lock:
    lock_key: Key
    token: str


@dataclass(frozen=True, slots=True)
class Locks:
    index_key: Key
    ttl: int
    locks: tuple[Lock, ...]


_BATCH = """
-- KEYS:
--   index_key  an index
-- then per lock:
--   lock_key   a lock
-- ARGV:
--   ttl        ttl (ms)
-- then per lock:
--   token      its token
local index_key = KEYS[1]
local ttl = ARGV[1]
local locks = {}
for i = 1, #KEYS - 1 do
  locks[i] = {
    lock_key = KEYS[i + 1],
    token = ARGV[i + 1],
  }
end

for _, l in ipairs(locks) do redis.call('SET', l.lock_key, l.token, 'PX', ttl) end
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (None, None),
        (("token = ARGV[i + 1]", "token = ARGV[i]"), "item 1's ARGV at [1]"),
        (("lock_key = KEYS[i + 1]", "lock_key = KEYS[2 * i]"), "item 2's KEYS at [4]"),
        (("for i = 1, #KEYS - 1 do", "for i = 1, #KEYS do"), "the loop 1, #KEYS runs"),
        (("ipairs(locks)", "ipairs(KEYS)"), "below"),
    ],
    ids=["agrees", "arg-offset", "key-stride", "loop-bound", "keys-in-body"],
)
def test_a_batch_is_checked_item_by_item(
    change: tuple[str, str] | None, expected: str | None
) -> None:
    body = _BATCH if change is None else _BATCH.replace(*change)
    assert change is None or change[0] in _BATCH
    found = problems(Script(Locks, body))
    if expected is None:
        assert found == []
    else:
        assert any(expected in p for p in found), found


def test_a_batch_must_be_the_last_field() -> None:
    @dataclass(frozen=True, slots=True)
    class Misplaced:
        locks: tuple[Lock, ...]
        ttl: int

    with pytest.raises(TypeError, match="last field"):
        layout(Misplaced)


# --- what the dataclasses send --------------------------------------------------------------
def test_a_batch_sends_fixed_keys_and_arguments_first_then_each_item() -> None:
    call = ClaimArgs(
        now=1.5,
        claim_ttl=60,
        done_ttl=600,
        requests=(
            ClaimItem(
                event_key="evt:a",
                delivery_key="dlv:a",
                payload_hash="ha",
                implied_rank=3,
                implied_state="SHIPPED",
            ),
            ClaimItem(
                event_key="evt:b",
                delivery_key="evt:b",
                payload_hash="hb",
                implied_rank=-1,
                implied_state="",
            ),
        ),
    )
    assert arguments(call) == (
        ["evt:a", "dlv:a", "evt:b", "evt:b"],
        [1.5, 60, 600, "ha", 3, "SHIPPED", "hb", -1, ""],
    )


def test_flags_are_sent_as_one_and_zero() -> None:
    call = FinishArgs(
        lock_key="lock",
        delivery_key="dlv",
        open_index="open",
        event_key="evt",
        queued_index="queued",
        tracker_key="lock",
        token="t",
        now=1.0,
        state_ttl=10,
        done_ttl=20,
        member="bp/o/d",
        has_record=True,
        fingerprint="fp",
        rank=2,
        state="SHIPPED",
        terminal=False,
        complete=True,
        dedup_key="dk",
        how="synced",
        payload_hash="h",
        open_bound=100,
        has_tracker=False,
        business_product_id="bp",
        order_id="o",
        delivery_id="d",
        tracker_ttl=0,
    )
    keys, args = arguments(call)
    assert keys == ["lock", "dlv", "open", "evt", "queued", "lock"]
    assert args[5] == "1" and args[9] == "0" and args[10] == "1" and args[15] == "0"
    assert len(args) == 20

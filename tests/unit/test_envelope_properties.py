"""Properties of tasks.events.envelope and tasks.events.resources over mutated events.

Genuine delivery events are built from strategies in every shape the contract allows
(nine detail-types of three API generations, extra pairs and decoy resources, any time
zone, any layout),
then damaged: fields dropped or retyped, resources garbled, the body cut or spliced.
Whatever comes in, the parsers either return the documented fields or raise
MalformedEvent; never another exception. tests/unit/test_envelope.py holds the examples
and the properties over arbitrary JSON; these start from valid events and stay close to
them, where a parser's deeper branches are.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.errors import MalformedEvent
from tasks.events.catalog import DELIVERY_EVENTS, is_delivery_event
from tasks.events.envelope import DeliveryEvent, Envelope, parse_delivery_event
from tasks.events.resources import is_valid_id, parse_resource

REQUIRED = ("id", "detail-type", "time", "resources")
ID_HEAD = string.ascii_letters + string.digits
ID_TAIL = ID_HEAD + "._:~+=@-"
#: an idempotency key may also be base64 (buy-with-prime-api.md section 1), '/' included
BASE64_KEY = re.compile(r"[A-Za-z0-9+/=]{1,512}")
#: characters outside the id alphabet that still keep a resource in one '/'-separated piece
FORBIDDEN = " \t\n\r\"'{}()#$%&*,;<>?[]\\^`|\x00\x1b\u00e9\u0435\u200b\u202e\u2028\ufeff\ud800"

ids = st.builds(str.__add__, st.sampled_from(ID_HEAD), st.text(ID_TAIL, max_size=40))
#: what a key no delivery event needs may hold: any text in one '/'-separated piece (a
#: return id such as 04caec9f-…#RF, or worse): carried along, never read
carried_values = ids | st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=20)
#: resource keys other than the two a delivery event needs
other_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True).filter(
    lambda key: key not in ("order", "delivery")
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)


def render_time(moment: datetime, style: str) -> str:
    if style == "zulu":
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return moment.isoformat(timespec="seconds")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


times = st.builds(
    render_time,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones),
    st.sampled_from(["zulu", "offset", "fraction"]),
)


def delivery_resource(
    business_product_id: str,
    pairs: tuple[tuple[str, str], ...],
    *,
    trailing_slash: bool = False,
    prefix: str = "businessProduct",
) -> str:
    parts = [prefix, business_product_id, *[part for pair in pairs for part in pair]]
    return "/".join(parts) + ("/" if trailing_slash else "")


@dataclass(frozen=True)
class Genuine:
    """A well-formed delivery event and the delivery it names."""

    doc: dict[str, Any]
    business_product_id: str
    order_id: str
    delivery_id: str
    #: key/value pairs of the delivery resource, in their order (order and delivery among them)
    pairs: tuple[tuple[str, str], ...]
    #: resources that name an order or a delivery but never both, before the real one
    decoys: tuple[str, ...]

    def with_resource(self, text: str) -> dict[str, Any]:
        """The event with its delivery resource replaced by ``text``."""
        return {**self.doc, "resources": [*self.decoys, text]}

    @property
    def dedup_key(self) -> str:
        key = (self.doc.get("detail") or {}).get("idempotencyKey")
        return str(self.doc["id"]) if key is None else str(key)


@st.composite
def decoys(draw: st.DrawFn) -> str:
    """A resource that names an order or a delivery, never both, or nothing a delivery
    event needs (a return, an odd string)."""
    shape = draw(st.sampled_from(["", "/", "order", "delivery", "tracker", "return", "odd"]))
    if shape in ("order", "delivery"):
        shape = f"/{shape}/{draw(ids)}"
    elif shape == "tracker":
        shape = f"/carrier/{draw(ids)}/tracker/{draw(ids)}"
    elif shape == "return":
        key = draw(st.sampled_from(["return", "returnDelivery", "returnLineItem"]))
        shape = f"/{key}/{draw(carried_values)}"
    elif shape == "odd":
        return draw(st.text(max_size=30).filter(lambda t: "order" not in t and "delivery" not in t))
    return f"businessProduct/{draw(ids)}{shape}"


@st.composite
def genuine_events(draw: st.DrawFn) -> Genuine:
    detail_type = draw(st.sampled_from(sorted(DELIVERY_EVENTS)))
    bp, order, delivery = draw(ids), draw(ids), draw(ids)
    extras = draw(
        st.lists(st.tuples(other_keys, carried_values), max_size=2, unique_by=lambda kv: kv[0])
    )
    pairs = tuple(draw(st.permutations([("order", order), ("delivery", delivery), *extras])))
    others = tuple(draw(st.lists(decoys(), max_size=2)))
    detail: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["note", "x", "state"]), json_values, max_size=2)
    )
    if detail_type.startswith("PACKAGE_") or draw(st.booleans()):
        detail["idempotencyKey"] = draw(ids)
    doc: dict[str, Any] = {
        "version": "0",
        "id": draw(ids),
        "detail-type": detail_type,
        "source": "aws.partner/buywithprime/sandbox",
        "account": "000000000000",
        "time": draw(times),
        "region": "us-east-1",
        "resources": [
            *others,
            delivery_resource(bp, pairs, trailing_slash=draw(st.booleans())),
        ],
        "detail": draw(st.sampled_from([detail, detail or None])),
    }
    if not detail and draw(st.booleans()):
        del doc["detail"]  # a missing detail reads as an empty one
    return Genuine(doc, bp, order, delivery, pairs, others)


@st.composite
def serialised(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    """``doc`` as JSON text, in any key order and layout."""
    shuffled = dict(draw(st.permutations(list(doc.items()))))
    indent = draw(st.sampled_from([None, 0, 2]))
    separators = None if indent is not None else draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    return json.dumps(shuffled, indent=indent, separators=separators)


def parsed_or_malformed(body: str) -> DeliveryEvent | Envelope | MalformedEvent:
    """The parse result, or the MalformedEvent raised; any other exception escapes."""
    try:
        return parse_delivery_event(body)
    except MalformedEvent as exc:
        assert str(exc) and "\n" not in str(exc)
        return exc


def assert_documented_fields(result: DeliveryEvent | Envelope, body: str) -> None:
    """What parsed holds what the body says, within the documented rules."""
    doc = json.loads(body)
    envelope = result.envelope if isinstance(result, DeliveryEvent) else result
    assert is_valid_id(envelope.id) and envelope.id == doc["id"]
    assert envelope.detail_type == doc["detail-type"] and envelope.detail_type.strip()
    assert envelope.time == doc["time"]
    datetime.fromisoformat(envelope.time.replace("Z", "+00:00"))
    assert envelope.resources == tuple(doc["resources"])
    assert envelope.detail == (doc.get("detail") or {})
    key = envelope.detail.get("idempotencyKey")
    assert envelope.dedup_key == (envelope.id if key is None else key)
    assert is_valid_id(envelope.dedup_key) or BASE64_KEY.fullmatch(envelope.dedup_key)
    assert len(envelope.payload_hash) == 32 and set(envelope.payload_hash) <= set(string.hexdigits)
    if not isinstance(result, DeliveryEvent):
        assert not is_delivery_event(envelope.detail_type)
        return
    assert result.implied_state is DELIVERY_EVENTS[envelope.detail_type]
    named = (result.business_product_id, result.order_id, result.delivery_id)
    assert all(is_valid_id(value) for value in named)
    # Some resource says exactly these three ids, as businessProduct/<bp>/.../order/<o>/...
    assert any(_names(text, *named) for text in envelope.resources)


def _names(resource: str, business_product_id: str, order_id: str, delivery_id: str) -> bool:
    parts = resource.removesuffix("/").split("/")
    pairs = dict(zip(parts[2::2], parts[3::2], strict=False))
    return parts[:2] == ["businessProduct", business_product_id] and (
        pairs.get("order"),
        pairs.get("delivery"),
    ) == (order_id, delivery_id)


# --- genuine events ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(event=genuine_events(), data=st.data())
def test_a_genuine_event_round_trips_its_delivery_exactly(
    event: Genuine, data: st.DataObject
) -> None:
    # Given a genuine delivery event, in any key order and layout
    body = data.draw(serialised(event.doc))
    # When its SQS body is parsed
    parsed = parse_delivery_event(body)
    # Then the delivery it names comes back exactly, with the documented dedup key
    assert isinstance(parsed, DeliveryEvent)
    assert (parsed.business_product_id, parsed.order_id, parsed.delivery_id) == (
        event.business_product_id,
        event.order_id,
        event.delivery_id,
    )
    assert parsed.envelope.dedup_key == event.dedup_key
    assert_documented_fields(parsed, body)


@settings(max_examples=200, deadline=None)
@given(event=genuine_events(), data=st.data())
def test_layout_and_key_order_do_not_change_what_an_event_is(
    event: Genuine, data: st.DataObject
) -> None:
    # Given one event written out twice, in two layouts and key orders
    first, second = data.draw(serialised(event.doc)), data.draw(serialised(event.doc))
    # Then both are the same event: same dedup key, same payload hash
    a, b = parse_delivery_event(first), parse_delivery_event(second)
    assert isinstance(a, DeliveryEvent) and isinstance(b, DeliveryEvent)
    assert (a.envelope.dedup_key, a.envelope.payload_hash) == (
        b.envelope.dedup_key,
        b.envelope.payload_hash,
    )


# --- damage that must be refused -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(event=genuine_events(), dropped=st.sets(st.sampled_from(REQUIRED), min_size=1))
def test_an_event_missing_a_required_field_is_malformed(event: Genuine, dropped: set[str]) -> None:
    # Given a genuine event without one or more of id, detail-type, time, resources
    doc = {name: value for name, value in event.doc.items() if name not in dropped}
    # Then it is refused as malformed
    assert isinstance(parsed_or_malformed(json.dumps(doc)), MalformedEvent)


non_strings = json_values.filter(lambda value: not isinstance(value, str))
retyped = st.one_of(
    st.tuples(st.sampled_from(["id", "detail-type", "time"]), non_strings),
    st.tuples(st.just("resources"), non_strings.filter(lambda value: not isinstance(value, list))),
    st.tuples(
        st.just("resources"),
        st.lists(st.text(max_size=8) | non_strings, min_size=1).filter(
            lambda values: not all(isinstance(v, str) for v in values)
        ),
    ),
    st.tuples(
        st.just("detail"), json_values.filter(lambda value: not isinstance(value, dict | None))
    ),
    st.tuples(
        st.just("detail.idempotencyKey"), non_strings.filter(lambda value: value is not None)
    ),
)


@settings(max_examples=300, deadline=None)
@given(event=genuine_events(), change=retyped)
def test_a_field_of_the_wrong_type_is_malformed(event: Genuine, change: tuple[str, Any]) -> None:
    # Given a genuine event with one field replaced by a value of another JSON type
    name, value = change
    doc = dict(event.doc)
    if name == "detail.idempotencyKey":
        doc["detail"] = {**(doc.get("detail") or {}), "idempotencyKey": value}
    else:
        doc[name] = value
    # Then it is refused as malformed
    assert isinstance(parsed_or_malformed(json.dumps(doc)), MalformedEvent)


@st.composite
def broken_resources(draw: st.DrawFn, event: Genuine) -> str:
    """The event's delivery resource, damaged so that it can no longer name the delivery."""
    bp, pairs = event.business_product_id, event.pairs
    how = draw(st.sampled_from(["drop-pair", "bad-id", "bad-prefix", "dangling-needed-key"]))
    if how == "drop-pair":
        gone = draw(st.sampled_from(["order", "delivery"]))
        return delivery_resource(bp, tuple(pair for pair in pairs if pair[0] != gone))
    if how == "bad-prefix":
        wrong = draw(st.sampled_from(["BusinessProduct", "businessProducts", "bp", ""]))
        return delivery_resource(bp, pairs, prefix=wrong)
    if how == "dangling-needed-key":
        return delivery_resource(bp, pairs) + "/" + draw(st.sampled_from(["order", "delivery"]))
    # One of the three ids gets a character outside the id alphabet somewhere.
    target = draw(st.sampled_from(["businessProduct", "order", "delivery"]))
    value = bp if target == "businessProduct" else dict(pairs)[target]
    at = draw(st.integers(0, len(value)))
    spoiled = value[:at] + draw(st.sampled_from(FORBIDDEN)) + value[at:]
    if target == "businessProduct":
        return delivery_resource(spoiled, pairs)
    return delivery_resource(bp, tuple((k, spoiled if k == target else v) for k, v in pairs))


@settings(max_examples=300, deadline=None)
@given(event=genuine_events(), data=st.data())
def test_a_delivery_event_whose_resource_cannot_name_the_delivery_is_malformed(
    event: Genuine, data: st.DataObject
) -> None:
    # Given a genuine event whose delivery resource lost a pair, an id or its prefix, or
    # ends in a needed key without a value (the decoys beside it never carry both order
    # and delivery)
    broken = data.draw(broken_resources(event))
    body = json.dumps(event.with_resource(broken))
    # Then no resource names the delivery: the event is malformed
    assert isinstance(parsed_or_malformed(body), MalformedEvent)
    # And the resource parser alone refuses the damaged resource or finds a pair missing
    try:
        resource = parse_resource(broken, {"order", "delivery"})
    except MalformedEvent:
        return
    assert resource is None or not {"order", "delivery"} <= resource.pairs.keys()


@settings(max_examples=200, deadline=None)
@given(event=genuine_events(), data=st.data())
def test_a_cut_off_body_is_malformed(event: Genuine, data: st.DataObject) -> None:
    # Given a genuine event's body cut anywhere before its end
    body = data.draw(serialised(event.doc))
    cut = data.draw(st.integers(0, len(body) - 1))
    # Then what arrived is malformed
    assert isinstance(parsed_or_malformed(body[:cut]), MalformedEvent)


# --- any damage at all ------------------------------------------------------------------------

fields = st.sampled_from([*REQUIRED, "detail", "detail.idempotencyKey", "version", "source"])
nasty_text = st.text(alphabet=st.sampled_from(ID_TAIL + "/" + FORBIDDEN), max_size=40)
mutations = st.one_of(
    st.tuples(st.just("drop"), fields),
    st.tuples(st.just("set"), fields, json_values | nasty_text),
    st.tuples(st.just("garble"), st.integers(0, 100), st.integers(0, 100), nasty_text),
    st.tuples(st.just("add-resource"), nasty_text | decoys()),
    st.tuples(
        st.just("detail-type"), st.sampled_from(["ORDER_CONFIRMED", "package_delivered", ""])
    ),
)


def mutate(doc: dict[str, Any], mutation: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of ``doc`` with one mutation applied ("garble" hits the delivery resource)."""
    doc = dict(doc)
    if isinstance(doc.get("detail"), dict):
        doc["detail"] = dict(doc["detail"])
    kind, *args = mutation
    if kind in ("drop", "set"):
        name = args[0]
        target: Any = doc
        key = name
        if name == "detail.idempotencyKey":
            target, key = doc.get("detail"), "idempotencyKey"
        if not isinstance(target, dict):
            return doc
        if kind == "drop":
            target.pop(key, None)
        else:
            target[key] = args[1]
    elif kind == "garble" and isinstance(doc.get("resources"), list) and doc["resources"]:
        start, length, inserted = args
        resources = list(doc["resources"])
        last = resources[-1]
        if isinstance(last, str):
            at = start % (len(last) + 1)
            resources[-1] = last[:at] + inserted + last[at + length % 8 :]
        doc["resources"] = resources
    elif kind == "add-resource" and isinstance(doc.get("resources"), list):
        doc["resources"] = [args[0], *doc["resources"]]
    elif kind == "detail-type":
        doc["detail-type"] = args[0]
    return doc


@settings(max_examples=500, deadline=None)
@given(
    event=genuine_events(),
    changes=st.lists(mutations, min_size=1, max_size=4),
    splice=st.none() | st.tuples(st.integers(0, 10_000), st.integers(0, 4), nasty_text),
)
def test_any_damage_parses_into_documented_fields_or_is_malformed(
    event: Genuine, changes: list[tuple[Any, ...]], splice: tuple[int, int, str] | None
) -> None:
    # Given a genuine event damaged in any of the ways above, perhaps spliced as text too
    doc = event.doc
    for change in changes:
        doc = mutate(doc, change)
    body = json.dumps(doc)
    if splice is not None:
        at, removed, inserted = splice
        at %= len(body) + 1
        body = body[:at] + inserted + body[at + removed :]
    # When the body is parsed
    result = parsed_or_malformed(body)
    # Then it is malformed (said in one line), or it holds exactly what the body says
    if not isinstance(result, MalformedEvent):
        assert_documented_fields(result, body)

"""tasks.events.resources: EventBridge resource strings of Buy with Prime events.

Only the pairs an event needs are read, and read strictly; any other key, id or resource
is carried along unparsed and never makes an event malformed."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.errors import MalformedEvent
from tasks.events.resources import (
    Resource,
    find_pair,
    is_valid_id,
    parse_needed,
    parse_resource,
)

ID_HEAD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ID_TAIL = ID_HEAD + "._:~+=@-"
ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(ID_HEAD),
    st.text(alphabet=ID_TAIL, max_size=127),
)
DELIVERY = frozenset({"order", "delivery"})
TRACKER = frozenset({"order", "carrier", "tracker"})


# --- the documented form ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needed", "business_product_id", "pairs"),
    [
        pytest.param(
            "businessProduct/bp-123/order/322-ABC1-AAAAAA/delivery/d-9",
            DELIVERY,
            "bp-123",
            {"order": "322-ABC1-AAAAAA", "delivery": "d-9"},
            id="documented",
        ),
        pytest.param(
            "businessProduct/bp-123/order/322-ABC1-AAAAAA/delivery/d-9/",
            DELIVERY,
            "bp-123",
            {"order": "322-ABC1-AAAAAA", "delivery": "d-9"},
            id="trailing-slash",
        ),
        pytest.param(
            "businessProduct/bp-123/order/322-ABC1-AAAAAA",
            DELIVERY,
            "bp-123",
            {"order": "322-ABC1-AAAAAA"},
            id="order-only",
        ),
        pytest.param(
            "businessProduct/amzn1.bp.1:2/carrier/UPS/tracker/1Z999AA10123456784",
            TRACKER,
            "amzn1.bp.1:2",
            {"carrier": "UPS", "tracker": "1Z999AA10123456784"},
            id="tracker-event",
        ),
        pytest.param(
            "businessProduct/bp-86/order/322-86T6-8X4JBH/carrier/ups/tracker/1Z0000000000000001",
            TRACKER,
            "bp-86",
            {"order": "322-86T6-8X4JBH", "carrier": "ups", "tracker": "1Z0000000000000001"},
            id="tracker-event-with-its-order-2025",
        ),
        pytest.param(
            "businessProduct/bp/order/o-1/order/o-1",
            DELIVERY,
            "bp",
            {"order": "o-1"},
            id="repeated-key-same-value",
        ),
        pytest.param(
            "businessProduct/bp/order/o-1/returnDelivery/04caec9f-1a2b-4c3d-9e8f-80d823cf915c#RF",
            DELIVERY,
            "bp",
            {"order": "o-1"},
            id="return-delivery-with-a-hash-carried-along",
        ),
        pytest.param(
            "businessProduct/bp/order/o-1/delivery/d-1/returnLineItem/x y#z",
            DELIVERY,
            "bp",
            {"order": "o-1", "delivery": "d-1"},
            id="other-key-with-any-value",
        ),
        pytest.param(
            "businessProduct/bp/1order/o 1/or-der/{x}/order/o-1/items",
            DELIVERY,
            "bp",
            {"order": "o-1"},
            id="unknown-keys-and-a-dangling-one-ignored",
        ),
    ],
)
def test_the_needed_pairs_of_a_resource_are_read(
    text: str, needed: frozenset[str], business_product_id: str, pairs: dict[str, str]
) -> None:
    # When a resource string is parsed for the keys an event needs
    resource = parse_resource(text, needed)
    # Then the business product id and exactly those pairs come out
    assert resource == Resource(business_product_id, pairs)


# --- resources an event carries along unparsed ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("/", id="slash"),
        pytest.param("businessProduct", id="prefix-word-only"),
        pytest.param("businessProduct/", id="prefix-without-id"),
        pytest.param("businessProduct/bp-123", id="prefix-only"),
        pytest.param("businessProduct/bp-123/", id="prefix-only-with-slash"),
        pytest.param("order/o-1/delivery/d-1", id="missing-prefix"),
        pytest.param("BusinessProduct/bp/order/o-1", id="prefix-wrong-case"),
        pytest.param("/businessProduct/bp/order/o-1", id="leading-slash"),
        pytest.param("businessProducts/bp/order/o-1", id="prefix-plural"),
        pytest.param("arn:aws:events:us-east-1::event-source/x", id="an-arn"),
        pytest.param("businessProduct/bp/return/04caec9f-80d823cf915c#RF", id="a-return"),
        pytest.param(
            "businessProduct/b p/returnLineItem/04caec9f#RF", id="a-return-line-item-odd-bp"
        ),
        pytest.param("businessProduct/bp/refund/r 1/items/x", id="a-refund"),
    ],
)
def test_a_resource_naming_no_needed_key_is_carried_along(text: str) -> None:
    # A resource of another form, or one without the keys an event needs, is not read
    assert parse_resource(text, DELIVERY) is None


def test_parse_needed_keeps_only_the_resources_naming_a_needed_key() -> None:
    texts = [
        "businessProduct/bp/returnDelivery/04caec9f-1a2b#RF",
        "businessProduct/bp/order/o-1/delivery/d-1",
        "garbage\n",
        "businessProduct/bp/returnLineItem/li#1",
    ]
    assert parse_needed(texts, DELIVERY) == [Resource("bp", {"order": "o-1", "delivery": "d-1"})]


# --- needed pairs that cannot be read -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "businessProduct/bp/order",
        "businessProduct/bp/order/",
        "businessProduct/bp/order/o-1/delivery",
        "businessProduct/bp/order/o-1/delivery/",
    ],
)
def test_needed_key_without_value_is_malformed(text: str) -> None:
    with pytest.raises(MalformedEvent, match="without a value"):
        parse_resource(text, DELIVERY)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('businessProduct/bp/order/o"1/delivery/d', id="double-quote"),
        pytest.param("businessProduct/bp/order/o'1/delivery/d", id="single-quote"),
        pytest.param("businessProduct/bp/order/o{1}/delivery/d", id="braces"),
        pytest.param("businessProduct/bp/order/o 1/delivery/d", id="space"),
        pytest.param("businessProduct/bp/order/o\t1/delivery/d", id="tab"),
        pytest.param("businessProduct/bp/order/o-1\n/delivery/d", id="newline"),
        pytest.param("businessProduct/bp/order/o-1\r/delivery/d", id="carriage-return"),
        pytest.param(
            'businessProduct/bp/order/x"}){__schema{types{name}}}#/delivery/d', id="graphql"
        ),
        pytest.param(
            "businessProduct/bp/order/o-1\nlevel=error event=forged/delivery/d",
            id="log-injection",
        ),
        pytest.param("businessProduct/bp/order//delivery/d", id="empty-id"),
        pytest.param("businessProduct/bp/order/-o/delivery/d", id="id-starts-with-dash"),
        pytest.param("businessProduct/bp/order/.o/delivery/d", id="id-starts-with-dot"),
        pytest.param("businessProduct/bp/order/ö/delivery/d", id="non-ascii-id"),
        pytest.param(f"businessProduct/bp/order/{'o' * 129}/delivery/d", id="id-too-long"),
        pytest.param("businessProduct/bp/order/o-1/delivery/d#RF", id="hash-in-a-needed-id"),
        pytest.param("businessProduct/b p/order/o-1", id="business-product-space"),
        pytest.param("businessProduct/bp\n/order/o-1", id="business-product-newline"),
        pytest.param("businessProduct/{bp}/order/o-1", id="business-product-braces"),
    ],
)
def test_invalid_needed_id_is_malformed(text: str) -> None:
    with pytest.raises(MalformedEvent, match="invalid"):
        parse_resource(text, DELIVERY)


def test_an_empty_part_after_the_needed_pairs_is_carried_along() -> None:
    # Only one trailing slash is the documented form; a second leaves an empty part,
    # which no event needs: the pair before it is read all the same
    assert parse_resource("businessProduct/bp/order/o-1//", DELIVERY) == Resource(
        "bp", {"order": "o-1"}
    )


def test_repeated_needed_key_with_another_value_is_malformed() -> None:
    # Given a resource that names two different orders
    text = "businessProduct/bp/order/o-1/delivery/d-1/order/o-2"
    # Then it is refused, naming the repeated key
    with pytest.raises(MalformedEvent, match="repeats key 'order'"):
        parse_resource(text, DELIVERY)


@pytest.mark.parametrize("value", [None, 42, b"businessProduct/bp", ["businessProduct/bp"]])
def test_non_string_resource_is_malformed(value: object) -> None:
    with pytest.raises(MalformedEvent, match="not a string"):
        parse_resource(value, DELIVERY)  # type: ignore[arg-type]


def test_error_message_echoes_only_a_short_escaped_preview() -> None:
    # Given a 10 KB resource full of forged log lines inside a needed id
    garbage = "\nlevel=error event=forged " * 400
    text = "businessProduct/bp/order/o-1" + garbage
    # When it is parsed
    with pytest.raises(MalformedEvent) as caught:
        parse_resource(text, DELIVERY)
    # Then the reason is one short line, with the newlines escaped
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 200
    assert garbage[:100] not in message
    assert "\\n" in message


# --- ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "322-ABC1-AAAAAA",
        "d-9",
        "bp-123",
        "3f1b2c1e-8a1d-4c7e-9e3b-2b9f6a1d0c55",
        "amzn1.bp.1:2",
        "a",
        "A" * 128,
        "x~y+z=w@v.u:t",
    ],
)
def test_id_like_values_are_valid(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-x",
        "_x",
        "a b",
        "a\n",
        "\na",
        "a/b",
        'a"b',
        "a'b",
        "a{b",
        "a}b",
        "a\\b",
        "ä",
        "a\x00",
        "A" * 129,
    ],
)
def test_values_outside_the_id_alphabet_are_invalid(value: str) -> None:
    assert not is_valid_id(value)


# --- find_pair -----------------------------------------------------------------------


def test_find_pair_returns_the_first_resource_carrying_every_key() -> None:
    # Given resources where only the second and third carry both order and delivery
    resources = [
        Resource("bp", {"order": "o-1"}),
        Resource("bp", {"order": "o-2", "delivery": "d-2"}),
        Resource("bp", {"order": "o-3", "delivery": "d-3"}),
    ]
    # When looking for order and delivery
    found = find_pair(resources, "order", "delivery")
    # Then the first complete one is chosen
    assert found is resources[1]


@pytest.mark.parametrize(
    "resources",
    [
        [],
        [Resource("bp", {})],
        [Resource("bp", {"order": "o-1"}), Resource("bp", {"delivery": "d-1"})],
    ],
)
def test_find_pair_returns_none_when_no_resource_carries_every_key(
    resources: list[Resource],
) -> None:
    # The keys split across two resources do not make a pair.
    assert find_pair(resources, "order", "delivery") is None


# --- properties ----------------------------------------------------------------------


@given(business_product_id=ids, order_id=ids, delivery_id=ids, trailing=st.booleans())
def test_any_well_formed_resource_round_trips(
    business_product_id: str, order_id: str, delivery_id: str, trailing: bool
) -> None:
    # Given a resource built from any ids of the id alphabet
    text = f"businessProduct/{business_product_id}/order/{order_id}/delivery/{delivery_id}"
    if trailing:
        text += "/"
    # When it is parsed, the same ids come back
    assert parse_resource(text, DELIVERY) == Resource(
        business_product_id, {"order": order_id, "delivery": delivery_id}
    )


@given(
    order_id=ids,
    other=st.text(alphabet=st.characters(blacklist_characters="/"), max_size=40),
    key=st.sampled_from(["returnDelivery", "returnLineItem", "return", "refund", "items"]),
)
def test_any_other_pair_never_changes_the_needed_ones(order_id: str, other: str, key: str) -> None:
    # Given a resource whose needed pair sits beside another key holding any text
    text = f"businessProduct/bp/{key}/{other}/order/{order_id}/delivery/d-1"
    # Then the needed pair comes out as it is, whatever the other value holds
    assert parse_resource(text, DELIVERY) == Resource("bp", {"order": order_id, "delivery": "d-1"})


resource_like = st.lists(
    st.sampled_from(
        ["businessProduct", "bp-1", "order", "o-1", "delivery", "d-1", "", " ", "a b", "\n", "{"]
    ),
    max_size=8,
).map("/".join)


@settings(max_examples=300)
@given(text=st.one_of(st.text(), resource_like))
@example(text="businessProduct/bp/order/o\ud800")
@example(text="businessProduct/\x00")
def test_any_text_parses_or_is_malformed(text: str) -> None:
    # When any text is parsed, it either parses or raises MalformedEvent, never another
    # error; and whatever parses holds only ids of the allowed alphabet
    try:
        resource = parse_resource(text, DELIVERY)
    except MalformedEvent as exc:
        assert "\n" not in str(exc)
        return
    if resource is None:
        return
    assert is_valid_id(resource.business_product_id)
    assert all(is_valid_id(value) for value in resource.pairs.values())

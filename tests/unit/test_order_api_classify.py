"""tasks.order_api.classify: an order API response becomes an order or a classified error.

Responses are built directly as ``httpx.Response`` objects: no network.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.bwp_errors import CLASSIFICATIONS, error_entry
from tasks.errors import ApiAccessDenied, ApiUnavailable, OrderNotVisibleYet, PermanentApiError
from tasks.order_api.client import _Unauthorized, classify

ORDER = {"id": "322-ABC1-AAAAAA", "lineItems": []}


def graphql_error(kind: str | None, code: object = "N/A") -> dict[str, Any]:
    """One entry of ``errors[]`` as docs/buy-with-prime-api.md section 6 shows it."""
    error: dict[str, Any] = {"message": f"{kind} happened", "path": ["order"]}
    if kind is not None:
        error["extensions"] = {
            "classification": {"type": kind, "errorType": f"{kind}Exception", "errorCode": code}
        }
    return error


def response(
    status: int = 200, payload: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def errors_response(*kinds: str | None, status: int = 200) -> httpx.Response:
    return response(status, {"errors": [graphql_error(k) for k in kinds], "data": {"order": None}})


# --- success -------------------------------------------------------------------------


def test_http_200_with_an_order_gives_the_order() -> None:
    assert classify(response(200, {"data": {"order": ORDER}})) == ORDER


def test_order_comes_back_even_with_extra_top_level_fields() -> None:
    payload = {"data": {"order": ORDER}, "extensions": {"cost": 3}}
    assert classify(response(200, payload)) == ORDER


# --- errors answered with HTTP 200 ---------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["ThrottlingError"], ApiUnavailable),
        (["InternalServerError"], ApiUnavailable),
        (["ConflictError"], ApiUnavailable),
        ([None], ApiUnavailable),  # an error without classification: try again
        (["SomethingNew"], ApiUnavailable),
        (["ResourceNotFoundError"], OrderNotVisibleYet),
        (["ValidationError"], PermanentApiError),
        (["AccessDeniedError"], ApiAccessDenied),
        (["ThrottlingError", "ValidationError"], PermanentApiError),  # permanent wins
        (["ThrottlingError", "ResourceNotFoundError"], OrderNotVisibleYet),
    ],
)
def test_graphql_errors_with_http_200_are_classified_by_type(
    kinds: list[str | None], expected: type[Exception]
) -> None:
    # Given the API answers HTTP 200 with errors[] classified as `kinds`
    # When the response is classified
    with pytest.raises(expected) as caught:
        classify(errors_response(*kinds))
    # Then the error says which types it saw, on one line
    assert type(caught.value) is expected
    assert "\n" not in str(caught.value)


def test_errors_win_over_partial_data() -> None:
    # GraphQL may return partial data beside errors; a throttled answer is not an order.
    payload = {"errors": [graphql_error("ThrottlingError", 429)], "data": {"order": ORDER}}
    with pytest.raises(ApiUnavailable):
        classify(response(200, payload))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"data": {"order": None}}, id="order-null"),
        pytest.param({"data": {}}, id="order-missing"),
        pytest.param({"data": None}, id="data-null"),
        pytest.param({}, id="empty-object"),
        pytest.param({"data": {"order": []}}, id="order-list"),
        pytest.param({"data": {"order": None}, "errors": []}, id="errors-empty"),
    ],
)
def test_no_order_and_no_errors_means_not_visible_yet(payload: dict[str, Any]) -> None:
    with pytest.raises(OrderNotVisibleYet):
        classify(response(200, payload))


# --- HTTP status ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retryable_with_retry_after(status: int) -> None:
    # Given a throttled or failing API that says when to come back
    answer = httpx.Response(status, json={"message": "slow down"}, headers={"Retry-After": "7"})
    # Then the error is retryable and carries the wait
    with pytest.raises(ApiUnavailable) as caught:
        classify(answer)
    assert caught.value.retry_after == 7.0
    assert str(status) in str(caught.value)


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [
        (None, None),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # HTTP-date form: not understood, ignored
        ("soon", None),
    ],
)
def test_retry_after_header_is_read_as_seconds(
    header: str | None, retry_after: float | None
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    with pytest.raises(ApiUnavailable) as caught:
        classify(httpx.Response(503, text="busy", headers=headers))
    assert caught.value.retry_after == retry_after


def test_throttling_error_with_http_200_carries_retry_after() -> None:
    answer = httpx.Response(
        200,
        json={"errors": [graphql_error("ThrottlingError", 429)], "data": {"order": None}},
        headers={"Retry-After": "3"},
    )
    with pytest.raises(ApiUnavailable) as caught:
        classify(answer)
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (400, {"errors": [graphql_error("ValidationError")]}, PermanentApiError),
        (400, {"message": "bad request"}, PermanentApiError),
        (403, {"errors": [graphql_error("AccessDeniedError", 403)]}, ApiAccessDenied),
        (403, {"message": "forbidden"}, ApiAccessDenied),
        (404, {"errors": [graphql_error("ResourceNotFoundError", 404)]}, OrderNotVisibleYet),
        (404, {"message": "not found"}, OrderNotVisibleYet),
        (418, {"message": "teapot"}, PermanentApiError),
        (422, {}, PermanentApiError),
        (409, {"errors": [graphql_error("ConflictError", 409)]}, ApiUnavailable),
    ],
)
def test_client_errors_are_classified_by_status_and_type(
    status: int, payload: dict[str, Any], expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught:
        classify(response(status, payload))
    assert type(caught.value) is expected


# --- documented error codes: names, not numbers --------------------------------------


def coded(**fields: object) -> httpx.Response:
    """HTTP 200 with one error entry whose classification holds ``fields``."""
    entry = {"message": "x", "path": ["order"], "extensions": {"classification": fields}}
    return response(200, {"errors": [entry], "data": {"order": None}})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"errorType": "ResourceNotFoundException", "errorCode": "ResourceNotFoundException"},
            OrderNotVisibleYet,
            id="not-found-by-name-without-type",
        ),
        pytest.param(
            {"type": "PreviewError", "errorCode": "ResourceNotFoundException"},
            OrderNotVisibleYet,
            id="unknown-type-known-code",
        ),
        pytest.param(
            {"errorType": "ConflictException", "errorCode": "PackageTrackerNotAvailableForUpdate"},
            ApiUnavailable,
            id="sandbox-conflict-exception",
        ),
        pytest.param({"errorType": "AccessDeniedException"}, ApiAccessDenied, id="access-denied"),
        pytest.param({"errorCode": "ValidationException"}, PermanentApiError, id="validation"),
        pytest.param({"errorType": "ThrottlingException"}, ApiUnavailable, id="throttling"),
    ],
)
def test_an_entry_without_a_known_type_is_classified_by_its_documented_names(
    fields: dict[str, object], expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught:
        classify(coded(**fields))
    assert type(caught.value) is expected


@pytest.mark.parametrize(
    "code", ["N/A", 404, "AliasValueAlreadyExists", "SomethingNobodyDocumented", {"x": 1}, None]
)
def test_any_error_code_is_tolerated_beside_a_known_type(code: object) -> None:
    # The type decides; a code the worker does not know (or of another shape) is ignored
    with pytest.raises(OrderNotVisibleYet):
        classify(coded(type="ResourceNotFoundError", errorCode=code))
    with pytest.raises(ApiAccessDenied):
        classify(coded(type="AccessDeniedError", errorType="Whatever", errorCode=code))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("throttle", ApiUnavailable),
        ("internal", ApiUnavailable),
        ("not_found", OrderNotVisibleYet),
        ("validation", PermanentApiError),
        ("access_denied", ApiAccessDenied),
        ("conflict", ApiUnavailable),
        ("tracker_not_available", ApiUnavailable),
    ],
)
def test_every_error_the_sandbox_writes_is_classified(kind: str, expected: type[Exception]) -> None:
    # The sandbox speaks the documented names: type, errorType (…Exception) and errorCode
    assert not isinstance(CLASSIFICATIONS[kind][2], int)
    answer = response(200, {"errors": [error_entry(kind, "m", ["order"])], "data": {"order": None}})
    with pytest.raises(expected) as caught:
        classify(answer)
    assert type(caught.value) is expected


def test_unauthorized_asks_the_caller_to_refresh_the_token() -> None:
    with pytest.raises(_Unauthorized):
        classify(response(401, {"message": "expired token"}))


# --- unreadable bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content"),
    [
        (502, b"<html><body>Bad Gateway</body></html>"),
        (200, b"<html>maintenance</html>"),
        (200, b""),
        (200, b"\xff\xfe"),
    ],
)
def test_body_that_is_not_json_is_retryable(status: int, content: bytes) -> None:
    with pytest.raises(ApiUnavailable):
        classify(httpx.Response(status, content=content))


@pytest.mark.parametrize("payload", [[], ["order"], "order", 42, None])
def test_json_that_is_not_an_object_is_retryable(payload: Any) -> None:
    with pytest.raises(ApiUnavailable):
        classify(httpx.Response(200, content=json.dumps(payload).encode()))


@pytest.mark.parametrize("status", [400, 403])
def test_client_error_with_a_non_json_body_is_permanent(status: int) -> None:
    with pytest.raises(PermanentApiError):
        classify(httpx.Response(status, content=b"<html>Forbidden</html>"))


@pytest.mark.parametrize("errors", [5, True, 1.5], ids=["int", "bool", "float"])
def test_errors_field_that_is_not_a_list_is_classified(errors: Any) -> None:
    with pytest.raises((ApiUnavailable, OrderNotVisibleYet, PermanentApiError)):
        classify(response(200, {"errors": errors, "data": {"order": None}}))


# --- properties ----------------------------------------------------------------------

kinds = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "ThrottlingError",
            "InternalServerError",
            "ConflictError",
            "ResourceNotFoundError",
            "ValidationError",
            "AccessDeniedError",
        ]
    ),
    st.text(max_size=10),
)
error_entries = st.one_of(
    st.builds(graphql_error, kinds),
    st.fixed_dictionaries(
        {}, optional={"extensions": st.one_of(st.none(), st.text(), st.lists(st.integers()))}
    ),
    st.text(max_size=5),
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "errors": st.one_of(st.none(), st.lists(error_entries, max_size=3)),
        "data": st.one_of(
            st.none(),
            st.fixed_dictionaries({}, optional={"order": st.one_of(st.none(), st.just(ORDER))}),
        ),
    },
)


@settings(max_examples=300)
@given(
    status=st.sampled_from([200, 201, 400, 403, 404, 409, 418, 429, 500, 502, 503]),
    payload=payloads,
)
def test_any_response_gives_an_order_or_a_classified_error(
    status: int, payload: dict[str, Any]
) -> None:
    try:
        order = classify(response(status, payload))
    except (ApiUnavailable, OrderNotVisibleYet, PermanentApiError) as exc:
        assert "\n" not in str(exc)
        return
    # Only a 2xx answer without (readable) errors is ever read as an order
    assert order == ORDER
    assert status < 300
    assert not any(isinstance(e, dict) for e in payload.get("errors") or [])

"""GraphQL error entries as the Buy with Prime API writes them (buy-with-prime-api.md §6)."""

from __future__ import annotations

from typing import Any, Final

from graphql import GraphQLError

#: error kind -> (classification type, errorType, errorCode)
CLASSIFICATIONS: Final[dict[str, tuple[str, str, int]]] = {
    "throttle": ("ThrottlingError", "ThrottlingException", 429),
    "internal": ("InternalServerError", "InternalServerException", 500),
    "not_found": ("ResourceNotFoundError", "ResourceNotFoundException", 404),
    "validation": ("ValidationError", "ValidationException", 400),
    "access_denied": ("AccessDeniedError", "AccessDeniedException", 403),
}


def classification(kind: str) -> dict[str, Any]:
    type_, error_type, code = CLASSIFICATIONS[kind]
    return {"classification": {"type": type_, "errorType": error_type, "errorCode": code}}


def api_error(kind: str, message: str) -> GraphQLError:
    """A resolver error; graphql-core adds ``path`` and ``locations`` when it is raised."""
    return GraphQLError(message, extensions=classification(kind))


def error_entry(kind: str, message: str, path: list[str] | None = None) -> dict[str, Any]:
    """One ``errors[]`` entry for errors raised outside GraphQL execution."""
    entry: dict[str, Any] = {"message": message}
    if path is not None:
        entry["path"] = path
    entry["extensions"] = classification(kind)
    return entry


UNAUTHORIZED: Final[dict[str, Any]] = {
    "errors": [
        {
            "message": "Unauthorized",
            "extensions": {"classification": {"type": "UnauthorizedError", "errorCode": 401}},
        }
    ]
}

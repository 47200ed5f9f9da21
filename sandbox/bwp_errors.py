"""GraphQL error entries as the Buy with Prime API writes them (docs/buy-with-prime-api.md
section 6): ``extensions.classification`` holds the ``type`` (ThrottlingError, …), an
``errorType`` (…Exception) and an ``errorCode``. The documented codes are names
(``ResourceNotFoundException``, ``PackageTrackerNotAvailableForUpdate``) or "N/A", never
HTTP numbers; the sandbox error pages name the type ``ConflictException``.
"""

from __future__ import annotations

from typing import Any, Final

from graphql import GraphQLError

#: error kind -> (classification type, errorType, errorCode)
CLASSIFICATIONS: Final[dict[str, tuple[str, str, str]]] = {
    "throttle": ("ThrottlingError", "ThrottlingException", "N/A"),
    "internal": ("InternalServerError", "InternalServerException", "N/A"),
    "not_found": (
        "ResourceNotFoundError",
        "ResourceNotFoundException",
        "ResourceNotFoundException",
    ),
    "validation": ("ValidationError", "ValidationException", "N/A"),
    "access_denied": ("AccessDeniedError", "AccessDeniedException", "N/A"),
    "conflict": ("ConflictError", "ConflictException", "N/A"),
    "tracker_not_available": (
        "ConflictError",
        "ConflictException",
        "PackageTrackerNotAvailableForUpdate",
    ),
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
            "extensions": {
                "classification": {
                    "type": "UnauthorizedError",
                    "errorType": "UnauthorizedException",
                    "errorCode": "N/A",
                }
            },
        }
    ]
}

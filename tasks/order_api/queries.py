"""The order query, one text per API version (docs/buy-with-prime-api.md section 4).

The only place query text lives. Ids travel as GraphQL variables, never in the text.

2024-01-01's shape is inferred: the public pages document ``orderIdentifier: {orderId}``
and ``deliveryInformationDetailsFor`` for 2024-04-01 only, and 2024-01-01 is sent the same
query (``bwp-worker check`` warns about it).

2024-11-01's query selects ``packageTracker``; whether that needs the package-tracker
permission besides Read Order is not documented. ``tracker=False`` gives the same query
without it, for credentials refused the tracker fields (tasks.order_api.tracker_access).
"""

from __future__ import annotations

from typing import Any, Final

# What a delivery holds is read from the order-level details (each delivery listed once),
# from ``…DetailsFor.orderLineItems`` (buy-with-prime-api.md section 4; that sub-shape is
# assumed). The line items keep their ordered amount and the ids of their deliveries: the
# fallback when a detail has no ``…DetailsFor`` (tasks.delivery.snapshot).
_QUERY_2024_01: Final = """
query Order($orderIdentifier: OrderIdentifierInput!) {
  order(orderIdentifier: $orderIdentifier) {
    id
    lineItems {
      id
      amount { unit value }
      deliveryInformation { details { id } }
    }
    deliveryInformation {
      details {
        id state reason
        deliveryInformationDetailsFor {
          orderLineItems { lineItem { id } amount { unit value } }
        }
        estimatedDeliveryDate
        trackingDetails { trackingId carrierCode }
      }
    }
  }
}
""".strip()

_QUERY_2024_11: Final = """
query Order($orderIdentifier: OrderIdentifierInput!) {
  order(orderIdentifier: $orderIdentifier) {
    id
    lineItems {
      id
      amount { unit value }
      packageInformation { details { id } }
    }
    packageInformation {
      details {
        id state reason
        packageInformationDetailsFor {
          orderLineItems { lineItem { id } amount { unit value } }
        }
        packageTracker {
          packageTrackerIdentifier { trackingNumber carrierCode }
          estimatedDeliveryDate { earliest latest }
          latestMilestone { status { code } occurredAt }
          trackingUrl
        }
      }
    }
  }
}
""".strip()

#: the 2024-11-01 tracker fields (the package-tracker permission may guard them)
TRACKER_SELECTION: Final = """
        packageTracker {
          packageTrackerIdentifier { trackingNumber carrierCode }
          estimatedDeliveryDate { earliest latest }
          latestMilestone { status { code } occurredAt }
          trackingUrl
        }"""

ORDER_QUERIES: Final[dict[str, str]] = {
    "2024-01-01": _QUERY_2024_01,
    "2024-04-01": _QUERY_2024_01,
    "2024-11-01": _QUERY_2024_11,
}

#: the versions whose query text is inferred from another version's documentation
INFERRED_VERSIONS: Final = frozenset({"2024-01-01"})

_WITHOUT_TRACKER: Final[dict[str, str]] = {
    version: text.replace(TRACKER_SELECTION, "") for version, text in ORDER_QUERIES.items()
}


def selects_tracker(api_version: str) -> bool:
    """The version's query selects fields a ``tracker=False`` query leaves out."""
    return ORDER_QUERIES[api_version] != _WITHOUT_TRACKER[api_version]


def order_request(api_version: str, order_id: str, *, tracker: bool = True) -> dict[str, Any]:
    """The JSON body of the order query for ``api_version`` (``tracker=False``: without
    the package-tracker fields).

    Raises KeyError for an unsupported version (settings validation refuses those first).
    """
    queries = ORDER_QUERIES if tracker else _WITHOUT_TRACKER
    return {
        "query": queries[api_version],
        "operationName": "Order",
        "variables": {"orderIdentifier": {"orderId": order_id}},
    }

"""The order query, one text per API version (buy-with-prime-api.md section 4).

The only place query text lives. Ids travel as GraphQL variables, never in the text.
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

ORDER_QUERIES: Final[dict[str, str]] = {
    "2024-01-01": _QUERY_2024_01,
    "2024-04-01": _QUERY_2024_01,
    "2024-11-01": _QUERY_2024_11,
}


def order_request(api_version: str, order_id: str) -> dict[str, Any]:
    """The JSON body of the order query for ``api_version``.

    Raises KeyError for an unsupported version (settings validation refuses those first).
    """
    return {
        "query": ORDER_QUERIES[api_version],
        "operationName": "Order",
        "variables": {"orderIdentifier": {"orderId": order_id}},
    }

"""The demo's verdict and its printed report. Pure: plain data in, lines of text out.

``compare`` sets what the OMS holds beside what the order API holds, delivery by
delivery; ``verdict`` lists every reason the run did not end right (empty: it did);
``render_summary`` and ``render_table`` turn the figures into the lines the demo prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, str]  # (order id, delivery id)
LineItems = tuple[tuple[str, int | None], ...]  # sorted (line item id, quantity)


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """The facts about one delivery that the OMS must end up holding."""

    state: str
    reason: str | None = None
    tracking_number: str | None = None
    carrier_code: str | None = None
    line_items: LineItems = ()


def oms_view(body: Mapping[str, Any]) -> DeliveryView:
    """The view of one OMS delivery-update body (oms-delivery-update.schema.json)."""
    tracking = body.get("tracking") or {}
    items = sorted((li["lineItemId"], li["quantity"]) for li in body.get("lineItems", []))
    return DeliveryView(
        state=body["state"],
        reason=body.get("reason"),
        tracking_number=tracking.get("trackingNumber"),
        carrier_code=tracking.get("carrierCode"),
        line_items=tuple(items),
    )


_FIELDS = ("state", "reason", "tracking_number", "carrier_code", "line_items")


@dataclass(frozen=True, slots=True)
class Row:
    """One delivery: the API's view, the OMS's latest view (None: never pushed)."""

    order_id: str
    delivery_id: str
    api: DeliveryView | None
    oms: DeliveryView | None

    @property
    def problems(self) -> list[str]:
        """What differs; empty when the OMS holds what the API holds."""
        if self.api is None:
            return ["unknown to the API"]
        if self.oms is None:
            # No event announces PENDING: the OMS rightly never hears of such a delivery.
            return [] if self.api.state == "PENDING" else ["never pushed"]
        return [
            name.replace("_", " ")
            for name in _FIELDS
            if getattr(self.api, name) != getattr(self.oms, name)
        ]

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(api: Mapping[Key, DeliveryView], oms: Mapping[Key, DeliveryView]) -> list[Row]:
    """One row per delivery known to either side, sorted by order and delivery id."""
    return [Row(o, d, api.get((o, d)), oms.get((o, d))) for o, d in sorted(api.keys() | oms.keys())]


@dataclass(frozen=True, slots=True)
class Parked:
    """A message found in the DLQ, with its ``bwp-error-kind`` and ``bwp-error``."""

    kind: str
    reason: str
    body: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the run left behind, as far as the verdict is concerned."""

    rows: Sequence[Row]
    #: Idempotency-Keys the OMS received more than once (the sandbox's count)
    repeated_keys: int
    parked: Sequence[Parked]
    malformed_body: str
    #: (visible, in flight) messages still in the queue
    queue_left: tuple[int, int]


def verdict(outcome: Outcome) -> list[str]:
    """Every reason the run did not end right; an empty list means it did."""
    reasons = [
        f"{row.order_id}/{row.delivery_id}: OMS differs from the API ({', '.join(row.problems)})"
        for row in outcome.rows
        if not row.ok
    ]
    if outcome.repeated_keys:
        reasons.append(f"the OMS got {outcome.repeated_keys} push(es) with a repeated key")
    if not any(p.kind == "malformed" and p.body == outcome.malformed_body for p in outcome.parked):
        reasons.append("the malformed message is not in the DLQ with kind 'malformed'")
    visible, in_flight = outcome.queue_left
    if visible or in_flight:
        reasons.append(f"the queue is not empty ({visible} visible, {in_flight} in flight)")
    return reasons


# --- the poller's metrics -------------------------------------------------------------
Samples = Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus exposition text -> sample name -> sorted label pairs -> value."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def total(samples: Samples, name: str) -> int:
    return int(sum(samples.get(name, {}).values()))


def by_label(samples: Samples, name: str, label: str) -> dict[str, int]:
    """``name``'s values keyed by the value of ``label``, zeros left out."""
    out: dict[str, int] = {}
    for labels, value in samples.get(name, {}).items():
        if value:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0) + int(value)
    return out


# --- rendering --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Figures:
    """The counts the summary shows. ``poller`` is None when /metrics could not be read."""

    sent: Mapping[str, int]  # how many messages the demo put in the queue, by origin
    order_api_calls: int
    oms_pushes: int
    repeated_keys: int
    parked: Sequence[Parked]
    poller: Samples | None = None


def _breakdown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n)


def _poller_lines(samples: Samples | None) -> list[tuple[str, str]]:
    if samples is None:
        return [("received by the poller", "? (its /metrics did not answer)")]
    unsupported = by_label(samples, "bwp_unsupported_events_total", "detail_type")
    parked = by_label(samples, "bwp_messages_parked_total", "kind")
    return [
        ("received by the poller", str(total(samples, "bwp_messages_received_total"))),
        (
            "duplicates absorbed",
            f"{total(samples, 'bwp_duplicates_total')}  (event id seen before: no task)",
        ),
        (
            "twins absorbed",
            f"{total(samples, 'bwp_twins_absorbed_total')}  (state already pushed: no task)",
        ),
        ("dispatched as tasks", str(total(samples, "bwp_events_dispatched_total"))),
        ("parked by the poller", _with_detail(sum(parked.values()), parked)),
        ("unsupported, acknowledged", _with_detail(sum(unsupported.values()), unsupported)),
    ]


def _with_detail(count: int, detail: Mapping[str, int]) -> str:
    return f"{count}  ({_breakdown(detail)})" if count else "0"


def render_summary(figures: Figures) -> list[str]:
    """The summary block: one aligned ``label  value`` line per figure."""
    sent = sum(figures.sent.values())
    pairs = [("events sent", f"{sent}  ({_breakdown(figures.sent)})")]
    pairs += _poller_lines(figures.poller)
    pairs += [
        ("order API calls", str(figures.order_api_calls)),
        ("OMS pushes", f"{figures.oms_pushes}  ({figures.repeated_keys} with a repeated key)"),
    ]
    width = max(len(label) for label, _ in pairs)
    lines = [f"  {label:<{width}}  {value}" for label, value in pairs]
    kinds = Counter(p.kind for p in figures.parked)
    lines.append(f"  {'in the DLQ':<{width}}  {len(figures.parked)}  ({_breakdown(kinds)})")
    lines += [f"  {'':<{width}}    {p.kind}: {p.reason}" for p in figures.parked]
    return lines


def describe(view: DeliveryView | None) -> str:
    """``DELIVERED 1Z… UPS`` / ``CANCELLED (CUSTOMER_REQUESTED)`` / ``-``."""
    if view is None:
        return "-"
    parts = [view.state]
    if view.reason:
        parts.append(f"({view.reason})")
    if view.tracking_number or view.carrier_code:
        parts.append(" ".join(p for p in (view.tracking_number, view.carrier_code) if p))
    return " ".join(parts)


def items_text(view: DeliveryView | None) -> str:
    if view is None:
        return "-"
    return " ".join(f"{item} x{'?' if qty is None else qty}" for item, qty in view.line_items)


def render_table(rows: Iterable[Row]) -> list[str]:
    """Each delivery's state at the API and at the OMS, with a ✓/✗ column."""
    header = ("order", "delivery", "line items", "order API", "OMS", "")
    cells = [
        (
            row.order_id,
            row.delivery_id,
            items_text(row.api),
            describe(row.api),
            describe(row.oms),
            "✓" if row.ok else f"✗ {', '.join(row.problems)}",
        )
        for row in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header) - 1)]
    return [
        (
            "  "
            + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
            + "  "
            + line[-1]
        ).rstrip()
        for line in [header, *cells]
    ]

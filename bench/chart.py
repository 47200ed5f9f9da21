"""``docs/performance.png``: throughput and CPU per event, per contender and API latency,
side by side — the two columns a merchant weighs, at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here, none needed

import matplotlib.pyplot as plt  # after choosing the backend

ORDER = ("bwp-worker", "bwp-worker-no-events", "powertools", "naive", "limit-line")
LABELS = {"bwp-worker-no-events": "bwp-worker\n(task events off)"}


def draw(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Grouped bars of the saturating runs: events/s (left), CPU-s per 1,000 events
    (right, every process of the contender), one group per API latency."""
    saturating = [r for r in runs if r["feed"] == "saturate"]
    latencies = sorted({r["api_latency_ms"] for r in saturating})
    contenders = [c for c in ORDER if any(r["contender"] == c for r in saturating)]
    figure, (rate_axes, cpu_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / max(1, len(contenders))
    for i, contender in enumerate(contenders):
        rates, cpus, positions = [], [], []
        for j, latency in enumerate(latencies):
            run = next(
                (
                    r
                    for r in saturating
                    if r["contender"] == contender and r["api_latency_ms"] == latency
                ),
                None,
            )
            if run is None:
                continue
            positions.append(j + (i - (len(contenders) - 1) / 2) * width)
            rates.append(run["events_per_s"] or 0)
            cpus.append(run["cpu_per_1k_events"].get("contender") or 0)
        label = LABELS.get(contender, contender)
        bars = rate_axes.bar(positions, rates, width, label=label)
        rate_axes.bar_label(bars, fmt="%.0f", fontsize=7)
        if contender != "limit-line":
            bars = cpu_axes.bar(positions, cpus, width, label=label)
            cpu_axes.bar_label(bars, fmt="%.1f", fontsize=7)
    for axes, title in (
        (rate_axes, "throughput, events/s (higher is better)"),
        (cpu_axes, "CPU seconds per 1,000 events (lower is better)"),
    ):
        axes.set_xticks(range(len(latencies)), [f"API {lat:g} ms" for lat in latencies])
        axes.set_title(title, fontsize=10)
        axes.grid(axis="y", alpha=0.3)
    rate_axes.legend(fontsize=8)
    figure.suptitle("bwp-worker beside a Lambda-style Powertools consumer (make bench)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

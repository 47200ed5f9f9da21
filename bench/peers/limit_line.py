"""The emulator's ceiling: receive 10, delete them in one batch, no processing at all."""

from __future__ import annotations

import time

from bench.peers.common import CountedSqs, PeerConfig, run_peer


def consume(_: PeerConfig, sqs: CountedSqs, figures: dict[str, float]) -> None:
    while True:
        messages = sqs.receive(10)
        if messages:
            sqs.delete_batch(messages)
            figures["records"] = figures.get("records", 0) + len(messages)
            figures["last_delete_wall"] = time.time()


if __name__ == "__main__":
    run_peer(__doc__ or "", consume)

"""The side-by-side benchmark (`make bench`): bwp-worker against the ways a merchant could
consume the same events. See docs/performance.md."""

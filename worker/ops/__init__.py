"""Operator commands: check, stats, replay-dlq, sync-order."""

"""Operator commands: check, stats, replay-dlq, sync-order (being built)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

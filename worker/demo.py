"""``bwp-worker demo``: the whole pipeline on embedded stand-ins (being built)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

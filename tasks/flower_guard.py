"""Flower refuses to start without authentication (README, "Security").

Flower shows every worker, task and argument and can revoke tasks and shut workers down;
open, it is a control panel for anyone who reaches its port. ``celery -A tasks flower``
loads this package's app; Flower parses its options (command line, ``FLOWER_*``
variables, ``flowerconfig.py``), then builds its web application, which first imports the
app's default modules (Celery's ``import_modules`` signal) and only then listens. The
guard runs at that signal: without basic auth or OAuth Flower stops there with one line
and exit code 2, unless ``ALLOW_UNAUTHENTICATED_FLOWER=true`` *and* Flower listens on
loopback or a unix socket only (the demo, a developer's machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from celery import Celery, signals

from config.settings import LOOPBACK_HOSTS, SettingsError, process_settings, refuse_to_start


def refusal(
    *,
    basic_auth: Sequence[str],
    oauth: str | None,
    address: str,
    unix_socket: str | None,
    allowed: bool,
) -> str | None:
    """Why Flower may not start with these options, or None. Pure."""
    weak = [entry for entry in basic_auth if not _user_and_password(entry)]
    if weak:
        return "FLOWER_BASIC_AUTH: every entry must be user:password, both non-empty"
    if basic_auth or oauth:
        return None
    local = bool(unix_socket) or address in LOOPBACK_HOSTS
    if allowed and local:
        return None
    if allowed:
        where = address or "every interface"
        return (
            f"ALLOW_UNAUTHENTICATED_FLOWER applies on loopback only, and Flower listens on"
            f" {where}: set FLOWER_BASIC_AUTH, or FLOWER_ADDRESS=127.0.0.1"
        )
    return (
        "Flower needs authentication: set FLOWER_BASIC_AUTH=user:password (or Flower's"
        " OAuth, FLOWER_AUTH with FLOWER_AUTH_PROVIDER); ALLOW_UNAUTHENTICATED_FLOWER=true"
        " allows none while Flower listens on loopback only"
    )


def _user_and_password(entry: str) -> bool:
    user, colon, password = entry.partition(":")
    return bool(user.strip() and colon and password)


def install(app: Celery) -> None:
    """Guard Flower when it runs ``app`` (any other command is left alone)."""
    signals.import_modules.connect(_check_flower, sender=app, weak=False)


def _check_flower(**_: Any) -> None:
    context = click.get_current_context(silent=True)
    if context is None or context.command.name != "flower":
        return
    from flower.options import options  # Flower is running: it is installed

    try:
        allowed = process_settings().allow_unauthenticated_flower
    except SettingsError as exc:
        refuse_to_start(exc)
    problem = refusal(
        basic_auth=list(options.basic_auth or ()),
        oauth=options.auth,
        address=options.address,
        unix_socket=options.unix_socket,
        allowed=allowed,
    )
    if problem is not None:
        refuse_to_start(SettingsError(problem))

"""Which requests go through a proxy: HTTPS_PROXY, HTTP_PROXY and NO_PROXY as httpx routes.

httpx honours the proxy variables only when it builds its own transport; the worker's
client brings its own (a pool per thread, config/clients.py), so the routes are made here,
once, from the settings. Pure: strings in, routes out.

A route is an httpx mount pattern mapped to a proxy URL, or to None for "direct".
NO_PROXY follows curl's reading, as httpx does: ``*`` turns every proxy off, ``.example.com``
covers the subdomains of example.com, ``example.com`` the domain and its subdomains, an IP
address or ``localhost`` that host. CIDR ranges are not understood (curl does not either).
Loopback is always direct, whatever NO_PROXY says: a proxy can never reach this host's
own loopback, so routing ``127.0.0.1`` through it could only fail.
"""

from __future__ import annotations

import ipaddress

#: hosts never sent through a proxy
LOOPBACK_ROUTES = ("all://127.0.0.1", "all://localhost", "all://[::1]")


def proxy_routes(
    http_proxy: str | None, https_proxy: str | None, no_proxy: str | None
) -> dict[str, str | None]:
    """httpx mount pattern -> proxy URL (None: direct). Empty when no proxy is set."""
    routes: dict[str, str | None] = {}
    if http_proxy and http_proxy.strip():
        routes["http://"] = http_proxy.strip()
    if https_proxy and https_proxy.strip():
        routes["https://"] = https_proxy.strip()
    if not routes:
        return {}
    for entry in (no_proxy or "").split(","):
        host = entry.strip()
        if host == "*":
            return {}
        if host:
            routes[_direct_pattern(host)] = None
    routes.update(dict.fromkeys(LOOPBACK_ROUTES))
    return routes


def _direct_pattern(host: str) -> str:
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "all://localhost" if host.lower() == "localhost" else f"all://*{host}"
    return f"all://[{address}]" if address.version == 6 else f"all://{address}"

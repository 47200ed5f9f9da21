"""config.proxies: the proxy variables as httpx routes (pure)."""

from __future__ import annotations

import pytest

from config.proxies import LOOPBACK_ROUTES, proxy_routes

LOOPBACK = dict.fromkeys(LOOPBACK_ROUTES)


@pytest.mark.parametrize(
    ("http", "https", "no", "expected"),
    [
        (None, None, "example.com", {}),
        (None, "http://p:3128", None, {"https://": "http://p:3128", **LOOPBACK}),
        ("http://p:3128", None, None, {"http://": "http://p:3128", **LOOPBACK}),
        ("http://p:1", "http://p:2", "*", {}),
        (
            None,
            "http://p:3128",
            " .internal, example.com ,169.254.170.2,::1,localhost,",
            {
                "https://": "http://p:3128",
                "all://*.internal": None,
                "all://*example.com": None,
                "all://169.254.170.2": None,
                "all://[::1]": None,
                "all://localhost": None,
                **LOOPBACK,
            },
        ),
    ],
)
def test_routes(
    http: str | None, https: str | None, no: str | None, expected: dict[str, str | None]
) -> None:
    assert proxy_routes(http, https, no) == expected

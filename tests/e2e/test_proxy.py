"""A real Celery worker behind HTTP_PROXY: the token, the order query and the OMS push all
go through a real proxy (sandbox/proxy.py). The API and the OMS are named under
``.invalid``, which no resolver knows: a push that arrives went through the proxy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sandbox.proxy import ForwardProxy
from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_a_worker_behind_a_proxy_syncs_through_it(redis_url: str) -> None:
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        api_port, oms_port = port_of(stack.api_server.url), port_of(stack.oms_server.url)
        hosts = {"bwp-api.invalid": api_port, "oms.invalid": oms_port}
        with ForwardProxy(hosts) as proxy:
            # Given a worker whose API and OMS are reachable through the proxy only
            stack.start_poller()
            stack.start_worker(
                HTTP_PROXY=proxy.url,
                HTTPS_PROXY=proxy.url,
                ALLOW_INSECURE_HTTP="true",
                BWP_API_URL=f"http://bwp-api.invalid:{api_port}/graphql",
                BWP_TOKEN_URL=f"http://bwp-api.invalid:{api_port}/token",
                OMS_URL=f"http://oms.invalid:{oms_port}/deliveries",
            )
            # When a delivery event arrives
            stack.api.store.add_order("322-PROXY-1", "bp-proxy", [("li-1", 2, "d-1")])
            stack.api.store.update_delivery("322-PROXY-1", "d-1", state="IN_TRANSIT")
            stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", "322-PROXY-1", "d-1")
            # Then the OMS has it, and the token, the query and the push went through the proxy
            stack.wait_until(lambda: len(pushes(stack, "322-PROXY-1")) == 1, what="the push")
            assert pushes(stack, "322-PROXY-1")[0]["state"] == "IN_TRANSIT"
            assert set(proxy.requests) == {("POST", "bwp-api.invalid"), ("POST", "oms.invalid")}
            assert proxy.requests.count(("POST", "oms.invalid")) == 1
            assert proxy.requests.count(("POST", "bwp-api.invalid")) >= 2  # token + query

"""APNs and FCM through an HTTP proxy (a small CONNECT and forward proxy on loopback), as the
environment names it when a client is built, and NO_PROXY around it."""

import uuid

import pytest

from adapters.apns import APNsAdapter
from adapters.base import Credentials, OutboundMessage
from adapters.fcm import FCMAdapter
from adapters.transport.proxy import Proxy as ProxySetting
from adapters.transport.proxy import proxy_for
from tests.adapters.conftest import hex_token
from tests.adapters.servers import (
    FCMLike,
    Proxy,
    aiohttp_fcm,
    hypercorn_fcm,
    make_tls,
    service_account,
)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    """Whatever this machine's environment says, each test starts without proxy settings."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "request_method"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
def tls(tmp_path):
    return make_tls(tmp_path)


def _apns_message():
    return OutboundMessage(message_id=str(uuid.uuid4()), token=hex_token(), title="Hi", body="x")


def _fcm_message():
    token = f"tok-{uuid.uuid4().hex}"
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, title="Hi", body="x")


def _apns_send(fakes, count=1):
    adapter = APNsAdapter(endpoint=fakes.apns_endpoint, ca_file=fakes.ca_file, timeout=5)
    try:
        return adapter.send_batch(fakes.apns_credentials(), [_apns_message() for _ in range(count)])
    finally:
        adapter.close()


def _hostport(origin):
    return origin.split("://", 1)[1]


# -- which proxy, from the environment --


@pytest.mark.parametrize(
    ("no_proxy", "origin", "bypassed"),
    [
        ("", "https://api.push.apple.com", False),
        ("*", "https://api.push.apple.com", True),
        ("apple.com", "https://api.push.apple.com", True),  # a name covers its subdomains
        (".apple.com", "https://api.push.apple.com", True),
        (".apple.com", "https://apple.com", True),
        ("le.com", "https://api.push.apple.com", False),  # a suffix only at a dot
        ("example.org, api.push.apple.com", "https://api.push.apple.com", True),
        ("api.push.apple.com:443", "https://api.push.apple.com", True),
        ("api.push.apple.com:8443", "https://api.push.apple.com", False),
        ("127.0.0.1", "https://127.0.0.1:8443", True),
        ("127.0.0.1:8443", "https://127.0.0.1:8443", True),
        ("127.0.0.2", "https://127.0.0.1:8443", False),
        ("LOCALHOST", "http://localhost:8089", True),
    ],
)
def test_no_proxy_entries(no_proxy_environment, no_proxy, origin, bypassed):
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    no_proxy_environment.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    no_proxy_environment.setenv("NO_PROXY", no_proxy)
    expected = None if bypassed else ProxySetting("proxy.internal", 3128)
    assert proxy_for(origin) == expected


def test_proxy_urls_and_the_variables_that_apply(no_proxy_environment):
    env = no_proxy_environment
    assert proxy_for("https://fcm.googleapis.com") is None
    env.setenv("HTTPS_PROXY", "proxy.internal:3128")  # a bare host:port is http://
    assert proxy_for("https://fcm.googleapis.com") == ProxySetting("proxy.internal", 3128)
    assert proxy_for("http://fcm-mock:8089") is None  # HTTPS_PROXY is for https:// only
    env.setenv("https_proxy", "http://us%40r:p%3Ass@other:8080")  # lower case wins
    chosen = proxy_for("https://fcm.googleapis.com")
    assert (chosen.host, chosen.port, chosen.username, chosen.password) == (
        "other",
        8080,
        "us@r",
        "p:ss",
    )
    assert chosen.authorization == "Basic dXNAcjpwOnNz"  # base64 of "us@r:p:ss"
    assert "p:ss" not in repr(chosen) and chosen.url == "http://other:8080"
    env.setenv("HTTP_PROXY", "http://plain:80")
    assert proxy_for("http://fcm-mock:8089") == ProxySetting("plain", 80)
    env.setenv("REQUEST_METHOD", "GET")  # under CGI, HTTP_PROXY may come from a client header
    assert proxy_for("http://fcm-mock:8089") is None
    env.setenv("https_proxy", "https://tls-proxy:443")
    with pytest.raises(ValueError, match="only http:// proxies"):
        proxy_for("https://fcm.googleapis.com")


# -- APNs (the fake: TLS, ALPN h2) --


def test_apns_connects_through_the_proxy_with_tls_inside_the_tunnel(fakes, no_proxy_environment):
    with Proxy().running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
        results = _apns_send(fakes, count=50)
    assert all(r.ok for r in results), results[:3]
    assert proxy.log.tunnels == [_hostport(fakes.apns_endpoint)]  # one connection, 50 streams


def test_apns_sends_the_proxy_credentials(fakes, no_proxy_environment):
    with Proxy(credentials="sender:s3cr@t").running() as proxy:
        no_proxy_environment.setenv("https_proxy", proxy.url_with("sender:s3cr%40t"))
        [result] = _apns_send(fakes)
    assert result.ok, result
    assert proxy.log.tunnels == [_hostport(fakes.apns_endpoint)]


def test_apns_proxy_authentication_refused_is_a_network_error(fakes, no_proxy_environment):
    with Proxy(credentials="sender:right").running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url_with("sender:wrong"))
        results = _apns_send(fakes, count=3)
    for result in results:
        assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)
        assert "407 Proxy Authentication Required" in result.error_message
        assert proxy.url in result.error_message
    assert proxy.log.tunnels == [] and len(proxy.log.refused) == 1  # one attempt for the batch


@pytest.mark.parametrize("answer", ["403 Forbidden", "502 Bad Gateway"])
def test_apns_connect_refused_names_the_proxys_status(fakes, no_proxy_environment, answer):
    with Proxy(refuse=answer).running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
        [result] = _apns_send(fakes)
    assert (result.ok, result.error_code) == (False, "network_error")
    assert f"refused CONNECT {_hostport(fakes.apns_endpoint)}: {answer}" in result.error_message


@pytest.mark.parametrize("entry", ["127.0.0.1", "{hostport}", "*", "example.org,127.0.0.1"])
def test_no_proxy_bypasses_the_proxy_for_apns(fakes, no_proxy_environment, entry):
    with Proxy(refuse="403 Forbidden").running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_environment.setenv(
            "NO_PROXY", entry.format(hostport=_hostport(fakes.apns_endpoint))
        )
        [result] = _apns_send(fakes)
    assert result.ok, result
    assert proxy.log.tunnels == [] and proxy.log.refused == []


def test_a_no_proxy_entry_for_another_host_keeps_the_proxy(fakes, no_proxy_environment):
    with Proxy().running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_environment.setenv("no_proxy", "localhost,.example.org")
        [result] = _apns_send(fakes)
    assert result.ok, result
    assert proxy.log.tunnels == [_hostport(fakes.apns_endpoint)]


# -- FCM: the endpoint and the OAuth token request --


def _fcm_send(endpoint, token_origin, ca_file, count=5, batches=1):
    account = service_account(f"{token_origin}/token")
    credentials = Credentials(key="proxied", values={"service_account": account})
    adapter = FCMAdapter(endpoint=endpoint, timeout=5, ca_file=ca_file)
    try:
        results = []
        for _ in range(batches):
            results += adapter.send_batch(credentials, [_fcm_message() for _ in range(count)])
        [client] = adapter._clients.values()
        return results, client.pool.protocol
    finally:
        adapter.close()


@pytest.mark.parametrize(
    ("server", "protocol", "endpoint_tunnels"),
    # HTTP/2: one connection. HTTP/1.1: the probe, then one keep-alive connection per
    # concurrent request of the first batch, kept for the second.
    [(hypercorn_fcm, "h2", 1), (aiohttp_fcm, "http/1.1", 1 + 5)],
)
def test_fcm_and_its_token_request_go_through_the_proxy_over_tls(
    tls, no_proxy_environment, server, protocol, endpoint_tunnels
):
    state = FCMLike()  # one state: the token server's tokens are the endpoint's
    with (
        server(state, tls) as endpoint,
        aiohttp_fcm(state, tls) as token_origin,
        Proxy(credentials="u:p").running() as proxy,
    ):
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url_with("u:p"))
        results, negotiated = _fcm_send(endpoint, token_origin, tls.ca_file, batches=2)
    assert len(results) == 10 and all(r.ok for r in results), results[:3]
    assert negotiated == protocol
    assert sorted(proxy.log.tunnels) == sorted(
        [_hostport(endpoint)] * endpoint_tunnels + [_hostport(token_origin)]
    )
    assert state.token_requests == 1 and len(state.sends) == 10


def test_fcm_http1_connect_refused_names_the_proxys_status(tls, no_proxy_environment):
    """The probe's tunnel is let through, aiohttp's is refused; the token server is in
    NO_PROXY by host:port."""
    state = FCMLike()
    with (
        aiohttp_fcm(state, tls) as endpoint,
        aiohttp_fcm(state, tls) as token_origin,
        Proxy().running() as proxy,
    ):
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_environment.setenv("NO_PROXY", _hostport(token_origin))
        proxy.refuse_after = 1
        results, _ = _fcm_send(endpoint, token_origin, tls.ca_file, count=2)
    for result in results:
        assert (result.ok, result.error_code) == (False, "network_error")
        assert f"refused CONNECT to https://{_hostport(endpoint)}: 502" in result.error_message
    assert proxy.log.tunnels == [_hostport(endpoint)]
    assert state.token_requests == 1 and state.sends == []


def test_fcm_token_request_refused_by_the_proxy_is_a_network_error(tls, no_proxy_environment):
    state = FCMLike()
    with aiohttp_fcm(state, tls) as origin, Proxy(credentials="u:p").running() as proxy:
        no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)  # no credentials: 407
        results, _ = _fcm_send(origin, origin, tls.ca_file, count=2)
    for result in results:
        assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)
        assert "OAuth token request failed" in result.error_message
        assert "407" in result.error_message
    assert state.token_requests == 0


def test_cleartext_fcm_goes_through_http_proxy_as_http1(no_proxy_environment):
    """An http:// endpoint behind HTTP_PROXY: HTTP/1.1 through the proxy as a forward proxy
    (h2c would need a tunnel), the token request too; HTTPS_PROXY does not apply."""
    state = FCMLike()
    with (
        aiohttp_fcm(state) as endpoint,
        aiohttp_fcm(state) as token_origin,
        Proxy(credentials="u:p").running() as proxy,
        Proxy(refuse="403 Forbidden").running() as https_proxy,
    ):
        no_proxy_environment.setenv("HTTP_PROXY", proxy.url_with("u:p"))
        no_proxy_environment.setenv("HTTPS_PROXY", https_proxy.url)
        results, negotiated = _fcm_send(endpoint, token_origin, None)
    assert all(r.ok for r in results), results[:3]
    assert negotiated == "http/1.1"
    assert proxy.log.tunnels == []
    forwarded = {line.split(" ")[1].split("/")[2] for line in proxy.log.forwarded}
    assert forwarded == {_hostport(endpoint), _hostport(token_origin)}
    assert https_proxy.log.refused == [] and https_proxy.log.tunnels == []
    assert state.protocols() == {"HTTP/1.1"} and len(state.sends) == 5

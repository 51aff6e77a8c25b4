"""Rate limits behind a load balancer: clients are told apart by what a trusted proxy reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Harness, app_doc, js, starter
from nflow.config import RateLimitConfig, load_config
from nflow.errors import ConfigError
from nflow.ratelimit import PeerKeys, proxied_client


def test_only_a_trusted_proxy_is_believed_and_each_request_is_read_anew() -> None:
    config = RateLimitConfig(enabled=True, trusted_proxies=["10.0.0.0/8"])
    keys = PeerKeys()
    proxy = "10.1.2.3:40000"
    assert keys.key(proxy, config, [("X-Real-IP", "203.0.113.9")]) == "ip:203.0.113.9"
    # The same proxy connection carries another client next.
    assert keys.key(proxy, config, [("X-Real-IP", "198.51.100.1")]) == "ip:198.51.100.1"
    # A client's own X-Forwarded-For entries come first; the proxy's entry is the last.
    forwarded = [("X-Forwarded-For", "1.2.3.4, 203.0.113.7")]
    assert keys.key(proxy, config, forwarded) == "ip:203.0.113.7"
    assert keys.key(proxy, config, []) == "ip:10.1.2.3"
    # Anyone else's headers are ignored.
    assert keys.key("192.0.2.1:5000", config, [("X-Real-IP", "203.0.113.9")]) == "ip:192.0.2.1"
    assert proxied_client([("X-Real-IP", "not an address")]) is None


def test_trusted_proxies_must_be_addresses(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[rate_limit]\ntrusted_proxies = ["lb.internal"]\n')
    with pytest.raises(ConfigError, match=r"rate_limit\.trusted_proxies"):
        load_config(path, environ={})


def test_clients_behind_a_trusted_proxy_have_a_limit_each(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s1=starter("s1", "/hello", "a", method="GET"),
        a=js("a", "function main(){ c.String(200, 'hi') }"),
    )
    h = Harness(
        db_url,
        tmp_path,
        apps=[doc],
        toml="[rate_limit]\nenabled = true\nip_rate_limit = 2\nip_window_minutes = 60\n"
        'ip_burst_size = 0\ntrusted_proxies = ["127.0.0.1"]\n',
    )
    try:

        def status(client_ip: str) -> int:
            headers = [("X-Real-IP", client_ip)]
            return h.request("GET", "/hello", headers=headers, client="127.0.0.1:40000").status

        assert [status("203.0.113.1") for _ in range(3)] == [200, 200, 429]
        assert [status("203.0.113.2") for _ in range(3)] == [200, 200, 429]
    finally:
        h.close()

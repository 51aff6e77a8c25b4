"""The HTTP plugin against a local server: result shape, limits, TLS and SSRF refusals."""

from __future__ import annotations

import gzip
import ipaddress
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from plugin_support import Cert, LocalServer, PluginRuntime, Reply, Seen, json_reply

from nflow.plugins import HttpPolicy
from nflow.plugins._http import address_problem

LOOPBACK_OK = '[http]\nallowed_hosts = ["127.0.0.1"]\n'


def peer_app(seen: Seen) -> Reply:
    parts = urlsplit(seen.path)
    query = parse_qs(parts.query)
    path = parts.path
    if path == "/echo":
        return (
            200,
            [("Content-Type", "application/json"), ("X-Reply", "a"), ("X-Reply", "b")],
            b'{"method":"' + seen.method.encode() + b'","body":' + (seen.body or b'""') + b"}",
        )
    if path == "/missing":
        return 404, [("Content-Type", "text/plain")], b"no such thing"
    if path == "/redirect":
        return 302, [("Location", query["to"][0])], b""
    if path.startswith("/chain/"):
        left = int(path.rsplit("/", 1)[1])
        if left == 0:
            return 200, [], b"end of chain"
        return 301, [("Location", f"/chain/{left - 1}")], b""
    if path == "/big":
        return 200, [], b"x" * 5000
    if path == "/gzip":
        return 200, [("Content-Encoding", "gzip")], gzip.compress(b"y" * 3000)
    if path == "/slow":
        time.sleep(1.5)
        return 200, [], b"late"
    return json_reply({"path": path})


@pytest.fixture
def peer(local_server: Callable[..., LocalServer]) -> LocalServer:
    return local_server(peer_app)


@pytest.fixture
def rt(plugin_rt: Callable[..., PluginRuntime]) -> Iterator[PluginRuntime]:
    yield plugin_rt()


def catch(call: str) -> str:
    """A script that runs ``call`` and writes the error message (or the result)."""
    return f"""function main(){{
  try {{ var r = {call}; c.JSON(200, {{ok: true, r: r}}) }}
  catch (e) {{ c.JSON(200, {{ok: false, error: e.message}}) }}
}}"""


def test_get_returns_the_go_shape(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch(f'http_get("{peer.url}/echo")'))
    assert out["ok"], out
    r = out["r"]
    assert r["status"] == "200 OK" and r["status_code"] == 200 and r["err"] is None
    assert r["body"] == '{"method":"GET","body":""}'
    assert r["header"]["X-Reply"] == ["a", "b"]
    assert r["header"]["Content-Type"] == ["application/json"]
    assert peer.seen[0].headers["user-agent"].startswith("nflow")


def test_post_with_header_sends_body_and_array_headers(
    rt: PluginRuntime, peer: LocalServer
) -> None:
    rt.reconfigure(LOOPBACK_OK)
    code = f"""function main(){{
  var header = {{"Content-Type": ["application/json"], "X-Many": ["1", "2"], "X-Plain": "p"}};
  var r = http_post_with_header("{peer.url}/echo", '{{"a":1}}', header);
  var reply = JSON.parse(r.body);
  c.JSON(200, {{code: r.status_code, reply: reply}});
}}"""
    out = rt.run(code)
    assert out == {"code": 200, "reply": {"method": "POST", "body": {"a": 1}}}
    seen = peer.seen[-1]
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-plain"] == "p"
    assert seen.body == b'{"a":1}'


def test_every_method_and_variant(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    u = f"{peer.url}/echo"
    code = f"""function main(){{
  var h = {{"X-T": ["v"]}};
  var out = [
    http_get("{u}"), http_delete("{u}"), http_post("{u}", "1"), http_put("{u}", "2"),
    http_patch("{u}", "3"), http_get_with_header("{u}", h), http_delete_with_header("{u}", h),
    http_put_with_header("{u}", "4", h), http_patch_with_header("{u}", "5", h),
    http_post("{u}", {{k: "v"}}),
  ].map(function (r) {{ return JSON.parse(r.body) }});
  c.JSON(200, out);
}}"""
    out = rt.run(code)
    assert [o["method"] for o in out] == [
        "GET",
        "DELETE",
        "POST",
        "PUT",
        "PATCH",
        "GET",
        "DELETE",
        "PUT",
        "PATCH",
        "POST",
    ]
    assert [o["body"] for o in out[2:5]] == [1, 2, 3]
    assert out[-1]["body"] == {"k": "v"}  # an object body is sent as JSON
    assert [s.headers.get("x-t") for s in peer.seen[5:9]] == ["v"] * 4


def test_error_statuses_are_results_not_exceptions(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch(f'http_get("{peer.url}/missing")'))
    assert out["ok"]
    assert (out["r"]["status_code"], out["r"]["status"]) == (404, "404 Not Found")
    assert out["r"]["body"] == "no such thing"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/", "127.0.0.1 is a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:9/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:9/", "is a loopback address"),
        ("http://0.0.0.0:9/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://localhost:9/", "127.0.0.1 is a loopback address"),
    ],
)
def test_default_policy_refuses_internal_addresses(rt: PluginRuntime, url: str, why: str) -> None:
    out = rt.run(catch(f'http_get("{url}")'))
    assert not out["ok"]
    assert out["error"].startswith(f"http_get {url}: refused: ")
    assert why in out["error"]
    assert "allow_private" in out["error"]


def test_redirect_to_a_private_address_is_refused(rt: PluginRuntime, peer: LocalServer) -> None:
    # The peer is trusted by name only, so its redirect into 127.0.0.1 is checked on its own.
    rt.reconfigure('[http]\nallowed_hosts = ["localhost"]\n')
    public = f"http://localhost:{peer.port}"
    out = rt.run(catch(f'http_get("{public}/redirect?to={peer.url}/echo")'))
    assert not out["ok"]
    assert "127.0.0.1 is a loopback address" in out["error"]
    assert out["error"].startswith(f"http_get {public}/redirect: refused")  # no query shown
    assert [s.path for s in peer.seen] == [f"/redirect?to={peer.url}/echo"]
    # A redirect that stays on the trusted name is followed.
    out = rt.run(catch(f'http_get("{public}/redirect?to=/echo")'))
    assert out["ok"] and out["r"]["body"] == '{"method":"GET","body":""}'


def test_redirects_are_bounded(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch(f'http_get("{peer.url}/chain/5")'))
    assert out["ok"] and out["r"]["body"] == "end of chain"
    out = rt.run(catch(f'http_get("{peer.url}/chain/6")'))
    assert not out["ok"]
    assert "stopped after 5 redirects" in out["error"]


def test_other_schemes_are_refused(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch('http_get("file:///etc/passwd")'))
    assert not out["ok"] and "refused: scheme 'file'" in out["error"]
    out = rt.run(catch('http_get("ftp://127.0.0.1/x")'))
    assert not out["ok"] and "refused: scheme 'ftp'" in out["error"]
    out = rt.run(catch(f'http_get("{peer.url}/redirect?to=file:///etc/passwd")'))
    assert not out["ok"] and "refused: scheme 'file'" in out["error"]


def test_response_size_is_capped(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK + "max_response_bytes = 4000\n")
    out = rt.run(catch(f'http_get("{peer.url}/big")'))
    assert not out["ok"]
    assert out["error"] == (
        f"http_get {peer.url}/big: response larger than 4000 bytes (Content-Length 5000)"
    )
    # The cap applies to the decoded body: 3000 bytes of gzip that inflate past it fail too.
    rt.reconfigure(LOOPBACK_OK + "max_response_bytes = 2000\n")
    out = rt.run(catch(f'http_get("{peer.url}/gzip")'))
    assert not out["ok"] and "response larger than 2000 bytes" in out["error"]
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch(f'http_get("{peer.url}/gzip")'))
    assert out["ok"] and out["r"]["body"] == "y" * 3000
    assert "Content-Encoding" not in out["r"]["header"]


def test_timeout_is_an_error(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK + "timeout_seconds = 0.3\n")
    started = time.monotonic()
    out = rt.run(catch(f'http_get("{peer.url}/slow")'))
    assert time.monotonic() - started < 1.4
    assert not out["ok"]
    assert out["error"] == f"http_get {peer.url}/slow: timed out after 0.3 s"


def test_dns_failure_is_an_error(rt: PluginRuntime) -> None:
    rt.reconfigure("[http]\nallow_private = true\ntimeout_seconds = 3\n")
    out = rt.run(catch('http_get("http://no-such-host.invalid/x")'))
    assert not out["ok"]
    assert out["error"].startswith("http_get http://no-such-host.invalid/x: ")
    assert "cannot resolve host 'no-such-host.invalid'" in out["error"]


def test_connection_refused_is_an_error(rt: PluginRuntime, peer: LocalServer) -> None:
    rt.reconfigure(LOOPBACK_OK)
    port = peer.port
    peer.close()
    out = rt.run(catch(f'http_get("http://127.0.0.1:{port}/")'))
    assert not out["ok"]
    assert out["error"].startswith(f"http_get http://127.0.0.1:{port}/: cannot connect (")


def test_tls_certificates_are_verified(
    rt: PluginRuntime, local_server: Callable[..., LocalServer], self_signed: Cert
) -> None:
    rt.reconfigure(LOOPBACK_OK)
    server = local_server(peer_app, tls=self_signed.server_context())
    out = rt.run(catch(f'http_get("{server.url}/echo")'))
    assert not out["ok"]
    assert "TLS certificate verification failed" in out["error"]
    assert server.seen == []


def test_uncaught_error_fails_the_run_with_the_url(rt: PluginRuntime) -> None:
    rt.serve('function main(){ http_get("http://10.1.2.3/secret?token=abc"); c.JSON(200, {}) }')
    r = rt.request("GET", "/t")
    assert r.status == 500
    message = r.json()["message"]
    assert "http_get http://10.1.2.3/secret: refused" in message
    assert "token=abc" not in message  # query strings often carry secrets


def test_bad_arguments_are_errors(rt: PluginRuntime) -> None:
    rt.reconfigure(LOOPBACK_OK)
    out = rt.run(catch('http_get_with_header("http://127.0.0.1:9/", "nope")'))
    assert not out["ok"] and "headers must be an object" in out["error"]
    out = rt.run(catch('http_get_with_header("http://127.0.0.1:9/", {"X-A": "a\\r\\nX-B: b"})'))
    assert not out["ok"] and "line break" in out["error"]
    out = rt.run(catch("http_get(42)"))
    assert not out["ok"] and "the URL must be a non-empty string" in out["error"]


def test_address_policy() -> None:
    default = HttpPolicy()

    def problem(ip: str, host: str = "example.test", policy: HttpPolicy = default) -> str | None:
        return address_problem(ipaddress.ip_address(ip), host, policy)

    assert problem("93.184.216.34") is None
    assert problem("2606:4700::1111") is None
    for ip in (
        "127.0.0.2",
        "10.1.1.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ):
        assert problem(ip) is not None, ip
    assert problem("::ffff:93.184.216.34") is None  # a mapped public address is public
    networks = HttpPolicy(allowed_hosts=("10.0.0.0/8", "[::1]", "Internal.Example"))
    assert problem("10.9.9.9", policy=networks) is None
    assert problem("::ffff:10.9.9.9", policy=networks) is None
    assert problem("::1", policy=networks) is None
    assert problem("192.168.0.1", policy=networks) is not None
    assert problem("192.168.0.1", "internal.example.", policy=networks) is None
    assert problem("127.0.0.1", policy=HttpPolicy(allow_private=True)) is None
    with pytest.raises(TypeError):
        HttpPolicy(allowed_hosts="localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HttpPolicy(timeout_seconds=0)

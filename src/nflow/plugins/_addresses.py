"""The HTTP plugin's policy and its address check, shared by the HTTP client and mail.

Every connection a script chooses the server of resolves through :func:`allowed_addresses`
and connects to one of the addresses it returns, so the address checked is the address used.
The HTTP client itself (httpx, loaded by the first request) is :mod:`nflow.plugins._http_client`.
"""

from __future__ import annotations

__all__ = [
    "MIB",
    "USER_AGENT",
    "Fetched",
    "HttpFailure",
    "HttpPolicy",
    "address_problem",
    "allowed_addresses",
]

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from functools import cache

MIB = 1024 * 1024
USER_AGENT = "nflow-http/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Limits and the address allow-list of the HTTP plugin.

    ``allowed_hosts`` entries are host names (matched against the URL's host, case-insensitive,
    so every address that name resolves to is trusted) or IP addresses and CIDR networks
    (matched against the resolved address). ``allow_private`` lifts the address check entirely,
    for deployments whose playbooks must reach internal services.
    """

    timeout_seconds: float = 10.0
    max_response_bytes: int = 10 * MIB
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("HttpPolicy.timeout_seconds must be greater than 0")
        if self.max_response_bytes < 1:
            raise ValueError("HttpPolicy.max_response_bytes must be at least 1")
        if self.max_redirects < 0:
            raise ValueError("HttpPolicy.max_redirects must be 0 or more")
        if isinstance(self.allowed_hosts, str):
            raise TypeError("HttpPolicy.allowed_hosts must be a tuple of strings, not a string")
        _allow_list(tuple(self.allowed_hosts))  # reject malformed entries at configuration time


# --------------------------------------------------------------------------------------------
# Address policy


@cache
def _allow_list(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            raise ValueError("HttpPolicy.allowed_hosts has an empty entry")
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            names.add(text.lower().rstrip("."))
    return frozenset(names), tuple(networks)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv6 one (mapped, 6to4, NAT64), if any.

    ``::ffff:127.0.0.1`` reaches 127.0.0.1 on a dual-stack socket, so it is judged as such.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or ``None`` when it is one."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved (non-public) address"
    return None


def address_problem(ip: IPAddress, host: str, policy: HttpPolicy) -> str | None:
    """``None`` if the policy lets a request for ``host`` connect to ``ip``, else the reason."""
    if policy.allow_private:
        return None
    names, networks = _allow_list(tuple(policy.allowed_hosts))
    if host.lower().rstrip(".").strip("[]") in names:
        return None
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if ip.ipv4_mapped is not None:
            candidates = [ip.ipv4_mapped]  # only the IPv4 address is ever reached
        elif inner is not None:
            candidates = [ip, inner]
        else:
            candidates = [ip]
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in networks):
            return None
    for candidate in candidates:
        kind = _kind(candidate)
        if kind is not None:
            shown = f"{ip} ({candidate})" if candidate is not ip else str(ip)
            return f"{shown} is {kind}"
    return None


class HttpFailure(Exception):
    """A request that did not produce a response; the message is the reason."""


class _Refused(HttpFailure):
    pass


async def allowed_addresses(host: str, port: int, policy: HttpPolicy) -> list[str]:
    """The addresses of ``host`` a script may connect to under ``policy``, to use as they are.

    Every connection a script chooses the server of (HTTP, a ``mail_config`` SMTP server)
    resolves through here and connects to one of these addresses, so the address checked is
    the address used. :class:`HttpFailure` when the name does not resolve or none is allowed.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HttpFailure(f"cannot resolve host {host!r} ({exc.strerror or exc})") from None
    addresses: list[str] = []
    refusals: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        if text in addresses:
            continue
        problem = address_problem(ipaddress.ip_address(text), host, policy)
        if problem is None:
            addresses.append(text)
        elif problem not in refusals:
            refusals.append(problem)
    if not addresses:
        reason = "; ".join(refusals) or "no address"
        raise _Refused(
            f"refused: {reason}; private, loopback, link-local, multicast and "
            "unspecified addresses need [http] allow_private or allowed_hosts"
        )
    return addresses


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    status_code: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    decoded: bool  # a Content-Encoding was removed while reading

"""Fixtures of the plugin tests: a plugin-enabled runtime, local HTTP peers, a TLS certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from plugin_support import Cert, LocalServer, PluginRuntime, Reply, Seen

from nflow.jsapi import HostTable


@pytest.fixture
def plugin_rt(tmp_path: Path) -> Iterator[Callable[..., PluginRuntime]]:
    """Builds PluginRuntime(toml) instances, all closed after the test."""
    made: list[PluginRuntime] = []

    def factory(
        toml: str = "", *, database_url: str = "", hosts: Sequence[HostTable] = ()
    ) -> PluginRuntime:
        rt = PluginRuntime(tmp_path, toml, database_url=database_url, hosts=hosts)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def local_server() -> Iterator[Callable[..., LocalServer]]:
    """Starts LocalServer(app[, tls]) peers, all stopped after the test."""
    servers: list[LocalServer] = []

    def factory(app: Callable[[Seen], Reply], tls: ssl.SSLContext | None = None) -> LocalServer:
        server = LocalServer(app, tls)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nflow plugin tests")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Cert(cert_path, key_path)

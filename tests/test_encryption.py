"""Sensitive data at rest: tracker payloads and Redis session values sealed with AES-256-GCM
under key ids, and `nflow keys rotate` moving them to a new key."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest
import redis as redis_lib

from harness import Browser, Harness, app_doc, js, starter
from nflow.cli import main
from nflow.security import KeyRing, field_aad

DOC = app_doc(
    s1=starter("s1", "/save", "a"),
    s2=starter("s2", "/read", "b"),
    a=js(
        "a",
        "function main(){ set_session('card', 'number', c.QueryParam('n')); payload.n = c.QueryParam('n'); c.String(200, 'ok') }",
    ),
    b=js("b", "function main(){ c.JSON(200, {n: get_session('card', 'number')}) }"),
)


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def crypto_toml(extra: str = "") -> str:
    return (
        f'[security]\nenable_encryption = true\nencryption_key = "{key()}"\n'
        "encrypt_sensitive_data = true\n" + extra
    )


def test_tracker_payloads_are_sealed(db_url: str, tmp_path: Path) -> None:
    toml = crypto_toml("[tracker]\nenabled = true\nflush_interval = 20\n")
    h = Harness(db_url, tmp_path, apps=[DOC], toml=toml)
    try:
        assert h.request("GET", "/save?n=4111111111111111").status == 200
        h.run(h.runtime.services.tracker.close())
        rows = h.store("run_sql", "SELECT payload FROM tracker")
        assert len(rows) == 1
        sealed = rows[0]["payload"]
        assert sealed.startswith("enc:v1:") and "4111" not in sealed
        keyring = h.runtime.services.keyring
        plain = keyring.decrypt(sealed, aad=field_aad("tracker", "payload"))
        assert '"n":"4111111111111111"' in plain
    finally:
        h.close()


def test_redis_session_values_are_sealed(db_url: str, tmp_path: Path, redis_prefix: str) -> None:
    prefix = redis_prefix + secrets.token_hex(4) + ":"
    toml = crypto_toml(
        f'[session]\nbackend = "redis"\n[redis]\nhost = "127.0.0.1:6379"\nprefix = "{prefix}"\n'
    )
    h = Harness(db_url, tmp_path, apps=[DOC], toml=toml)
    try:
        b = Browser(h)
        b.get("/save?n=4111111111111111")
        assert b.get("/read").json() == {"n": "4111111111111111"}
        client = redis_lib.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(match=prefix + "session:*"))
        assert len(keys) == 1
        stored = client.hgetall(keys[0])
        assert stored[b"card"].startswith(b"enc:v1:") and b"4111" not in stored[b"card"]
        client.close()
    finally:
        h.close()


def test_keys_rotate_moves_rows_to_the_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database_nflow]\ndsn = "{tmp_path / "k.db"}"\n'
        '[security]\nenable_encryption = true\nencryption_key = "legacy-key-material"\n'
        "encrypt_sensitive_data = true\n[tracker]\nenabled = true\nflush_interval = 20\n"
    )
    k1, k2 = key(), key()
    monkeypatch.setenv("NFLOW_ENCRYPTION_KEYS", f"k1:{k1}")
    app = tmp_path / "app.json"
    import json

    app.write_text(json.dumps(DOC))
    assert main(["run", "--config", str(cfg), str(app), "GET", "/save?n=1234"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("NFLOW_ENCRYPTION_KEYS", f"k2:{k2},k1:{k1}")
    assert main(["keys", "rotate", "--config", str(cfg)]) == 0
    assert "1 tracker payload(s)" in capsys.readouterr().out
    import sqlite3

    (sealed,) = sqlite3.connect(tmp_path / "k.db").execute("SELECT payload FROM tracker").fetchone()
    assert sealed.startswith("enc:v1:k2:")
    ring = KeyRing.load(environ={"NFLOW_ENCRYPTION_KEYS": f"k2:{k2}"})
    assert '"n":"1234"' in ring.decrypt(sealed, aad=field_aad("tracker", "payload"))
    assert os.environ["NFLOW_ENCRYPTION_KEYS"].startswith("k2:")

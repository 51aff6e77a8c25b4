"""Configuration secrets: stored sealed in nflow_secrets, referenced as "secret:NAME" in
config.toml, resolved when the runtime opens, re-sealed by `nflow keys rotate`."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from harness import Browser, Harness, app_doc, js, starter
from nflow.cli import main
from nflow.config import load_config, redacted
from nflow.errors import ConfigError
from nflow.security import KeyRing, secret_aad
from nflow.store import SecretRecord, Store

K1 = base64.b64encode(secrets.token_bytes(32)).decode()
K2 = base64.b64encode(secrets.token_bytes(32)).decode()
PLAIN = "s3cr3t-api-key-value"
SESSION_SECRET = "a-session-signing-secret-of-40-characters!"

DOC = app_doc(
    s1=starter("s1", "/env", "a"),
    s2=starter("s2", "/save", "b"),
    s3=starter("s3", "/read", "c"),
    a=js("a", "function main(){ c.JSON(200, {key: env['api_key']}) }"),
    b=js("b", "function main(){ set_session('cart', 'item', 'book'); c.String(200, 'ok') }"),
    c=js("c", "function main(){ c.JSON(200, {item: get_session('cart', 'item')}) }"),
)


def db_toml(db_url: str) -> str:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return f'[database_nflow]\ndriver = "sqlite3"\ndsn = "{url.database}"\n'
    return f'[database_nflow]\ndriver = "postgres"\ndsn = "{db_url}"\n'


def rows(db_url: str) -> list[SecretRecord]:
    async def read() -> list[SecretRecord]:
        async with Store(db_url) as store:
            return await store.get_secrets()

    return asyncio.run(read())


@pytest.fixture
def cfg(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NFLOW_ENCRYPTION_KEYS", f"k1:{K1}")
    path = tmp_path / "cli.toml"  # Harness writes its own config.toml
    path.write_text(db_toml(db_url))
    return path


def test_set_list_delete_through_the_cli(
    cfg: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["secrets", "set", "smtp", "--value", PLAIN, "--config", str(cfg)]) == 0
    assert "secret:smtp" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin-value\n"))
    assert main(["secrets", "set", "redis.pw", "--config", str(cfg)]) == 0
    capsys.readouterr()

    assert main(["secrets", "list", "--config", str(cfg)]) == 0
    listed = capsys.readouterr().out
    assert "smtp\tkey k1\t" in listed and "redis.pw\tkey k1\t" in listed
    assert PLAIN not in listed and "from-stdin" not in listed

    stored = {r.name: r for r in rows(db_url)}
    assert set(stored) == {"smtp", "redis.pw"}
    for record in stored.values():
        assert record.key_id == "k1" and record.value.startswith("enc:v1:k1:")
        assert PLAIN not in record.value and "from-stdin" not in record.value
    ring = KeyRing.parse(f"k1:{K1}")
    assert ring.decrypt(stored["redis.pw"].value, aad=secret_aad("redis.pw")) == "from-stdin-value"
    # A sealed value is bound to its name: copied under another name it does not decrypt.
    with pytest.raises(ValueError):
        ring.decrypt(stored["smtp"].value, aad=secret_aad("redis.pw"))

    # set again replaces the value
    assert main(["secrets", "set", "smtp", "--value", "new-value", "--config", str(cfg)]) == 0
    new = {r.name: r for r in rows(db_url)}["smtp"]
    assert ring.decrypt(new.value, aad=secret_aad("smtp")) == "new-value"

    assert main(["secrets", "delete", "smtp", "--config", str(cfg)]) == 0
    assert [r.name for r in rows(db_url)] == ["redis.pw"]
    assert main(["secrets", "delete", "smtp", "--config", str(cfg)]) == 1
    assert "no secret 'smtp'" in capsys.readouterr().err
    assert main(["secrets", "set", "bad name", "--value", "x", "--config", str(cfg)]) == 2
    assert "secret name 'bad name'" in capsys.readouterr().err


def test_no_key_refuses_to_store(
    cfg: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NFLOW_ENCRYPTION_KEYS")
    monkeypatch.delenv("NFLOW_ENCRYPTION_KEY_FILE", raising=False)
    assert main(["secrets", "set", "smtp", "--value", PLAIN, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "secrets are always stored encrypted" in err and "no encryption key" in err
    assert rows(db_url) == []


def store_secrets(db_url: str, ring: KeyRing, values: dict[str, str]) -> None:
    from nflow.security import set_secret

    async def put() -> None:
        async with Store(db_url) as store:
            for name, value in values.items():
                await set_secret(store, ring, name, value)

    asyncio.run(put())


def test_config_references_resolve_end_to_end(
    cfg: Path, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_secrets(db_url, KeyRing.parse(f"k1:{K1}"), {"apikey": PLAIN, "sess": SESSION_SECRET})
    toml = '[env]\napi_key = "secret:apikey"\n[session]\nsecret = "secret:sess"\n'
    h = Harness(db_url, tmp_path, apps=[DOC], toml=toml)
    try:
        assert h.request("GET", "/env").json() == {"key": PLAIN}
        shown = json.dumps(redacted(h.runtime.config))
        assert PLAIN not in shown and SESSION_SECRET not in shown
        assert '"api_key": "secret:apikey"' in shown and '"secret": "secret:sess"' in shown
        browser = Browser(h)
        assert browser.get("/save").text == "ok"
        cookies = dict(browser.cookies)
    finally:
        h.close()
    # The cookie was sealed with the resolved secret: a server given the plaintext reads it.
    plain_toml = f'[session]\nsecret = "{SESSION_SECRET}"\n'
    h = Harness(db_url, tmp_path, apps=[DOC], toml=plain_toml)
    try:
        browser = Browser(h)
        browser.cookies = cookies
        assert browser.get("/read").json() == {"item": "book"}
    finally:
        h.close()


def test_keys_rotate_reseals_secrets(
    cfg: Path,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["secrets", "set", "apikey", "--value", PLAIN, "--config", str(cfg)]) == 0
    monkeypatch.setenv("NFLOW_ENCRYPTION_KEYS", f"k2:{K2},k1:{K1}")
    capsys.readouterr()
    assert main(["keys", "rotate", "--config", str(cfg)]) == 0
    assert "1 secret(s)" in capsys.readouterr().out
    (record,) = rows(db_url)
    assert record.key_id == "k2" and record.value.startswith("enc:v1:k2:")
    # Only the new key is needed from now on.
    monkeypatch.setenv("NFLOW_ENCRYPTION_KEYS", f"k2:{K2}")
    h = Harness(db_url, tmp_path, apps=[DOC], toml='[env]\napi_key = "secret:apikey"\n')
    try:
        assert h.request("GET", "/env").json() == {"key": PLAIN}
    finally:
        h.close()
    assert main(["keys", "rotate", "--config", str(cfg)]) == 0
    assert "0 secret(s); 1 already current" in capsys.readouterr().out


def test_start_errors_name_the_key_and_the_secret(
    cfg: Path, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_secrets(db_url, KeyRing.parse(f"k1:{K1}"), {"short": "too-short"})
    app = tmp_path / "app.json"
    app.write_text(json.dumps(DOC))

    def start(toml: str) -> str:
        with pytest.raises(ConfigError) as caught:
            Harness(db_url, tmp_path, apps=[DOC], toml=toml).close()
        return str(caught.value)

    missing = start('[mail]\npassword = "secret:smtp"\n')
    assert "mail.password: secret 'smtp' is not in the nflow_secrets table" in missing
    assert "nflow secrets set smtp" in missing

    weak = start('[session]\nsecret = "secret:short"\n')
    assert "session.secret" in weak and "32 characters" in weak and "secret 'short'" in weak
    assert "too-short" not in weak

    with pytest.raises(ConfigError, match=r"database_nflow\.dsn: cannot refer to a secret"):
        from nflow.config import secret_references

        secret_references(load_config(None, environ={"NFLOW_DATABASE_NFLOW__DSN": "secret:x"}))

    monkeypatch.delenv("NFLOW_ENCRYPTION_KEYS")
    no_key = start('[env]\napi_key = "secret:short"\n')
    assert "env.api_key" in no_key and "secret 'short'" in no_key and "no encryption key" in no_key
    # The CLI reports the same at start, with exit status 2.
    cfg.write_text(db_toml(db_url) + '[env]\napi_key = "secret:short"\n')
    assert main(["run", "--config", str(cfg), str(app), "GET", "/env"]) == 2


def test_config_reload_reads_secrets_again(cfg: Path, db_url: str, tmp_path: Path) -> None:
    ring = KeyRing.parse(f"k1:{K1}")
    store_secrets(db_url, ring, {"apikey": PLAIN})
    toml = '[env]\napi_key = "secret:apikey"\n'
    h = Harness(db_url, tmp_path, apps=[DOC], toml=toml)
    try:
        assert h.request("GET", "/env").json() == {"key": PLAIN}
        store_secrets(db_url, ring, {"apikey": "rotated-value"})
        # What a SIGHUP does: the file again, with its "secret:" references unresolved.
        h.runtime.apply_config(load_config(tmp_path / "config.toml", environ={}), ["env.api_key"])
        assert h.request("GET", "/env").json() == {"key": "rotated-value"}
        assert "rotated-value" not in json.dumps(redacted(h.runtime.config))
    finally:
        h.close()

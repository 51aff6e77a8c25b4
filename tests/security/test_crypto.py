"""AES-256-GCM values with key ids: round trips, failures that say why, legacy values, rotation."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nflow.config import SecurityConfig
from nflow.security import (
    CONFIG_KEY_ID,
    DecryptionError,
    KeyConfigError,
    KeyRing,
    UnknownKeyError,
    field_aad,
    generate_key,
    is_encrypted,
    rotate_database,
)
from nflow.store import Store, TrackerRow

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(32, 64))).decode()


def ring(spec: str = f"k2:{K2},k1:{K1}") -> KeyRing:
    return KeyRing.parse(spec)


def go_encrypt(key: bytes, plaintext: str) -> str:
    """What the Go runtime's Encrypt wrote: base64std(nonce ‖ ciphertext ‖ tag), no AAD."""
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), None)).decode()


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_and_format() -> None:
    keys = ring()
    token = keys.encrypt("héllo wörld ✓")
    assert token.startswith("enc:v1:k2:")
    assert "=" not in token and "+" not in token and "/" not in token  # base64url, unpadded
    assert keys.decrypt(token) == "héllo wörld ✓"
    assert is_encrypted(token) and keys.is_encrypted(token)
    assert keys.encrypt("x") != keys.encrypt("x")  # a fresh nonce each time
    assert keys.decrypt(keys.encrypt("")) == ""


def test_aad_binds_the_value_to_its_context() -> None:
    keys = ring()
    token = keys.encrypt("secret", aad=field_aad("tracker", "payload"))
    assert keys.decrypt(token, aad=field_aad("tracker", "payload")) == "secret"
    with pytest.raises(DecryptionError, match="altered"):
        keys.decrypt(token)
    with pytest.raises(DecryptionError):
        keys.decrypt(token, aad=field_aad("queries", "query"))


def test_is_encrypted() -> None:
    token = ring().encrypt("x")
    assert not is_encrypted("plain text")
    assert not is_encrypted("enc:v1:k2:")
    assert not is_encrypted("enc:v1:bad id:AAAA")
    assert not is_encrypted("enc:v1:k2:AAAA")  # too short to hold a nonce and a tag
    assert not is_encrypted(None)
    assert is_encrypted(token)


# --- failures --------------------------------------------------------------------------------


def test_unknown_key_id_is_a_clear_error() -> None:
    token = KeyRing.parse(f"old:{K1}").encrypt("x")
    with pytest.raises(UnknownKeyError, match="unknown key id 'old'") as info:
        ring().decrypt(token)
    assert info.value.key_id == "old"
    assert "NFLOW_ENCRYPTION_KEYS" in str(info.value)


def test_tampering_is_detected() -> None:
    keys = ring()
    token = keys.encrypt("pay 10 EUR")
    prefix, data = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    for index in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        changed = bytearray(raw)
        changed[index] ^= 0x01
        forged = prefix + ":" + base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        with pytest.raises(DecryptionError, match="altered"):
            keys.decrypt(forged)
    # the key id is authenticated too: the same bytes under another id of the ring fail
    relabelled = token.replace("enc:v1:k2:", "enc:v1:k1:")
    with pytest.raises(DecryptionError, match="altered"):
        keys.decrypt(relabelled)
    with pytest.raises(DecryptionError, match="not an nflow encrypted value"):
        keys.decrypt("hello")


def test_key_specs_are_validated() -> None:
    with pytest.raises(KeyConfigError, match="32 bytes"):
        KeyRing.parse("k1:" + base64.b64encode(b"short").decode())
    with pytest.raises(KeyConfigError, match="not <key id>:<base64 key>"):
        KeyRing.parse(K1)
    with pytest.raises(KeyConfigError, match="used twice"):
        KeyRing.parse(f"a:{K1},a:{K2}")
    with pytest.raises(KeyConfigError, match="key id"):
        KeyRing.parse(f"bad id:{K1}")
    with pytest.raises(KeyConfigError, match="no encryption key"):
        KeyRing.load(environ={})
    assert "AAEC" not in repr(ring()) and K1 not in repr(ring())


# --- key sources -----------------------------------------------------------------------------


def test_load_from_env_file_and_config(tmp_path: Path) -> None:
    env_ring = KeyRing.load(environ={"NFLOW_ENCRYPTION_KEYS": f"k2:{K2},k1:{K1}"})
    assert env_ring.current_id == "k2" and env_ring.key_ids == ("k2", "k1")

    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2024-05\nnew:{K2}\n\nold:{K1}  # keep until rotated\n")
    file_ring = KeyRing.load(environ={"NFLOW_ENCRYPTION_KEY_FILE": str(key_file)})
    assert file_ring.key_ids == ("new", "old")
    assert KeyRing.load(environ={}, key_file=key_file).key_ids == ("new", "old")
    with pytest.raises(KeyConfigError, match="cannot read key file"):
        KeyRing.from_file(tmp_path / "absent")

    config = SecurityConfig(enable_encryption=True, encryption_key="correct horse battery staple")
    config_ring = KeyRing.load(environ={}, config=config)
    assert config_ring.key_ids == (CONFIG_KEY_ID,)
    # the env wins, and the config key stays readable for rotation
    both = KeyRing.load(environ={"NFLOW_ENCRYPTION_KEYS": f"k2:{K2}"}, config=config)
    assert both.key_ids == ("k2", CONFIG_KEY_ID)
    assert both.decrypt(config_ring.encrypt("old value")) == "old value"


def test_config_key_derivation_matches_go() -> None:
    raw32 = bytes(range(100, 132))
    passphrase = "correct horse battery staple"
    cases = {
        base64.b64encode(raw32).decode(): raw32,  # base64 of 32 bytes: used as is
        passphrase: hashlib.sha256(passphrase.encode()).digest(),  # not base64: SHA-256
        "abcd": hashlib.sha256(base64.b64decode("abcd")).digest(),  # base64, not 32 bytes
        "k" * 31 + "!": ("k" * 31 + "!").encode(),  # not base64, 32 bytes: used raw
        "k" * 32: hashlib.sha256(base64.b64decode("k" * 32)).digest(),  # base64 of 24 bytes
    }
    for value, key in cases.items():
        legacy = go_encrypt(key, "from go")
        assert KeyRing.from_config_key(value).decrypt_legacy(legacy) == "from go", value


def test_decrypt_legacy() -> None:
    config_ring = KeyRing.from_config_key("my-go-key")
    key = hashlib.sha256(b"my-go-key").digest()
    value = go_encrypt(key, '{"card":"4111111111111111"}')
    assert config_ring.decrypt_legacy(value) == '{"card":"4111111111111111"}'
    assert config_ring.decrypt_legacy("") == ""
    with pytest.raises(DecryptionError, match="invalid base64"):
        config_ring.decrypt_legacy("not base64!")
    with pytest.raises(DecryptionError, match="too short"):
        config_ring.decrypt_legacy(base64.b64encode(b"x" * 10).decode())
    with pytest.raises(DecryptionError, match="no key of the ring fits"):
        ring().decrypt_legacy(value)
    # a ring loaded from the environment still reads legacy values through the config key
    merged = KeyRing.load(
        environ={"NFLOW_ENCRYPTION_KEYS": f"k2:{K2}"},
        config=SecurityConfig(enable_encryption=True, encryption_key="my-go-key"),
    )
    assert merged.decrypt_legacy(value) == '{"card":"4111111111111111"}'


def test_generate_key() -> None:
    key = generate_key()
    assert len(base64.b64decode(key)) == 32
    assert KeyRing.parse(f"fresh:{key}").current_id == "fresh"


# --- rotation --------------------------------------------------------------------------------


def test_rotate_values_with_two_keys() -> None:
    old = KeyRing.parse(f"k1:{K1}")
    new = ring()  # k2 current, k1 still known
    values = [old.encrypt("a"), old.encrypt("b", aad=b"ctx"), new.encrypt("c"), "plain"]
    rotated = new.rotate(values[:1] + values[2:])
    assert [new.key_id_of(v) for v in rotated[:2]] == ["k2", "k2"]
    assert rotated[1] == values[2]  # already current: unchanged
    assert rotated[2] == "plain"  # not encrypted: unchanged
    assert new.decrypt(rotated[0]) == "a"
    [with_aad] = new.rotate(values[1:2], aad=b"ctx")
    assert new.decrypt(with_aad, aad=b"ctx") == "b"
    # after rotation the old key can go
    only_new = KeyRing.parse(f"k2:{K2}")
    assert only_new.decrypt(rotated[0]) == "a"
    with pytest.raises(UnknownKeyError):
        only_new.decrypt(values[0])


def _row(payload: str) -> TrackerRow:
    return TrackerRow(
        log_id="l",
        box_id="b",
        box_name="n",
        box_type="js",
        url="/",
        username="",
        connection_next="",
        duration="1m",
        order_box=1,
        payload=payload,
        ip="",
        real_ip="",
        user_agent="",
        query_param="",
        hostname="",
        host="",
    )


def test_rotate_database(db_url: str, run: object) -> None:
    runner = run  # the conftest fixture: runs a coroutine on the test's loop
    old = KeyRing.parse(f"k1:{K1}")
    keys = ring()
    tracker_aad = field_aad("tracker", "payload")

    async def scenario() -> None:
        store = Store(db_url)
        await store.open()
        try:
            rows = [
                _row(old.encrypt('{"n":1}', aad=tracker_aad)),
                _row('{"plain":true}'),
                _row(keys.encrypt('{"n":2}', aad=tracker_aad)),
                _row(old.encrypt('{"n":3}')),  # sealed without associated data
            ]
            await store.insert_tracker(rows)
            await store.put_query(
                "secret_q", old.encrypt("SELECT 1", aad=field_aad("queries", "query"))
            )
            await store.put_query("plain_q", "SELECT 2")
            await store.put_app("app", "{}", default_js=old.encrypt("function log(){}"))

            report = await rotate_database(store, keys, batch_size=2)
            assert (report.tracker_payload, report.queries, report.default_js) == (2, 1, 1)
            assert report.already_current == 1 and report.rotated == 4

            payloads = [
                r["payload"] for r in await store.run_sql("SELECT payload FROM tracker ORDER BY id")
            ]
            assert isinstance(payloads[0], str) and keys.key_id_of(payloads[0]) == "k2"
            assert keys.decrypt(payloads[0], aad=tracker_aad) == '{"n":1}'
            assert payloads[1] == '{"plain":true}'
            assert isinstance(payloads[3], str) and keys.decrypt(payloads[3]) == '{"n":3}'
            queries = await store.list_queries()
            assert (
                keys.decrypt(queries["secret_q"], aad=field_aad("queries", "query")) == "SELECT 1"
            )
            assert queries["plain_q"] == "SELECT 2"
            app = await store.get_app("app")
            assert app is not None and keys.key_id_of(app.default_js) == "k2"

            again = await rotate_database(store, keys)
            assert again.rotated == 0 and again.already_current == 5

            stranger = KeyRing.parse(f"zz:{generate_key()}")
            await store.insert_tracker([_row(stranger.encrypt("x"))])
            with pytest.raises(UnknownKeyError):
                await rotate_database(store, keys)
        finally:
            await store.close()

    runner(scenario())  # type: ignore[operator]

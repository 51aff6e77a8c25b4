"""AES-256-GCM for sensitive data at rest, with key ids so keys can be rotated.

A value encrypted by nflow reads ``enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``:
the key id picks the key on decryption, so old values stay readable while new ones use the
current key, and :func:`rotate_database` moves everything to the current key. The prefix and key
id are authenticated (they are part of GCM's associated data), so neither can be swapped.

Keys come from, in order:

1. ``NFLOW_ENCRYPTION_KEYS`` = ``k2:<base64 32 bytes>,k1:<base64 32 bytes>`` (first = current);
2. a key file (``NFLOW_ENCRYPTION_KEY_FILE`` or the ``key_file`` argument): one ``id:base64``
   per line, first = current, ``#`` comments and blank lines ignored;
3. ``[security] encryption_key``, decoded as the Go runtime did (base64 if it decodes, else the
   raw bytes; SHA-256 of them unless they are 32 bytes long), under the key id ``default``.

When 1 or 2 is used and ``encryption_key`` is also set, that key joins the ring as an old key
(id ``default``) so values written with it can still be read and rotated.

:meth:`KeyRing.decrypt_legacy` reads the Go runtime's format, ``base64std(nonce(12) ‖ ct ‖
tag)``, without associated data.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_KEY_ID",
    "ENV_KEYS",
    "ENV_KEY_FILE",
    "PREFIX",
    "DecryptionError",
    "KeyConfigError",
    "KeyRing",
    "UnknownKeyError",
    "field_aad",
    "generate_key",
    "is_encrypted",
]

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nflow.errors import NflowError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from nflow.config import SecurityConfig

PREFIX = "enc:v1:"
ENV_KEYS = "NFLOW_ENCRYPTION_KEYS"
ENV_KEY_FILE = "NFLOW_ENCRYPTION_KEY_FILE"
CONFIG_KEY_ID = "default"

_NONCE = 12
_TAG = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class KeyConfigError(NflowError):
    """No usable key, or a malformed key specification (the message says which)."""


class DecryptionError(NflowError, ValueError):
    """A value cannot be decrypted: malformed, altered, or encrypted with another key."""


class UnknownKeyError(DecryptionError):
    """The value names a key id the ring does not hold."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


def field_aad(table: str, column: str) -> bytes:
    """Associated data binding a stored value to its column (``tracker``, ``payload``), so a
    ciphertext copied into another column does not decrypt there."""
    return f"nflow:{table}.{column}".encode()


def generate_key() -> str:
    """A new random key, base64: put it in ``NFLOW_ENCRYPTION_KEYS`` as ``<id>:<key>``."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def is_encrypted(value: object) -> bool:
    """True for a well-formed ``enc:v1:<key id>:<data>`` string (no key needed)."""
    return isinstance(value, str) and _split(value) is not None


def _split(token: str) -> tuple[str, bytes] | None:
    if not token.startswith(PREFIX):
        return None
    key_id, sep, data = token[len(PREFIX) :].partition(":")
    if not sep or not _KEY_ID.fullmatch(key_id) or not _B64URL.fullmatch(data):
        return None
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < _NONCE + _TAG:
        return None
    return key_id, raw


def _decode_key(key_id: str, text: str, origin: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    raw = b""
    for altchars in (None, b"-_"):  # standard or URL-safe alphabet, strictly
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
            break
        except (binascii.Error, ValueError):
            continue
    if len(raw) != 32:
        raise KeyConfigError(
            f"{origin}: key {key_id!r} must be the base64 of exactly 32 bytes "
            f"(got {len(raw)} bytes); make one with `nflow keys generate`"
        )
    return raw


def _config_key(value: str) -> bytes:
    """The Go runtime's derivation."""
    cleaned = value.replace("\r", "").replace("\n", "")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raw = value.encode()
    if len(raw) == 32:
        return raw
    if not raw:
        raise KeyConfigError("security.encryption_key: the key is empty")
    return hashlib.sha256(raw).digest()


def _parse_spec(spec: str, origin: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(re.split(r"[,\n]", spec), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        key_id, sep, value = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not value.strip():
            raise KeyConfigError(f"{origin}: entry {number} is not <key id>:<base64 key>")
        keys.append((key_id, _decode_key(key_id, value, origin)))
    if not keys:
        raise KeyConfigError(f"{origin}: no key found")
    return keys


def _read_key_file(path: str | Path) -> list[tuple[str, bytes]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return _parse_spec(text, str(path))


class KeyRing:
    """Named AES-256 keys; the first is current (used to encrypt), all can decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, legacy_id: str | None = None) -> None:
        # cryptography (7 MB) is loaded by the processes that hold a key, not by every process
        # that merely names the KeyRing type.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise KeyConfigError("a key ring needs at least one key")
        seen: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.fullmatch(key_id):
                raise KeyConfigError(
                    f"key id {key_id!r} must be 1-64 characters of letters, digits, _ . -"
                )
            if key_id in seen:
                raise KeyConfigError(f"key id {key_id!r} is used twice")
            if len(key) != 32:
                raise KeyConfigError(f"key {key_id!r} must be 32 bytes, got {len(key)}")
            seen[key_id] = AESGCM(key)
        self._ciphers = seen
        self.current_id = keys[0][0]
        self.legacy_id = legacy_id if legacy_id in seen else None

    def __repr__(self) -> str:  # never show key material
        return f"KeyRing(current={self.current_id!r}, ids={list(self._ciphers)!r})"

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def parse(cls, spec: str, *, origin: str = ENV_KEYS) -> KeyRing:
        """``k2:<base64>,k1:<base64>`` (commas or newlines), first = current."""
        return cls(_parse_spec(spec, origin))

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """A key file: one ``id:base64`` per line, first = current."""
        return cls(_read_key_file(path))

    @classmethod
    def from_config_key(cls, value: str, *, key_id: str = CONFIG_KEY_ID) -> KeyRing:
        """The single ``[security] encryption_key``, derived as the Go runtime did."""
        return cls([(key_id, _config_key(value))], legacy_id=key_id)

    @classmethod
    def load(
        cls,
        *,
        config: SecurityConfig | None = None,
        environ: Mapping[str, str] | None = None,
        key_file: str | Path | None = None,
    ) -> KeyRing:
        """The ring from the environment, a key file or the config (see the module doc)."""
        env = os.environ if environ is None else environ
        config_value = config.encryption_key if config is not None else ""
        keys: list[tuple[str, bytes]] = []
        spec = env.get(ENV_KEYS, "").strip()
        path = key_file if key_file is not None else env.get(ENV_KEY_FILE, "").strip()
        if spec:
            keys = _parse_spec(spec, ENV_KEYS)
        elif path:
            keys = _read_key_file(path)
        if not keys:
            if not config_value:
                raise KeyConfigError(
                    f"no encryption key: set {ENV_KEYS}, {ENV_KEY_FILE} or security.encryption_key"
                )
            return cls.from_config_key(config_value)
        legacy_id: str | None = None
        if config_value and all(k != CONFIG_KEY_ID for k, _ in keys):
            keys.append((CONFIG_KEY_ID, _config_key(config_value)))
            legacy_id = CONFIG_KEY_ID
        return cls(keys, legacy_id=legacy_id)

    # --- encryption --------------------------------------------------------------------------

    def encrypt(self, plaintext: str, *, aad: bytes = b"", key_id: str | None = None) -> str:
        """``enc:v1:<current key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``."""
        kid = key_id or self.current_id
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(f"cannot encrypt: unknown key id {kid!r}", key_id=kid)
        nonce = secrets.token_bytes(_NONCE)
        sealed = cipher.encrypt(nonce, plaintext.encode("utf-8"), _header(kid) + aad)
        data = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{PREFIX}{kid}:{data}"

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        """The plaintext of an ``enc:v1:`` value; :class:`DecryptionError` says why not."""
        parts = _split(token) if isinstance(token, str) else None
        if parts is None:
            raise DecryptionError(
                "cannot decrypt: not an nflow encrypted value (expected enc:v1:<key id>:<data>)"
            )
        key_id, raw = parts
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(
                f"cannot decrypt: unknown key id {key_id!r} (this server has "
                f"{', '.join(map(repr, self._ciphers))}); add that key to {ENV_KEYS}",
                key_id=key_id,
            )
        from cryptography.exceptions import InvalidTag

        try:
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], _header(key_id) + aad)
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt: the value was altered, or was encrypted for another "
                f"context or with a different key under id {key_id!r}"
            ) from None
        return plain.decode("utf-8")

    def key_id_of(self, token: str) -> str | None:
        parts = _split(token)
        return parts[0] if parts else None

    def decrypt_legacy(self, value: str) -> str:
        """A value of the Go runtime's format (``base64std(nonce ‖ ct ‖ tag)``, no AAD).

        The ``[security] encryption_key`` key is tried first, then every other key.
        ``""`` decrypts to ``""`` as in Go.
        """
        if value == "":
            return ""
        try:
            raw = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("cannot decrypt legacy value: invalid base64") from None
        if len(raw) < _NONCE + _TAG:
            raise DecryptionError("cannot decrypt legacy value: too short")
        from cryptography.exceptions import InvalidTag

        order = sorted(self._ciphers, key=lambda k: k != self.legacy_id)
        for key_id in order:
            try:
                plain = self._ciphers[key_id].decrypt(raw[:_NONCE], raw[_NONCE:], None)
            except InvalidTag:
                continue
            return plain.decode("utf-8")
        raise DecryptionError("cannot decrypt legacy value: altered, or no key of the ring fits")

    def is_encrypted(self, value: object) -> bool:
        return is_encrypted(value)

    def needs_rotation(self, value: object) -> bool:
        """An ``enc:v1:`` value under a key other than the current one."""
        return isinstance(value, str) and self.key_id_of(value) not in (None, self.current_id)

    def rotate(self, values: Iterable[str], *, aad: bytes = b"") -> list[str]:
        """Each value re-encrypted under the current key. Values already under it, and values
        that are not ``enc:v1:`` (plaintext), are returned unchanged."""
        return [
            self.encrypt(self.decrypt(v, aad=aad), aad=aad) if self.needs_rotation(v) else v
            for v in values
        ]


def _header(key_id: str) -> bytes:
    return f"{PREFIX}{key_id}:".encode()

"""Configuration secrets kept in the nflow database, sealed with the KeyRing (AES-256-GCM).

``nflow secrets set smtp`` stores a value in ``nflow_secrets``; ``config.toml`` refers to it
as ``password = "secret:smtp"``. The runtime resolves every reference when it opens, so a
missing secret or key stops the start with the config key and the secret's name. Each value
is bound to its row's name (associated data), so a sealed value copied to another name does
not decrypt. ``nflow keys rotate`` re-seals rows under the current key.
"""

from __future__ import annotations

__all__ = [
    "SecretError",
    "delete_secret",
    "list_secrets",
    "read_secrets",
    "resolve_secrets",
    "rotate_secrets",
    "secret_aad",
    "set_secret",
]

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nflow.errors import ConfigError, NflowError

from ._crypto import DecryptionError, KeyConfigError, KeyRing, field_aad

if TYPE_CHECKING:
    from nflow.config import Config
    from nflow.store import SecretRecord, Store

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class SecretError(NflowError):
    """A bad secret name or value, or a secret that cannot be read (the message says which)."""


def secret_aad(name: str) -> bytes:
    """Associated data: the ``nflow_secrets.value`` column and the row's name."""
    return field_aad("nflow_secrets", "value") + b":" + name.encode()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise SecretError(
            f"secret name {name!r}: use 1-128 letters, digits, '_', '.' or '-' "
            '(it is written in config.toml as "secret:<name>")'
        )
    return name


async def set_secret(store: Store, keyring: KeyRing, name: str, value: str) -> None:
    """Seal ``value`` under the current key and store it as ``name`` (replacing any)."""
    check_name(name)
    if value == "":
        raise SecretError(f"secret {name!r}: the value is empty")
    sealed = keyring.encrypt(value, aad=secret_aad(name))
    await store.put_secret(name, sealed, key_id=keyring.current_id)


async def list_secrets(store: Store) -> list[SecretRecord]:
    """Every stored secret (sealed): names, key ids and update times for ``secrets list``."""
    return await store.get_secrets()


async def delete_secret(store: Store, name: str) -> bool:
    return await store.delete_secret(check_name(name))


async def read_secrets(store: Store, keyring: KeyRing, names: Iterable[str]) -> dict[str, str]:
    """The plaintext of each named secret that exists; a row that fails to decrypt raises."""
    wanted = sorted(set(names))
    found: dict[str, str] = {}
    for record in await store.get_secrets(wanted):
        try:
            found[record.name] = keyring.decrypt(record.value, aad=secret_aad(record.name))
        except DecryptionError as exc:
            raise SecretError(f"secret {record.name!r} cannot be read: {exc}") from None
    return found


async def resolve_secrets(
    config: Config,
    store: Store,
    *,
    keyring: Callable[[], KeyRing] | None = None,
) -> Config:
    """``config`` with every ``"secret:NAME"`` value replaced by the stored secret.

    Raises :class:`~nflow.errors.ConfigError` naming the key path and the secret when the
    secret is missing, cannot be decrypted, or no encryption key is configured.
    """
    from nflow.config import secret_references, with_secrets

    refs = secret_references(config)
    if not refs:
        return config
    first = next(iter(refs))
    try:
        ring = keyring() if keyring is not None else KeyRing.load(config=config.security)
    except KeyConfigError as exc:
        raise ConfigError(
            f"refers to secret {refs[first]!r}, but secrets cannot be decrypted: {exc}",
            key=first,
        ) from None
    for key, name in refs.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"secret name {name!r}: use 1-128 letters, digits, '_', '.' or '-'", key=key
            )
    records = {r.name: r for r in await store.get_secrets(list(refs.values()))}
    values: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for key, name in refs.items():
        record = records.get(name)
        if record is None:
            missing.append(
                f"{key}: secret {name!r} is not in the nflow_secrets table of the nflow "
                f"database (add it with `nflow secrets set {name}`)"
            )
            continue
        try:
            values[key] = (name, ring.decrypt(record.value, aad=secret_aad(name)))
        except DecryptionError as exc:
            raise ConfigError(f"secret {name!r} cannot be read: {exc}", key=key) from None
    if missing:
        error = ConfigError("\n".join(missing))
        error.key = next(k for k in refs if refs[k] not in records)
        raise error
    return with_secrets(config, values)


async def rotate_secrets(store: Store, keyring: KeyRing) -> tuple[int, int]:
    """Re-seal every secret under the current key: (rows rotated, rows already current)."""
    rotated = current = 0
    for record in await store.get_secrets():
        if keyring.key_id_of(record.value) == keyring.current_id:
            current += 1
            continue
        aad = secret_aad(record.name)
        try:
            plain = keyring.decrypt(record.value, aad=aad)
        except DecryptionError as exc:
            raise SecretError(f"secret {record.name!r} cannot be rotated: {exc}") from None
        fresh = keyring.encrypt(plain, aad=aad)
        if await store.replace_secret(record.name, record.value, fresh, key_id=keyring.current_id):
            rotated += 1
    return rotated, current

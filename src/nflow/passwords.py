"""Password and API token hashing.

New passwords are stored as Argon2id (``$argon2id$…``). Rows written by the original runtime
hold hex SHA-512/256 of the password and keep working, so an existing ``users`` table needs no
migration; ``nflow user passwd`` upgrades a user to Argon2id. API tokens are stored as
``sha256$<hex>`` of the secret: a token is long and random, so a fast hash is enough and keeps
``validate_token`` cheap. Rows holding a plain token (the original's format) still match (see
docs/compat.md, Auth, users and tokens).
"""

from __future__ import annotations

__all__ = ["hash_password", "hash_token", "is_token_hash", "new_token", "verify", "verify_token"]

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str, password: str) -> bool:
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    legacy = hashlib.new("sha512_256", password.encode("utf-8")).hexdigest()
    return hmac.compare_digest(legacy, stored.strip().lower())


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_hash(stored: str) -> bool:
    return stored.startswith("sha256$") and len(stored) == 71


def verify_token(stored: str, presented: str) -> bool:
    return hmac.compare_digest(hash_token(presented), stored)

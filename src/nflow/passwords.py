"""Password and token hashing.

New passwords are stored as PBKDF2-SHA256 (``pbkdf2_sha256$<iterations>$<salt>$<hash>``),
which needs nothing outside the standard library. Rows written by the original runtime hold
hex SHA-512/256 and keep working. API tokens are stored as ``sha256$<hex>`` of the secret: a
token is long and random, so a fast hash is enough and keeps validation cheap.
"""

from __future__ import annotations

__all__ = ["hash_password", "hash_token", "is_token_hash", "verify", "verify_token"]

import base64
import hashlib
import hmac
import secrets

_ITERATIONS = 200_000


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    encoded_salt = base64.b64encode(salt).decode()
    encoded_digest = base64.b64encode(digest).decode()
    return f"pbkdf2_sha256${iterations}${encoded_salt}${encoded_digest}"


def verify(stored: str, password: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, expected = stored.split("$", 3)
            digest = hashlib.pbkdf2_hmac(
                "sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations)
            )
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    legacy = hashlib.new("sha512_256", password.encode("utf-8")).hexdigest()
    return hmac.compare_digest(legacy, stored.strip().lower())


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_hash(stored: str) -> bool:
    return stored.startswith("sha256$") and len(stored) == 71


def verify_token(stored: str, presented: str) -> bool:
    return hmac.compare_digest(hash_token(presented), stored)

"""Key rotation in the database: every sealed value re-encrypted under the current key.

Sealed values live in tracker payloads, stored queries, the default script and the
configuration secrets; :func:`rotate_database` walks them all and reports what it changed.
"""

from __future__ import annotations

__all__ = ["RotationReport", "rotate_database"]

from collections.abc import Sequence
from dataclasses import dataclass

from nflow.store import Store

from ._crypto import PREFIX, DecryptionError, KeyRing, UnknownKeyError, field_aad, is_encrypted
from ._secrets import rotate_secrets


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What :func:`rotate_database` changed (row counts per field) and left alone."""

    tracker_payload: int = 0
    queries: int = 0
    default_js: int = 0
    already_current: int = 0
    secrets: int = 0  # rows of nflow_secrets (configuration secrets)

    @property
    def rotated(self) -> int:
        return self.tracker_payload + self.queries + self.default_js + self.secrets


def _rotate_value(keyring: KeyRing, value: str, aads: Sequence[bytes]) -> str:
    """Re-encrypt under the current key with whichever of ``aads`` the value was sealed with."""
    failure: DecryptionError | None = None
    for aad in aads:
        try:
            plain = keyring.decrypt(value, aad=aad)
        except UnknownKeyError:
            raise
        except DecryptionError as exc:
            failure = exc
            continue
        return keyring.encrypt(plain, aad=aad)
    raise failure or DecryptionError("cannot decrypt: no associated data given")


# table, column, associated data tried (the column's own first, then none)
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("tracker", "payload", "tracker_payload"),
    ("queries", "query", "queries"),
    ("nflow", "default_js", "default_js"),
)


async def rotate_database(
    store: Store, keyring: KeyRing, *, batch_size: int = 500
) -> RotationReport:
    """Re-encrypt under the current key every ``enc:v1:`` value stored in the database.

    Fields: ``tracker.payload``, ``queries.query``, ``nflow.default_js`` and every row of
    ``nflow_secrets`` (sealed with its own associated data, see ``_secrets``). Each value is
    decrypted with ``field_aad(table, column)`` or, failing that, no associated data, and
    re-encrypted with the same. Rows are updated one by one only if unchanged meanwhile, so
    the rotation may run while the server writes; if it stops half-way, run it again (every
    key stays in the ring until it is done). Values under an unknown key id raise
    :class:`UnknownKeyError` before that row is touched.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    counts = {"tracker_payload": 0, "queries": 0, "default_js": 0}
    current = 0
    for table, column, label in _FIELDS:
        aads = (field_aad(table, column), b"")
        last_id = 0
        while True:
            rows = await store.run_sql(
                f"SELECT id, {column} AS value FROM {table} "
                f"WHERE id > $1 AND {column} LIKE $2 ORDER BY id",
                (last_id, PREFIX + "%"),
                max_rows=batch_size,
            )
            if not rows:
                break
            for row in rows:
                row_id = int(str(row["id"]))
                value = row["value"]
                last_id = row_id
                if not isinstance(value, str) or not is_encrypted(value):
                    continue
                if not keyring.needs_rotation(value):
                    current += 1
                    continue
                fresh = _rotate_value(keyring, value, aads)
                await store.run_sql(
                    f"UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3",
                    (fresh, row_id, value),
                )
                counts[label] += 1
            if len(rows) < batch_size:
                break
    secrets_rotated, secrets_current = await rotate_secrets(store, keyring)
    return RotationReport(
        tracker_payload=counts["tracker_payload"],
        queries=counts["queries"],
        default_js=counts["default_js"],
        already_current=current + secrets_current,
        secrets=secrets_rotated,
    )

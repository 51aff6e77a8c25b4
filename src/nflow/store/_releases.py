"""Releases in the database: the statements :class:`Store` runs on the release tables.

A release change is one transaction that rewrites the app's ``nflow_releases`` row and adds an
``nflow_release_events`` row saying what it was before, so ``nflow rollback`` can restore it
and the audit trail is complete. On PostgreSQL the table is locked for the transaction (two
CLIs, or two workers rolling back the same canary, must not both act); SQLite's write
transactions are exclusive already.
"""

from __future__ import annotations

__all__ = [
    "add_counts",
    "delete_counts_before",
    "delete_old_versions",
    "select_counts",
    "select_events",
    "select_release",
    "select_releases",
    "undo_release",
    "write_release",
]

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nflow.errors import StoreError

from ._records import ReleaseEvent, ReleaseRecord
from ._support import upsert
from ._versions import release_events, releases, version_counts, versions

_RELEASE_COLUMNS = (
    releases.c.app,
    releases.c.weights,
    releases.c.head,
    releases.c.seq,
    releases.c.updated_at,
)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _weights(raw: str | None) -> dict[str, int]:
    if not raw:
        return {}
    value = orjson.loads(raw)
    return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _release(row: Sequence[Any]) -> ReleaseRecord:
    return ReleaseRecord(
        app=row[0],
        weights=_weights(row[1]),
        head=row[2],
        seq=int(row[3]),
        updated_at=_aware(row[4]),
    )


async def select_release(conn: AsyncConnection, app: str) -> ReleaseRecord | None:
    row = (await conn.execute(select(*_RELEASE_COLUMNS).where(releases.c.app == app))).first()
    return None if row is None else _release(row)


async def select_releases(conn: AsyncConnection) -> list[ReleaseRecord]:
    rows = (await conn.execute(select(*_RELEASE_COLUMNS).order_by(releases.c.app))).all()
    return [_release(r) for r in rows]


async def _lock(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE nflow_releases IN SHARE ROW EXCLUSIVE MODE"))


def _dump(value: Mapping[str, Any] | None) -> str | None:
    return (
        None if value is None else orjson.dumps(dict(value), option=orjson.OPT_SORT_KEYS).decode()
    )


async def write_release(
    conn: AsyncConnection,
    app: str,
    weights: Mapping[str, int],
    *,
    head: str | None,
    kind: str,
    detail: Mapping[str, Any] | None = None,
    expect_seq: int | None = None,
) -> ReleaseRecord | None:
    """Make ``weights`` the release of ``app``; None (nothing written) when ``expect_seq``
    is given and the release has changed since that sequence number."""
    await _lock(conn)
    current = await select_release(conn, app)
    if expect_seq is not None and (current is None or current.seq != expect_seq):
        return None
    now = datetime.now(UTC)
    seq = (current.seq if current is not None else 0) + 1
    values = {"weights": _dump(weights), "head": head, "seq": seq, "updated_at": now}
    if current is None:
        await conn.execute(insert(releases).values(app=app, **values))
    else:
        await conn.execute(update(releases).where(releases.c.app == app).values(**values))
    await conn.execute(
        insert(release_events).values(
            app=app,
            at=now,
            kind=kind,
            weights=_dump(weights),
            previous=_dump(current.weights) if current is not None else None,
            head=head,
            detail=_dump(detail),
            undone=False,
        )
    )
    return ReleaseRecord(app=app, weights=dict(weights), head=head, seq=seq, updated_at=now)


async def undo_release(conn: AsyncConnection, app: str, head: str | None) -> ReleaseRecord:
    """Restore the release in effect before the last change (``nflow rollback``).

    When the app's source moved on since its release (``head`` differs), the release is what
    was served before that, so it is what comes back. Otherwise the newest release not yet
    undone is undone; rolling back again undoes the one before it.
    """
    await _lock(conn)
    current = await select_release(conn, app)
    if current is not None and current.weights and current.head and head and current.head != head:
        restored = await write_release(
            conn, app, current.weights, head=head, kind="rollback", detail={"reason": "source"}
        )
        assert restored is not None
        return restored
    query = (
        select(release_events.c.id, release_events.c.previous)
        .where(
            release_events.c.app == app,
            release_events.c.kind == "release",
            release_events.c.undone.is_(False),
        )
        .order_by(release_events.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    if row is None or row[1] is None:
        raise StoreError(
            f"app {app!r} has no earlier release to roll back to; "
            "name a version with `nflow rollback APP --to VERSION`"
        )
    await conn.execute(
        update(release_events).where(release_events.c.id == row[0]).values(undone=True)
    )
    restored = await write_release(
        conn, app, _weights(row[1]), head=head, kind="rollback", detail={"undid": int(row[0])}
    )
    assert restored is not None
    return restored


async def select_events(conn: AsyncConnection, app: str, limit: int) -> list[ReleaseEvent]:
    c = release_events.c
    query = (
        select(c.id, c.app, c.at, c.kind, c.weights, c.previous, c.head, c.detail, c.undone)
        .where(c.app == app)
        .order_by(c.id.desc())
        .limit(limit)
    )
    return [
        ReleaseEvent(
            id=int(r[0]),
            app=r[1],
            at=_aware(r[2]),
            kind=r[3],
            weights=_weights(r[4]),
            previous=None if r[5] is None else _weights(r[5]),
            head=r[6],
            detail=None if r[7] is None else orjson.loads(r[7]),
            undone=bool(r[8]),
        )
        for r in (await conn.execute(query)).all()
    ]


async def add_counts(conn: AsyncConnection, rows: Iterable[tuple[str, str, int, int, int]]) -> None:
    """Add ``(app, version, bucket, requests, errors)`` to the shared counts, atomically."""
    for app, version, bucket, requests, errors in rows:
        statement = upsert(conn, version_counts).values(
            app=app, version=version, bucket=bucket, requests=requests, errors=errors
        )
        statement = statement.on_conflict_do_update(
            index_elements=["app", "version", "bucket"],
            set_={
                "requests": version_counts.c.requests + statement.excluded.requests,
                "errors": version_counts.c.errors + statement.excluded.errors,
            },
        )
        await conn.execute(statement)


async def select_counts(
    conn: AsyncConnection, app: str, since_bucket: int
) -> dict[str, tuple[int, int]]:
    """``{version: (requests, errors)}`` of ``app`` from ``since_bucket`` on."""
    c = version_counts.c
    query = (
        select(c.version, func.sum(c.requests), func.sum(c.errors))
        .where(c.app == app, c.bucket >= since_bucket)
        .group_by(c.version)
    )
    return {str(r[0]): (int(r[1] or 0), int(r[2] or 0)) for r in (await conn.execute(query)).all()}


async def delete_counts_before(conn: AsyncConnection, bucket: int) -> None:
    await conn.execute(delete(version_counts).where(version_counts.c.bucket < bucket))


async def delete_old_versions(
    conn: AsyncConnection, app: str, keep: int, protected: Iterable[str]
) -> int:
    """Delete the versions of ``app`` beyond the newest ``keep``, except ``protected`` ones
    and those with weight in its release; the number deleted."""
    current = await select_release(conn, app)
    spared = set(protected)
    if current is not None:
        spared |= {v for v, w in current.weights.items() if w > 0}
        if current.head:
            spared.add(current.head)
    ids = [
        str(r[0])
        for r in (
            await conn.execute(
                select(versions.c.id)
                .where(versions.c.app == app)
                .order_by(versions.c.created_at.desc(), versions.c.id)
            )
        ).all()
    ]
    doomed = [v for v in ids[keep:] if v not in spared]
    if doomed:
        await conn.execute(delete(versions).where(versions.c.id.in_(doomed)))
    return len(doomed)

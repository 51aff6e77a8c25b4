"""Profiling over the history: per node, how often it ran, how long it took, how often it
failed and how much of its time went to host calls.

:meth:`HistoryReader.samples` reads one :class:`StepSample` per recorded step; :func:`profile`
turns them into :class:`~nflow.history._json.Stats`. Percentiles interpolate between the two
nearest samples (the "linear" method of numpy and ``statistics.quantiles(method="inclusive")``),
so p50 of 1, 2, 3, 4 is 2.5 and a single sample is every percentile.
"""

from __future__ import annotations

__all__ = ["StepSample", "parse_since", "percentile", "profile"]

import math
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import msgspec

from ._json import NodeStats, Stats, VersionTotals, iso_time


class StepSample(msgspec.Struct, frozen=True, kw_only=True):
    """What profiling needs of one recorded step."""

    run_id: str
    version: str
    node: str
    type: str
    name: str
    duration_ms: float
    failed: bool
    host_ms: float


_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: float | None = None) -> float:
    """A start time as Unix seconds from ``30m``/``2h``/``7d`` ago, an ISO 8601 date or time
    (UTC unless it names a zone) or Unix seconds. Raises ValueError saying what is accepted."""
    value = text.strip()
    ago = _AGO.fullmatch(value)
    if ago is not None:
        return (time.time() if now is None else now) - float(ago[1]) * _UNIT[ago[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"since: expected a duration ago (30m, 2h, 7d), an ISO 8601 date or time, or Unix "
            f"seconds; got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) of sorted values, linearly interpolated; 0 when empty."""
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _r(value: float) -> float:
    return round(value, 3)


def _nodes(samples: Iterable[StepSample], version: str | None) -> list[NodeStats]:
    by_node: dict[str, list[StepSample]] = {}
    for sample in samples:
        by_node.setdefault(sample.node, []).append(sample)
    grand = sum(s.duration_ms for group in by_node.values() for s in group)
    out: list[NodeStats] = []
    for node, group in by_node.items():
        durations = sorted(s.duration_ms for s in group)
        total = sum(durations)
        host = sum(min(s.host_ms, s.duration_ms) for s in group)
        errors = sum(1 for s in group if s.failed)
        last = group[-1]
        out.append(
            NodeStats(
                node=node,
                type=last.type,
                name=last.name,
                version=version,
                runs=len(group),
                errors=errors,
                error_rate=round(errors / len(group), 4),
                p50_ms=_r(percentile(durations, 0.50)),
                p95_ms=_r(percentile(durations, 0.95)),
                p99_ms=_r(percentile(durations, 0.99)),
                mean_ms=_r(total / len(group)),
                total_ms=_r(total),
                time_share=round(total / grand, 4) if grand else 0.0,
                host_ms=_r(host),
                host_share=round(host / total, 4) if total else 0.0,
            )
        )
    # The costliest first: the first row is the bottleneck.
    out.sort(key=lambda n: (-n.total_ms, n.node))
    return out


def _bottleneck(nodes: Sequence[NodeStats]) -> str | None:
    return nodes[0].node if nodes and nodes[0].total_ms > 0 else None


def profile(
    samples: Sequence[StepSample],
    *,
    app: str,
    since: float | None = None,
    compare: tuple[str, str] | None = None,
) -> Stats:
    """Per-node statistics of ``samples``; with ``compare`` (two versions), one row per node
    and version, each version's totals in ``compare``."""
    overall = _nodes(samples, None)
    runs = len({s.run_id for s in samples})
    total = _r(sum(n.total_ms for n in overall))
    if compare is None:
        return Stats(
            app=app,
            since=iso_time(since),
            runs=runs,
            total_ms=total,
            bottleneck=_bottleneck(overall),
            nodes=overall,
            compare=[],
        )
    rows: list[NodeStats] = []
    totals: list[VersionTotals] = []
    for version in compare:
        mine = [s for s in samples if s.version == version]
        nodes = _nodes(mine, version)
        rows.extend(nodes)
        totals.append(
            VersionTotals(
                version=version,
                runs=len({s.run_id for s in mine}),
                total_ms=_r(sum(n.total_ms for n in nodes)),
                bottleneck=_bottleneck(nodes),
            )
        )
    # Node by node, the versions side by side, in the order of the overall cost.
    rank = {n.node: i for i, n in enumerate(overall)}
    order = {v: i for i, v in enumerate(compare)}
    rows.sort(key=lambda n: (rank.get(n.node, len(rank)), order[n.version or ""]))
    return Stats(
        app=app,
        since=iso_time(since),
        runs=runs,
        total_ms=total,
        bottleneck=_bottleneck(overall),
        nodes=rows,
        compare=totals,
    )

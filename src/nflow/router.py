"""Starter matching: method, ``:name`` captures, resume markers.

Unlike the original, which scanned a Go map (random order), starters are tried in a fixed
order: apps in the order they were loaded, then each app's nodes in document order (see
docs/compat.md, HTTP and routing).
"""

from __future__ import annotations

__all__ = ["Match", "Router", "split_markers"]

from collections.abc import Iterable
from dataclasses import dataclass

from nflow.playbook import Playbook, Starter


@dataclass(frozen=True, slots=True)
class Match:
    playbook: Playbook
    starter: Starter
    vars: dict[str, str]
    endpoint: str


def split_markers(path: str) -> tuple[str, str]:
    """Cut the ``/nftk/...`` and ``/nfnext/<id>`` tails; return (endpoint, resume id).

    As in the original, the last ``nftk`` and the last ``nfnext`` segments count, a marker in
    the final segment is ignored, and the endpoint ends before whichever comes first.
    """
    if "nftk" not in path and "nfnext" not in path:
        return path, ""
    segments = path.split("/")
    last_tk = last_next = -1
    for i, seg in enumerate(segments[:-1]):
        if seg == "nftk":
            last_tk = i
        elif seg == "nfnext":
            last_next = i
    resume = segments[last_next + 1] if last_next >= 0 else ""
    cuts = [i for i in (last_tk, last_next) if i >= 0]
    if not cuts:
        return path, ""
    endpoint = "/".join(segments[: min(cuts)])
    return endpoint or "/", resume


class Router:
    """Matches a request against the starters of one or more playbooks."""

    def __init__(self, playbooks: Iterable[Playbook] = ()) -> None:
        self._routes: dict[int, list[tuple[Playbook, Starter]]] = {}
        self._playbooks: list[Playbook] = []
        # Patterns without captures or wildcard segments, by path, in matching order. Used
        # when no pattern of the same length has captures, so order cannot differ.
        self._static: dict[str, list[tuple[Playbook, Starter]]] = {}
        self._dynamic_lengths: set[int] = set()
        for playbook in playbooks:
            self.add(playbook)

    def add(self, playbook: Playbook) -> None:
        self._playbooks.append(playbook)
        for starter in playbook.starters:
            length = len(starter.segments)
            self._routes.setdefault(length, []).append((playbook, starter))
            if all(seg and seg[0] != ":" for seg in starter.segments[1:]):
                self._static.setdefault(starter.pattern, []).append((playbook, starter))
            else:
                self._dynamic_lengths.add(length)

    @property
    def playbooks(self) -> list[Playbook]:
        return list(self._playbooks)

    def routes(self) -> list[tuple[Playbook, Starter]]:
        return [(pb, st) for pb in self._playbooks for st in pb.starters]

    def match(self, method: str, endpoint: str) -> Match | None:
        if endpoint.count("/") + 1 not in self._dynamic_lengths:
            for playbook, starter in self._static.get(endpoint, ()):
                if starter.method == "ANY" or starter.method == method:
                    return Match(playbook, starter, {}, endpoint)
            return None
        segments = endpoint.split("/")
        for playbook, starter in self._routes.get(len(segments), ()):
            if starter.method != "ANY" and starter.method != method:
                continue
            captured = _compare(starter.segments, segments)
            if captured is not None:
                return Match(playbook, starter, captured, endpoint)
        return None

    def find_node(self, node_id: str) -> Playbook | None:
        for playbook in self._playbooks:
            if node_id in playbook.nodes:
                return playbook
        return None


def _compare(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    captured: dict[str, str] = {}
    for tmpl, seg in zip(pattern, segments, strict=True):
        if not tmpl:
            continue  # an empty template segment is a wildcard, as in the original
        if tmpl[0] == ":":
            captured[tmpl[1:]] = seg
        elif tmpl != seg:
            return None
    return captured

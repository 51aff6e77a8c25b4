"""Records to rows and back: redaction, caps, payload deltas and sealing.

Payload deltas are written here rather than taken from a JSON-diff library: a payload is one
JSON object whose steps mostly set a few top-level keys, so a delta of top-level keys
(``{"set": {k: v}, "unset": [k]}``) is exact, small (research: 103 bytes against 255 for the
whole payload) and about half a microsecond to compute. RFC 7386 merge patches cannot set a
key to ``null``, and RFC 6902 (``jsonpatch``) diffs nested values at several times the cost
for no gain in what the debugger shows. Values compare by type as well as value, so ``1``
becoming ``true`` is a change. Step 0, and every :data:`SNAPSHOT_EVERY` steps, stores the
whole payload so a step is rebuilt from at most that many deltas.

Caps: a string longer than ``max_value_bytes`` (UTF-8) keeps its start and ends with
``…[truncated N bytes]``; a larger structure becomes ``{"nflow_truncated": N, "preview": …}``.
Payload keys are capped one by one, so a huge key does not hide the others.
"""

from __future__ import annotations

__all__ = [
    "SNAPSHOT_EVERY",
    "TRUNCATED_KEY",
    "Codec",
    "apply_delta",
    "changes",
    "delta",
]

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from nflow.security import KeyRing, Sanitizer, field_aad

from ._records import Change, HostCall, RunRecord, StepError, StepRecord
from ._tables import runs as _runs_table
from ._tables import steps as _steps_table

SNAPSHOT_EVERY = 32
TRUNCATED_KEY = "nflow_truncated"
_ID_CHARS = 64
_CLEAN_TEXT = 512  # the longest text remembered as clean
_CLEAN_TEXTS = 4096
_RUN_COLUMNS = tuple(column.name for column in _runs_table.columns)
_STEP_COLUMNS = tuple(column.name for column in _steps_table.columns)
_SHORT_TEXT = 200  # app, starter, journey, limit names: not user data, but cut to index well

# The headers carrying run ids that the engine adds to every response, as it spells them.
_RUN_ID_HEADERS = frozenset({"Nflow-Wid-1", "Dromedary-Wid-2"})
# Always masked whole, whatever [security] says: credentials in headers and common key names.
_REDACTED_KEYS = (
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "x_debug_token",
    "password",
    "token",
    "secret",
    "api_key",
    "apikey",
)


# --- deltas ----------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def delta(before: Any, after: Any) -> dict[str, Any] | None:
    """What turns ``before`` into ``after``; ``None`` when they are the same."""
    if isinstance(before, dict) and isinstance(after, dict):
        changed = {k: v for k, v in after.items() if k not in before or not _same(before[k], v)}
        removed = [k for k in before if k not in after]
        if not changed and not removed:
            return None
        out: dict[str, Any] = {}
        if changed:
            out["set"] = changed
        if removed:
            out["unset"] = removed
        return out
    if _same(before, after):
        return None
    return {"replace": after}


def apply_delta(base: Any, patch: Any) -> Any:
    """``base`` with ``patch`` (from :func:`delta`) applied; ``base`` is not changed."""
    if not patch:
        return base
    if not isinstance(patch, Mapping):
        return patch  # a value that could not be opened ("[encrypted: …]") shows as is
    if "replace" in patch:
        return patch["replace"]
    out = dict(base) if isinstance(base, dict) else {}
    for key in patch.get("unset", ()):
        out.pop(key, None)
    out.update(patch.get("set", {}))
    return out


def changes(before: Any, after: Any) -> tuple[Change, ...]:
    """The top-level keys a step added, removed or changed, in the payload's order."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        if _same(before, after):
            return ()
        return (Change(key="", op="changed", before=before, after=after),)
    found: list[Change] = []
    for key, value in after.items():
        if key not in before:
            found.append(Change(key=key, op="added", after=value))
        elif not _same(before[key], value):
            found.append(Change(key=key, op="changed", before=before[key], after=value))
    found.extend(Change(key=k, op="removed", before=v) for k, v in before.items() if k not in after)
    return tuple(found)


# --- encoding --------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return _body(value)
    return str(value)


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _cut(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:  # four bytes a character at most: no need to encode it
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    kept = raw[:limit].decode("utf-8", "ignore")
    return f"{kept}…[truncated {len(raw) - limit} bytes]"


def _body(value: Any) -> Any:
    """A request or response body as JSON: text when it is UTF-8, else base64."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    return value


def _raw_call(call: HostCall) -> dict[str, Any]:
    """A host call as stored, before redaction and caps (see ``Codec._call``)."""
    args = call.args
    out: dict[str, Any] = {
        "function": call.function,
        "args": list(args) if isinstance(args, tuple) else args,
        "result": _body(call.result),
        "duration_ms": call.duration_ms,
    }
    if call.error is not None:
        out["error"] = call.error
    return out


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        return ()
    return tuple((str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2)


def _short(value: str | None, limit: int = _SHORT_TEXT) -> str | None:
    return value[:limit] if value is not None and len(value) > limit else value


class Codec:
    """Turns records into row dicts (redacted, capped, sealed) and rows back into values."""

    def __init__(
        self,
        *,
        max_value_bytes: int = 65_536,
        sanitizer: Sanitizer | None = None,
        keyring: KeyRing | None = None,
    ) -> None:
        self.limit = max_value_bytes
        self.sanitizer = sanitizer
        self.keyring = keyring
        # JSON texts known to come out of redaction and caps unchanged (a dict as a set:
        # it is only ever cleared, never iterated, so threads may share it).
        self._clean: dict[str, None] = {}

    @staticmethod
    def default_sanitizer(
        extra_keys: Iterable[str] = (), *, custom_patterns: Mapping[str, str] | None = None
    ) -> Sanitizer:
        """The log sanitizer's detectors, plus credentials masked by key name."""
        return Sanitizer(
            enabled=True,
            # A preserved length would tell how long each secret is.
            preserve_length=False,
            show_type=True,
            custom_patterns=custom_patterns,
            sensitive_keys=(*_REDACTED_KEYS, *extra_keys),
        )

    # --- values --------------------------------------------------------------------------

    def cap(self, value: Any) -> Any:
        """``value`` cut to the limit, with a visible marker when it was cut."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return _cut(value, self.limit)
        encoded = _json(value)
        if len(encoded) <= self.limit:
            return value
        preview = encoded[: self.limit // 2].decode("utf-8", "ignore")
        return {TRUNCATED_KEY: len(encoded), "preview": preview}

    def clean(self, value: Any) -> Any:
        """Redacted, then capped."""
        if self.sanitizer is not None:
            value = self.sanitizer.sanitize_value(value)
        return self.cap(value)

    def comparable(self, value: Any) -> Any:
        """``value`` as the record keeps it (redacted, capped, through JSON): what a replay
        compares with what was recorded."""
        return orjson.loads(_json(self.clean(_body(value))))

    def comparable_payload(self, value: Any) -> Any:
        """A payload as the record keeps it (see :meth:`comparable`)."""
        return orjson.loads(_json(self._payload(value)))

    def _payload(self, value: Any) -> Any:
        if self.sanitizer is not None:
            value = self.sanitizer.sanitize_value(value)
        if isinstance(value, dict):
            if not value or len(_json(value)) <= self.limit:
                return value  # no key can be over the limit: one encoding instead of one a key
            return {k: self.cap(v) for k, v in value.items()}
        return self.cap(value)

    def _headers(self, pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
        out: list[list[str]] = []
        for name, value in pairs:
            text = str(value)
            if name in _RUN_ID_HEADERS:
                # The run's own id (a fork's id), unique per run: nothing to mask, and
                # searching it would only churn the sanitizer's cache.
                out.append([name, text[:_ID_CHARS]])
                continue
            if self.sanitizer is not None:
                kind = self.sanitizer.sensitive_kind(name)
                text = self.sanitizer.mask(kind, text) if kind else self.sanitizer.sanitize(text)
            out.append([str(name), _cut(text, self.limit)])
        return out

    def _text(self, value: str) -> str:
        if self.sanitizer is not None:
            value = self.sanitizer.sanitize(value)
        return _cut(value, self.limit)

    def _as_stored(self, value: Any, clean: Any) -> tuple[str | None, Any]:
        """``value``'s JSON when redacting and capping leave it as it is, else ``(None,
        clean(value))``. Texts found clean before are remembered (a run's writes, its empty
        payloads and small results repeat from run to run): one encoding and a lookup."""
        encoded = _json(value)
        if len(encoded) > self.limit:
            return None, clean(value)
        text = encoded.decode("utf-8")
        if self.sanitizer is None or text in self._clean:
            return text, None
        cleaned = clean(value)
        # Redaction and caps only replace values, so a change shows as inequality.
        if cleaned != value:
            return None, cleaned
        if len(text) <= _CLEAN_TEXT:
            if len(self._clean) >= _CLEAN_TEXTS:
                self._clean.clear()
            self._clean[text] = None
        return text, None

    def _sealed_text(self, text: str, table: str, column: str, run_id: str) -> str:
        if self.keyring is None:
            return text
        return self.keyring.encrypt(text, aad=field_aad(table, column) + run_id.encode())

    def _seal(self, value: Any, table: str, column: str, run_id: str) -> str | None:
        if value is None:
            return None
        return self._sealed_text(_json(value).decode("utf-8"), table, column, run_id)

    def _seal_clean(
        self, value: Any, clean: Any, table: str, column: str, run_id: str
    ) -> str | None:
        """``value`` redacted and capped (by ``clean(value)`` when it must be), sealed."""
        if value is None:
            return None
        text, cleaned = self._as_stored(value, clean)
        if text is None:
            return self._seal(cleaned, table, column, run_id)
        return self._sealed_text(text, table, column, run_id)

    def open_value(self, text: str | None, table: str, column: str, run_id: str) -> Any:
        if text is None:
            return None
        if text.startswith("enc:v1:"):
            if self.keyring is None:
                return f"[encrypted: key {text.split(':', 3)[2]!r} needed]"
            text = self.keyring.decrypt(text, aad=field_aad(table, column) + run_id.encode())
        return orjson.loads(text)

    # --- rows ----------------------------------------------------------------------------

    def run_row(self, run: RunRecord) -> dict[str, Any]:
        """``run``'s row of ``nflow_runs`` by column name."""
        return dict(zip(_RUN_COLUMNS, self.run_tuple(run), strict=True))

    def run_tuple(self, run: RunRecord) -> tuple[Any, ...]:
        """``run``'s row of ``nflow_runs`` in the table's column order (what the writer
        inserts)."""
        rid = run.id[:_ID_CHARS]
        seal = self._seal
        query = self._query(run.query) if run.query else None
        body = _body(run.request_body) if run.request_body not in (None, b"") else None
        answer = _body(run.response_body)
        return (
            rid,
            _short(run.app) or "",
            run.version[:_ID_CHARS],
            _short(run.starter) or "",
            run.wid[:_ID_CHARS],
            _short(run.parent_id, _ID_CHARS),
            _short(run.journey),
            run.status,
            round(run.started_at * 1_000_000),
            round(run.ended_at * 1_000_000),
            run.duration_ms,
            run.seed,
            run.method[:16],
            self._text(run.path),
            seal(query, "nflow_runs", "query", rid),
            seal(self._headers(run.request_headers) or None, "nflow_runs", "request_headers", rid),
            self._seal_clean(body, self.clean, "nflow_runs", "request_body", rid),
            run.response_status,
            seal(
                self._headers(run.response_headers) or None, "nflow_runs", "response_headers", rid
            ),
            self._seal_clean(
                answer if answer not in (None, "") else None,
                self.clean,
                "nflow_runs",
                "response_body",
                rid,
            ),
            _short(run.limit_hit),
            seal(self._text(run.error) if run.error else None, "nflow_runs", "error", rid),
            len(run.steps),
            self.keyring.current_id if self.keyring is not None else None,
        )

    def _query(self, query: str) -> str:
        """The query string with sensitive parameters masked (``?token=…``)."""
        if self.sanitizer is None:
            return _cut(query, self.limit)
        parts = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            kind = self.sanitizer.sensitive_kind(name) if eq else None
            parts.append(
                f"{name}={self.sanitizer.mask(kind, value)}"
                if kind
                else self.sanitizer.sanitize(pair)
            )
        return _cut("&".join(parts), self.limit)

    def step_rows(self, run: RunRecord) -> list[dict[str, Any]]:
        """``run``'s rows of ``nflow_run_steps`` by column name."""
        return [dict(zip(_STEP_COLUMNS, row, strict=True)) for row in self.step_tuples(run)]

    def step_tuples(self, run: RunRecord) -> list[tuple[Any, ...]]:
        """``run``'s rows of ``nflow_run_steps`` in the table's column order."""
        rid = run.id[:_ID_CHARS]
        rows: list[tuple[Any, ...]] = []
        previous: Any = None
        seal = self._seal
        seal_clean = self._seal_clean
        payload = self._clean_payload
        for position, step in enumerate(run.steps):
            before = payload(step.payload_before)
            after = payload(step.payload_after)
            full = position % SNAPSHOT_EVERY == 0
            stored_before = before if full else delta(previous, before)
            previous = after
            calls = step.host_calls
            rows.append(
                (
                    rid,
                    step.index,
                    step.node_id,
                    step.node_type,
                    step.node_name,
                    round(step.started_at * 1_000_000) if step.started_at is not None else None,
                    full,
                    seal(stored_before, "nflow_run_steps", "payload_before", rid),
                    seal(delta(before, after), "nflow_run_steps", "payload_after", rid),
                    step.next,
                    step.duration_ms,
                    seal_clean(
                        [_raw_call(c) for c in calls] if calls else None,
                        self._clean_calls,
                        "nflow_run_steps",
                        "host_calls",
                        rid,
                    ),
                    seal_clean(
                        list(step.console) if step.console else None,
                        lambda lines: [self._text(line) for line in lines],
                        "nflow_run_steps",
                        "console",
                        rid,
                    ),
                    seal_clean(
                        [_body(w) for w in step.writes] if step.writes else None,
                        lambda writes: [self.clean(w) for w in writes],
                        "nflow_run_steps",
                        "writes",
                        rid,
                    ),
                    seal(self._error(step.error), "nflow_run_steps", "error", rid),
                )
            )
        return rows

    def _clean_payload(self, value: Any) -> Any:
        """A payload redacted and capped: the same object when that changes nothing."""
        if value is None or not value:
            return value
        text, cleaned = self._as_stored(value, self._payload)
        return value if text is not None else cleaned

    def _clean_calls(self, raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Host calls as :func:`_raw_call` gives them, redacted and capped."""
        out = []
        for raw in raws:
            call = dict(raw)
            call["args"] = self.clean(raw["args"])
            call["result"] = self.clean(raw["result"])
            if "error" in raw:
                call["error"] = self._text(raw["error"])
            out.append(call)
        return out

    def _error(self, error: StepError | None) -> dict[str, Any] | None:
        if error is None:
            return None
        return {
            "message": self._text(error.message),
            "stack": self._text(error.stack),
            "line": error.line,
        }

    # --- back ----------------------------------------------------------------------------

    def run_from_row(self, row: Mapping[str, Any], steps: tuple[StepRecord, ...]) -> RunRecord:
        rid = str(row["id"])

        def opened(column: str) -> Any:
            return self.open_value(row[column], "nflow_runs", column, rid)

        return RunRecord(
            id=rid,
            app=row["app"],
            version=row["version"],
            starter=row["starter"],
            wid=row["wid"],
            parent_id=row["parent_id"],
            journey=row["journey"],
            status=row["status"],
            started_at=row["started_at"] / 1_000_000,
            ended_at=row["ended_at"] / 1_000_000,
            seed=int(row["seed"]),
            method=row["method"],
            path=row["path"],
            query=opened("query") or "",
            request_headers=_pairs(opened("request_headers")),
            request_body=opened("request_body"),
            response_status=row["response_status"],
            response_headers=_pairs(opened("response_headers")),
            response_body=opened("response_body"),
            limit_hit=row["limit_hit"],
            error=opened("error"),
            steps=steps,
        )

    def steps_from_rows(
        self, run_id: str, rows: Iterable[Mapping[str, Any]], *, base: Any = None
    ) -> list[StepRecord]:
        """Rows in index order, the first holding a whole payload (or ``base`` given as the
        previous step's payload after), rebuilt into whole payloads."""
        out: list[StepRecord] = []
        previous = base
        for row in rows:

            def opened(column: str, row: Mapping[str, Any] = row) -> Any:
                return self.open_value(row[column], "nflow_run_steps", column, run_id)

            stored = opened("payload_before")
            before = stored if row["before_full"] else apply_delta(previous, stored)
            after = apply_delta(before, opened("payload_after"))
            previous = after
            error = opened("error")
            out.append(
                StepRecord(
                    index=row["idx"],
                    node_id=row["node_id"],
                    node_type=row["node_type"],
                    node_name=row["node_name"],
                    started_at=(
                        row["started_at"] / 1_000_000 if row["started_at"] is not None else None
                    ),
                    payload_before=before,
                    payload_after=after,
                    next=row["next_node"],
                    duration_ms=row["duration_ms"],
                    host_calls=tuple(
                        HostCall(
                            function=c.get("function", ""),
                            args=c.get("args"),
                            result=c.get("result"),
                            error=c.get("error"),
                            duration_ms=c.get("duration_ms", 0.0),
                        )
                        for c in opened("host_calls") or ()
                        if isinstance(c, dict)
                    ),
                    console=tuple(opened("console") or ()),
                    writes=tuple(opened("writes") or ()),
                    error=(
                        StepError(
                            message=error.get("message", ""),
                            stack=error.get("stack", ""),
                            line=error.get("line"),
                        )
                        if isinstance(error, dict)
                        else None
                    ),
                )
            )
        return out


def decode_base64_body(value: Any) -> bytes | None:
    """The bytes of a body stored as ``{"base64": …}``; ``None`` for any other value."""
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None

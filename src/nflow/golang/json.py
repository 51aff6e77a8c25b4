"""Byte-compatible Go ``encoding/json`` output for values exported from JavaScript.

nFlow clients compare response bodies byte for byte with the Go runtime, which writes JSON
with ``json.NewEncoder(w).Encode(v)``: map keys sorted by their UTF-8 bytes, ``<`` ``>`` ``&``
and U+2028/U+2029 escaped, floats in Go's ``strconv`` formatting and a trailing newline.

Every JSON response goes through :func:`dumps`, so the common case is delegated to orjson and
only patched afterwards.  orjson already agrees with Go on key order (code point order is UTF-8
byte order), on string escapes (``\\b``, ``\\f``, ``\\n``, ``\\r``, ``\\t``, lower-case
``\\u00XX``; Go 1.22 and later no longer write ``\\u0008``/``\\u000c``) and on indentation.
It disagrees on three things, which are handled here:

* HTML characters and U+2028/U+2029 are written raw.  They can only occur inside strings, so
  a byte replacement on the finished document is safe, and it is skipped when absent.
* Floats are formatted differently (``3.0`` against Go's ``3``, ``1e+16`` against
  ``10000000000000000``).  A cheap pre-pass finds floats and swaps in pre-rendered
  :class:`orjson.Fragment` objects, copying only the containers that hold one.
* Lone surrogates and integers beyond 64 bits make orjson fail; those documents take the
  pure-Python encoder.

goja exports a JS string with a lone surrogate as a Go string holding U+FFFD (``utf16.Decode``
replaces it), and Go then writes that character as it is.  Lone surrogates therefore become
a raw U+FFFD here, while a valid surrogate pair is joined into its code point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, Final

import orjson

__all__ = ["dumps", "format_float", "marshal"]

_NONE_TYPE: Final = type(None)
# Values that orjson writes exactly like Go does; no pre-pass work is needed for them.
_SIMPLE: Final = frozenset({str, int, bool, _NONE_TYPE})
_ALL_SIMPLE: Final = _SIMPLE.issuperset
_OPT_COMPACT: Final = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_OPT_PRETTY: Final = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE | orjson.OPT_INDENT_2
# Deeper documents go to the pure-Python encoder, which also detects cycles the way Go does.
_MAX_FAST_DEPTH: Final = 200

_LS: Final = "\u2028".encode()
_PS: Final = "\u2029".encode()


class _Fallback(Exception):
    """The document needs the pure-Python encoder (too deep, or possibly cyclic)."""


def _unsupported(f: float) -> ValueError:
    text = "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    return ValueError(f"json: unsupported value: {text}")


def _digits(a: float) -> tuple[str, int]:
    """Shortest round-trip digits of a positive finite float and the decimal point position.

    The value is ``0.DIGITS x 10**dp``.  ``repr`` is the shortest representation that
    round-trips, the same digit string Go's ``strconv`` picks for precision -1.
    """
    mant, _, exp = repr(a).partition("e")
    whole, _, frac = mant.partition(".")
    raw = whole + frac
    stripped = raw.lstrip("0")
    dp = len(whole) + (int(exp) if exp else 0) - (len(raw) - len(stripped))
    return stripped.rstrip("0"), dp


def _fixed(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _exponent(digits: str, dp: int) -> str:
    exp = dp - 1
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def format_float(f: float, verb: str = "json") -> str:
    """Format a float as Go does.

    ``verb="json"`` is ``encoding/json`` (ES6-like cut-offs at 1e-6 and 1e21, exponent
    ``e-07`` shortened to ``e-7``); ``verb="v"`` is ``fmt``'s ``%v`` (``strconv`` ``'g'`` with
    precision -1: exponent form below 1e-4 and from 1e6 on, as in ``1e+06``).  NaN and
    infinities raise :class:`ValueError` for ``"json"`` and print as ``NaN``/``+Inf``/``-Inf``
    for ``"v"``.
    """
    if math.isnan(f) or math.isinf(f):
        if verb == "json":
            raise _unsupported(f)
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    a = -f if f < 0 else f
    digits, dp = _digits(a)
    if verb == "json":
        if a < 1e-6 or a >= 1e21:
            text = _exponent(digits, dp)
            if text[-4:-1] == "e-0":
                text = text[:-2] + text[-1]
            return sign + text
        return sign + _fixed(digits, dp)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return sign + _exponent(digits, dp)
    return sign + _fixed(digits, dp)


def _fragment(f: float) -> orjson.Fragment:
    return orjson.Fragment(format_float(f).encode())


def _scan(value: Any, depth: int) -> Any:
    """Return ``value`` ready for orjson: floats pre-rendered, everything else Go-typed.

    Containers are copied only when something inside them changes, so the common float-free
    document is returned untouched.  The ``issuperset(map(type, ...))`` census runs in C and
    settles flat containers without a Python-level loop.
    """
    t = type(value)
    if t in _SIMPLE:
        return value
    if t is dict:
        return value if _ALL_SIMPLE(map(type, value.values())) else _scan_dict(value, depth)
    if t is list or t is tuple:
        return value if _ALL_SIMPLE(map(type, value)) else _scan_list(value, depth)
    if t is float:
        return _fragment(value)
    return _scan_other(value, depth)


def _scan_dict(d: dict[Any, Any], depth: int) -> dict[Any, Any]:
    if depth > _MAX_FAST_DEPTH:
        raise _Fallback
    changed: dict[Any, Any] | None = None
    for k, v in d.items():
        # The nested census is inlined: a call per value costs more than the work itself.
        t = type(v)
        if t in _SIMPLE:
            continue
        if t is list or t is tuple:
            if _ALL_SIMPLE(map(type, v)):
                continue
            nv: Any = _scan_list(v, depth + 1)
        elif t is dict:
            if _ALL_SIMPLE(map(type, v.values())):
                continue
            nv = _scan_dict(v, depth + 1)
        elif t is float:
            nv = _fragment(v)
        else:
            nv = _scan_other(v, depth + 1)
        if nv is v:
            continue
        if changed is None:
            changed = dict(d)
        changed[k] = nv
    return d if changed is None else changed


def _scan_list(items: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
    if depth > _MAX_FAST_DEPTH:
        raise _Fallback
    changed: list[Any] | None = None
    for i, v in enumerate(items):
        t = type(v)
        if t in _SIMPLE:
            continue
        if t is list or t is tuple:
            if _ALL_SIMPLE(map(type, v)):
                continue
            nv: Any = _scan_list(v, depth + 1)
        elif t is dict:
            if _ALL_SIMPLE(map(type, v.values())):
                continue
            nv = _scan_dict(v, depth + 1)
        elif t is float:
            nv = _fragment(v)
        else:
            nv = _scan_other(v, depth + 1)
        if nv is v:
            continue
        if changed is None:
            changed = list(items)
        changed[i] = nv
    return items if changed is None else changed


def _scan_other(value: Any, depth: int) -> Any:
    # Subclasses (an IntEnum, a str subclass such as a template's safe HTML) are reduced to
    # the plain Go kinds they stand for; anything else has no goja counterpart.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return _fragment(float(value))
    if isinstance(value, dict):
        return _scan_dict(dict(value), depth + 1)
    if isinstance(value, (list, tuple)):
        return _scan_list(list(value), depth + 1)
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _fix(out: bytes) -> bytes:
    # ``int in bytes`` is a plain memchr; ``bytes in bytes`` costs several times more, and
    # this runs on every response.
    if 60 in out:
        out = out.replace(b"<", b"\\u003c")
    if 62 in out:
        out = out.replace(b">", b"\\u003e")
    if 38 in out:
        out = out.replace(b"&", b"\\u0026")
    if not out.isascii() and _LS[:2] in out:
        out = out.replace(_LS, b"\\u2028").replace(_PS, b"\\u2029")
    return out


def dumps(value: object, *, indent: str | None = None) -> bytes:
    """Encode ``value`` exactly as Go's ``json.NewEncoder(w).Encode(value)`` would.

    ``value`` is what goja exports: ``dict`` with ``str`` keys, ``list`` (or ``tuple``),
    ``str``, ``int``, ``float``, ``bool`` or ``None``, nested freely.  ``indent`` mirrors
    ``Encoder.SetIndent("", indent)`` (Echo's ``?pretty`` uses two spaces).  The result ends
    with ``\\n``.  NaN and infinities raise ``ValueError("json: unsupported value: NaN")``;
    other types raise :class:`TypeError`.
    """
    if indent is None or indent == "  ":
        prepared: Any = value
        try:
            t = type(prepared)
            if t is dict:
                if not _ALL_SIMPLE(map(type, prepared.values())):
                    prepared = _scan_dict(prepared, 0)
            elif t not in _SIMPLE:
                prepared = _scan(prepared, 0)
            out = orjson.dumps(prepared, option=_OPT_COMPACT if indent is None else _OPT_PRETTY)
        except (_Fallback, orjson.JSONEncodeError):
            pass
        else:
            if 60 in out or 62 in out or 38 in out or not out.isascii():
                out = _fix(out)
            return out
    return _slow(value, indent or "") + b"\n"


def marshal(value: object) -> bytes:
    """``json.Marshal(value)``: :func:`dumps` without the trailing newline."""
    return dumps(value)[:-1]


# -- pure-Python encoder: surrogates, big integers, deep or cyclic documents, other indents --


def _clean(s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return s


def _string(s: str) -> str:
    text: str = encode_basestring(_clean(s))
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = (
            text.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return text


def _slow(value: object, indent: str) -> bytes:
    parts: list[str] = []
    emit: Callable[[str], None] = parts.append
    active: set[int] = set()

    def enc(v: object, level: int) -> None:
        if v is None:
            emit("null")
        elif v is True:
            emit("true")
        elif v is False:
            emit("false")
        elif isinstance(v, str):
            emit(_string(v))
        elif isinstance(v, bool):
            emit("true" if v else "false")
        elif isinstance(v, int):
            emit(str(int(v)))
        elif isinstance(v, float):
            emit(format_float(float(v)))
        elif isinstance(v, dict):
            enc_dict(v, level)
        elif isinstance(v, (list, tuple)):
            enc_list(v, level)
        else:
            raise TypeError(f"json: unsupported type: {type(v).__name__}")

    def enter(v: object, kind: str) -> None:
        if id(v) in active:
            raise ValueError(f"json: unsupported value: encountered a cycle via {kind}")
        active.add(id(v))

    def newline(level: int) -> None:
        if indent:
            emit("\n" + indent * level)

    def enc_dict(d: dict[Any, Any], level: int) -> None:
        if not d:
            emit("{}")
            return
        enter(d, "map[string]interface {}")
        items: list[tuple[str, object]] = []
        for k, v in d.items():
            if not isinstance(k, str):
                raise TypeError(f"json: unsupported type: map key {type(k).__name__}")
            items.append((_clean(k), v))
        items.sort(key=lambda kv: kv[0])
        emit("{")
        for i, (k, v) in enumerate(items):
            if i:
                emit(",")
            newline(level + 1)
            emit(_string(k))
            emit(": " if indent else ":")
            enc(v, level + 1)
        newline(level)
        emit("}")
        active.discard(id(d))

    def enc_list(items: list[Any] | tuple[Any, ...], level: int) -> None:
        if not items:
            emit("[]")
            return
        enter(items, "[]interface {}")
        emit("[")
        for i, v in enumerate(items):
            if i:
                emit(",")
            newline(level + 1)
            enc(v, level + 1)
        newline(level)
        emit("]")
        active.discard(id(items))

    enc(value, 0)
    return "".join(parts).encode("utf-8")

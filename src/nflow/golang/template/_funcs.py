"""The builtin template functions, ported from Go's ``text/template/funcs.go``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple

from nflow.golang.template._fmt import _go_type, _sprint, _sprint_v, _sprintf, _sprintln
from nflow.golang.template._types import _INVALID, HTML, _GoInt

# ---------------------------------------------------------------------------------------------
# Builtin functions (text/template/funcs.go)


class _FuncError(Exception):
    """A Go function returned an error (or panicked); reported as ``error calling NAME: ...``."""


class _Func(NamedTuple):
    fn: Callable[..., object]
    nfixed: int
    variadic: bool
    # Parameter kinds: "value" (interface{}/reflect.Value: nil allowed) or "string".
    types: tuple[str, ...] = ()
    vtype: str = "value"


def _truth(v: object) -> bool:
    """Go's ``isTrue``: false, 0, nil, and empty strings, maps and slices are false."""
    if v is None or v is _INVALID:
        return False
    if isinstance(v, (bool, int, float, complex)):
        return v != 0
    if isinstance(v, (str, Mapping, list, tuple)):
        return len(v) > 0
    return True


def _kind(v: object) -> str:
    if v is None or v is _INVALID:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, complex):
        return "complex"
    if isinstance(v, str):
        return "string"
    return "other"


_BASIC_KINDS: Final = frozenset({"bool", "int", "float", "complex", "string"})
# Go 1.23 wording; releases after 1.24 append the two type names.
_ERR_BAD_COMPARISON: Final = "incompatible types for comparison"


def _b_eq(a: object, *bs: object) -> bool:
    if not bs:
        raise _FuncError("missing argument for comparison")
    k1 = _kind(a)
    for b in bs:
        k2 = _kind(b)
        truth = False
        if k1 != k2:
            if k1 != "invalid" and k2 != "invalid":
                raise _FuncError(_ERR_BAD_COMPARISON)
        elif k1 in _BASIC_KINDS:
            truth = a == b
        elif k1 == "invalid":
            truth = True
        elif isinstance(a, Mapping) != isinstance(b, Mapping):
            raise _FuncError(
                f"non-comparable types {_sprint_v(a)}: {_go_type(a)}, {_go_type(b)}: {_sprint_v(b)}"
            )
        else:
            raise _FuncError(f"non-comparable type {_sprint_v(b)}: {_go_type(b)}")
        if truth:
            return True
    return False


def _b_ne(a: object, b: object) -> bool:
    return not _b_eq(a, b)


def _b_lt(a: object, b: object) -> bool:
    k1, k2 = _kind(a), _kind(b)
    if k1 not in _BASIC_KINDS or k2 not in _BASIC_KINDS:
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        raise _FuncError(_ERR_BAD_COMPARISON)
    if k1 in ("bool", "complex"):
        raise _FuncError("invalid type for comparison")
    return bool(a < b)  # type: ignore[operator]


def _b_le(a: object, b: object) -> bool:
    return _b_lt(a, b) or _b_eq(a, b)


def _b_gt(a: object, b: object) -> bool:
    return not _b_le(a, b)


def _b_ge(a: object, b: object) -> bool:
    return not _b_lt(a, b)


def _b_not(a: object) -> bool:
    return not _truth(a)


def _b_len(a: object) -> int:
    if a is None:
        raise _FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(a, str):
        return _GoInt(len(a.encode("utf-8", "surrogatepass")))
    if isinstance(a, (Mapping, list, tuple)):
        return _GoInt(len(a))
    raise _FuncError(f"len of type {_go_type(a)}")


def _index_arg(ix: object, cap: int) -> int:
    if ix is None:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(ix, bool) or not isinstance(ix, int):
        raise _FuncError(f"cannot index slice/array with type {_go_type(ix)}")
    if ix < 0 or ix > cap:
        raise _FuncError(f"index out of range: {ix}")
    return int(ix)


def _b_index(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("index of untyped nil")
    for ix in indexes:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, str):
            data = item.encode("utf-8", "surrogatepass")
            x = _index_arg(ix, len(data))
            if x == len(data):
                raise _FuncError("reflect: string index out of range")
            item = data[x]
        elif isinstance(item, (list, tuple)):
            x = _index_arg(ix, len(item))
            if x == len(item):
                raise _FuncError("reflect: slice index out of range")
            item = item[x]
        elif isinstance(item, Mapping):
            if ix is None:
                raise _FuncError("value is nil; should be of type string")
            if not isinstance(ix, str):
                raise _FuncError(f"value has type {_go_type(ix)}; should be string")
            item = item.get(str.__str__(ix))
        else:
            raise _FuncError(f"can't index item of type {_go_type(item)}")
    return item


def _b_slice(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        data = item.encode("utf-8", "surrogatepass")
        cap = len(data)
    elif isinstance(item, (list, tuple)):
        cap = len(item)
    else:
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    idx = [0, cap, 0]
    for i, ix in enumerate(indexes):
        idx[i] = _index_arg(ix, cap)
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise _FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if isinstance(item, str):
        return data[idx[0] : idx[1]].decode("utf-8", "replace")
    assert isinstance(item, (list, tuple))
    return list(item[idx[0] : idx[1]])


def _b_print(*args: object) -> str:
    return _sprint(args)


def _b_println(*args: object) -> str:
    return _sprintln(args)


def _b_printf(fmt: str, *args: object) -> str:
    return _sprintf(fmt, args)


def _text_eval_args(args: Sequence[object]) -> str:
    """text/template ``evalArgs``: like ``fmt.Sprint`` but nil prints as ``<no value>``."""
    if len(args) == 1 and isinstance(args[0], str):
        return str.__str__(args[0])
    return _sprint(["<no value>" if a is None or a is _INVALID else a for a in args])


_HTML_ESCAPE_TABLE: Final = str.maketrans(
    {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
)


def _b_html(*args: object) -> str:
    return _text_eval_args(args).translate(_HTML_ESCAPE_TABLE)


def _js_escape_char(ch: str) -> str:
    o = ord(ch)
    if o < 0x80:
        special = {
            "\\": "\\\\",
            "'": "\\'",
            '"': '\\"',
            "<": "\\u003C",
            ">": "\\u003E",
            "&": "\\u0026",
            "=": "\\u003D",
        }
        if ch in special:
            return special[ch]
        return f"\\u00{o:02X}"
    if ch.isprintable():
        return ch
    return f"\\u{o:04X}"


_JS_SPECIAL_RE: Final = re.compile(r"[\\'\"<>&=\x00-\x1f\x80-\U0010ffff]")


def _b_js(*args: object) -> str:
    s = _text_eval_args(args)
    return _JS_SPECIAL_RE.sub(lambda m: _js_escape_char(m.group()), s)


def _b_urlquery(*args: object) -> str:
    out: list[str] = []
    for b in _text_eval_args(args).encode("utf-8", "surrogatepass"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_.~"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def _b_call(fn: object, *args: object) -> object:
    if fn is None:
        raise _FuncError("call of nil")
    raise _FuncError(f"non-function of type {_go_type(fn)}")


def _b_unescape_html(s: str) -> HTML:
    return HTML(s)


def _b_and_or(*args: object) -> object:  # pragma: no cover - special-cased in _State.call
    raise AssertionError("and/or are evaluated lazily")


_BUILTINS: Final[dict[str, _Func]] = {
    "and": _Func(_b_and_or, 1, True),
    "or": _Func(_b_and_or, 1, True),
    "not": _Func(_b_not, 1, False, ("value",)),
    "len": _Func(_b_len, 1, False, ("value",)),
    "index": _Func(_b_index, 1, True, ("value",)),
    "slice": _Func(_b_slice, 1, True, ("value",)),
    "call": _Func(_b_call, 1, True, ("value",)),
    "print": _Func(_b_print, 0, True),
    "println": _Func(_b_println, 0, True),
    "printf": _Func(_b_printf, 1, True, ("string",)),
    "html": _Func(_b_html, 0, True),
    "js": _Func(_b_js, 0, True),
    "urlquery": _Func(_b_urlquery, 0, True),
    "eq": _Func(_b_eq, 1, True, ("value",)),
    "ne": _Func(_b_ne, 2, False, ("value", "value")),
    "lt": _Func(_b_lt, 2, False, ("value", "value")),
    "le": _Func(_b_le, 2, False, ("value", "value")),
    "gt": _Func(_b_gt, 2, False, ("value", "value")),
    "ge": _Func(_b_ge, 2, False, ("value", "value")),
    # nFlow's one extra function (plugins/template.go).
    "unescapeHTML": _Func(_b_unescape_html, 1, False, ("string",)),
}

"""``html/template`` escaping functions (Go's ``html.go``, ``url.go``, ``js.go``, ``css.go``)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Final

from nflow.golang.template._context import (
    _CT_CSS,
    _CT_HTML,
    _CT_HTML_ATTR,
    _CT_PLAIN,
    _CT_SRCSET,
    _CT_URL,
    _D_NONE,
    _D_SPACE_OR_TAG_END,
    _DELIM_ENDS,
    _E_NONE,
    _IN_TAG_STATES,
    _S_RCDATA,
    _S_TAG,
    _S_TEXT,
    _TRANSITIONS,
    _attr_type,
    _Ctx,
    _decode_css,
    _is_css_nmchar,
    _is_hex,
    _is_js_ident_part,
)
from nflow.golang.template._fmt import _format_float_g, _format_float_json, _sprint
from nflow.golang.template._funcs import _BUILTINS, _Func
from nflow.golang.template._types import _INVALID, HTML

# ---------------------------------------------------------------------------------------------
# html/template escaping functions (html.go, url.go, js.go, css.go)

_FILTER_FAILSAFE: Final = "ZgotmplZ"


def _stringify(args: Sequence[object]) -> tuple[str, int]:
    if len(args) == 1:
        a = args[0]
        if isinstance(a, HTML):
            return str.__str__(a), _CT_HTML
        if isinstance(a, str):
            return a, _CT_PLAIN
    # Untyped nil arguments are skipped rather than printed as "<nil>" (Go issue 25875).
    return _sprint([a for a in args if a is not None and a is not _INVALID]), _CT_PLAIN


def _make_table(mapping: Mapping[str, str], extra_ranges: bool) -> dict[int, str]:
    table = {ord(k): v for k, v in mapping.items()}
    if extra_ranges:
        # Runes IE does not allow in unquoted attributes.
        for r in (*range(0xFDD0, 0xFDF0), *range(0xFFF0, 0x10000)):
            table[r] = f"&#x{r:x};"
    return table


_HTML_REPL: Final = {
    "\0": "\ufffd",
    '"': "&#34;",
    "&": "&amp;",
    "'": "&#39;",
    "+": "&#43;",
    "<": "&lt;",
    ">": "&gt;",
}
_HTML_NORM_REPL: Final = {k: v for k, v in _HTML_REPL.items() if k != "&"}
_HTML_NOSPACE_REPL: Final = {
    **_HTML_REPL,
    "\0": "&#xfffd;",
    # Characters that end or confuse an unquoted attribute value in some browser.
    **{c: f"&#{ord(c)};" for c in "\t\n\v\f\r =`"},
}
_HTML_NOSPACE_NORM_REPL: Final = {k: v for k, v in _HTML_NOSPACE_REPL.items() if k != "&"}

_HTML_TABLE: Final = _make_table(_HTML_REPL, False)
_HTML_NORM_TABLE: Final = _make_table(_HTML_NORM_REPL, False)
_HTML_NOSPACE_TABLE: Final = _make_table(_HTML_NOSPACE_REPL, True)
_HTML_NOSPACE_NORM_TABLE: Final = _make_table(_HTML_NOSPACE_NORM_REPL, True)


def _strip_tags(html: str) -> str:
    """Text content of an HTML snippet, using the escaper's own transition functions."""
    out: list[str] = []
    s = html
    c = _Ctx()
    i = 0
    all_text = True
    n = len(s)
    while i != n:
        if c.delim == _D_NONE:
            st = c.state
            if c.element != _E_NONE and st not in _IN_TAG_STATES:
                st = _S_RCDATA
            d, nread = _TRANSITIONS[st](c, s[i:])
            i1 = i + nread
            if c.state in (_S_TEXT, _S_RCDATA):
                j = i1
                if d.state != c.state:
                    k = s.rfind("<", i, j)
                    if k >= 0:
                        j = k
                out.append(s[i:j])
            else:
                all_text = False
            c, i = d, i1
            continue
        ends = _DELIM_ENDS[c.delim]
        i1 = i
        while i1 < n and s[i1] not in ends:
            i1 += 1
        if i1 >= n:
            break
        if c.delim != _D_SPACE_OR_TAG_END:
            i1 += 1
        c, i = _Ctx(_S_TAG, element=c.element), i1
    if all_text:
        return html
    if c.state in (_S_TEXT, _S_RCDATA):
        out.append(s[i:])
    return "".join(out)


def _esc_html(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_HTML:
        return s
    return s.translate(_HTML_TABLE)


def _esc_attr(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_HTML:
        return _strip_tags(s).translate(_HTML_NORM_TABLE)
    return s.translate(_HTML_TABLE)


def _esc_rcdata(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_HTML:
        return s.translate(_HTML_NORM_TABLE)
    return s.translate(_HTML_TABLE)


def _esc_nospace(*args: object) -> str:
    s, t = _stringify(args)
    if not s:
        # An empty unquoted value would let the next attribute become this one's value.
        return _FILTER_FAILSAFE
    if t == _CT_HTML:
        return _strip_tags(s).translate(_HTML_NOSPACE_NORM_TABLE)
    return s.translate(_HTML_NOSPACE_TABLE)


def _esc_html_name(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_HTML_ATTR:
        return s
    if not s:
        return _FILTER_FAILSAFE
    s = s.lower()
    if _attr_type(s) != _CT_PLAIN:
        return _FILTER_FAILSAFE
    if not all(("0" <= ch <= "9") or ("a" <= ch <= "z") for ch in s):
        return _FILTER_FAILSAFE
    return s


def _esc_comment(*args: object) -> str:
    return ""


def _is_safe_url(s: str) -> bool:
    protocol, sep, _ = s.partition(":")
    if sep and "/" not in protocol:
        return protocol.lower() in ("http", "https", "mailto")
    return True


def _esc_url_filter(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_URL:
        return s
    if not _is_safe_url(s):
        return "#" + _FILTER_FAILSAFE
    return s


_URL_RESERVED: Final = frozenset("!#$&*+,/:;=?@[]")
_URL_UNRESERVED: Final = frozenset(
    "-._~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def _process_url(s: str, norm: bool) -> str:
    """``processURLOnto``: percent-encode UTF-8 bytes; ``norm`` keeps reserved characters
    and existing escapes, which is right for a URL the template author spliced in."""
    data = s.encode("utf-8", "surrogatepass")
    out: list[str] = []
    n = len(data)
    for i, b in enumerate(data):
        c = chr(b)
        if c in _URL_UNRESERVED:
            out.append(c)
            continue
        if c in _URL_RESERVED and norm:
            out.append(c)
            continue
        if (
            c == "%"
            and norm
            and i + 2 < n
            and _is_hex(chr(data[i + 1]))
            and _is_hex(chr(data[i + 2]))
        ):
            out.append(c)
            continue
        out.append(f"%{b:02x}")
    return "".join(out)


def _esc_url_normalizer(*args: object) -> str:
    s, _ = _stringify(args)
    return _process_url(s, True)


def _esc_url_escaper(*args: object) -> str:
    s, t = _stringify(args)
    return _process_url(s, t == _CT_URL)


def _is_html_space(c: str) -> bool:
    return c in "\t\n\f\r "


def _filter_srcset_element(s: str, left: int, right: int, out: list[str]) -> None:
    start = left
    while start < right and _is_html_space(s[start]):
        start += 1
    end = right
    for i in range(start, right):
        if _is_html_space(s[i]):
            end = i
            break
    url = s[start:end]
    # Metadata made only of spaces and alphanumerics ("2x", "100w") needs no filtering.
    metadata_ok = all(_is_html_space(ch) or (ch.isascii() and ch.isalnum()) for ch in s[end:right])
    if _is_safe_url(url) and metadata_ok:
        out.append(s[left:start])
        out.append(_process_url(url, True))
        out.append(s[end:right])
        return
    out.append("#" + _FILTER_FAILSAFE)


def _esc_srcset(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_SRCSET:
        return s
    if t == _CT_URL:
        return _process_url(s, True).replace(",", "%2c")
    out: list[str] = []
    written = 0
    for i, ch in enumerate(s):
        if ch == ",":
            _filter_srcset_element(s, written, i, out)
            out.append(",")
            written = i + 1
    _filter_srcset_element(s, written, len(s), out)
    return "".join(out)


_LOW_UNICODE: Final = {
    **{i: f"\\u{i:04x}" for i in range(0x20)},
    0x09: "\\t",
    0x0A: "\\n",
    0x0B: "\\u000b",
    0x0C: "\\f",
    0x0D: "\\r",
}
# Escape HTML specials as \uXXXX so the output can also sit inside an HTML attribute.
_JS_STR_TABLE: Final = {
    **_LOW_UNICODE,
    **{ord(c): f"\\u{ord(c):04x}" for c in "\"`&'+<>"},
    ord("/"): "\\/",
    ord("\\"): "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
# Template literals also need "${" and "}" neutralised.
_JS_BQ_STR_TABLE: Final = {**_JS_STR_TABLE, **{ord(c): f"\\u{ord(c):04x}" for c in "${}"}}
_JS_REGEXP_TABLE: Final = {
    **_LOW_UNICODE,
    **{ord(c): f"\\u{ord(c):04x}" for c in "\"&'+<>"},
    **{ord(c): "\\" + c for c in "$()*-./?[\\]^{|}"},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _esc_js_str(*args: object) -> str:
    s, _ = _stringify(args)
    return s.translate(_JS_STR_TABLE)


def _esc_js_tmpl_lit(*args: object) -> str:
    s, _ = _stringify(args)
    return s.translate(_JS_BQ_STR_TABLE)


def _esc_js_regexp(*args: object) -> str:
    s, _ = _stringify(args)
    s = s.translate(_JS_REGEXP_TABLE)
    return s or "(?:)"


class _JSONError(Exception):
    pass


_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


def _json_string(s: str) -> str:
    s = _SURROGATE_RE.sub("\ufffd", s)
    out = json.dumps(s, ensure_ascii=False)
    return (
        out.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _go_json(v: object) -> str:
    """``encoding/json.Marshal`` of a JS-exported value (sorted keys, HTML-safe)."""
    if v is None or v is _INVALID:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise _JSONError(f"json: unsupported value: {_format_float_g(v)}")
        return _format_float_json(v)
    if isinstance(v, str):
        return _json_string(str.__str__(v))
    if isinstance(v, Mapping):
        items = sorted((str(k), x) for k, x in v.items())
        return "{" + ",".join(f"{_json_string(k)}:{_go_json(x)}" for k, x in items) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_go_json(x) for x in v) + "]"
    if isinstance(v, complex):
        raise _JSONError("json: unsupported type: complex128")
    return _json_string(str(v))


def _esc_js_val(*args: object) -> str:
    if len(args) == 1:
        a: object = args[0]
    else:
        a = _sprint(args)
    try:
        b = _go_json(a)
    except _JSONError as e:
        msg = re.sub(r"(?i)<(/?)script", r"\\x3C\1script", str(e))
        msg = msg.replace("*/", "* /").replace("<!--", "\\x3C!--")
        return f" /* {msg} */null "
    if not b:
        return " null "
    # Keep a value from fusing with a neighbouring keyword or number: "x in{{.}}".
    if _is_js_ident_part(b[0]) or _is_js_ident_part(b[-1]):
        return " " + b + " "
    return b


# CSS hex escapes for HTML specials and CSS delimiters (control characters included).
_CSS_REPL: Final = {
    **{c: f"\\{ord(c):x}" for c in "\0\t\n\f\r\"&'()+/:;<>{}"},
    "\\": "\\\\",
}


def _esc_css(*args: object) -> str:
    s, _ = _stringify(args)
    out: list[str] = []
    written = 0
    n = len(s)
    for i, ch in enumerate(s):
        repl = _CSS_REPL.get(ch)
        if repl is None:
            continue
        out.append(s[written:i])
        out.append(repl)
        written = i + 1
        # A hex escape swallows a following hex digit or space, so separate them.
        if repl != "\\\\" and (written == n or _is_hex(s[written]) or s[written] in "\t\n\f\r "):
            out.append(" ")
    if written == 0:
        return s
    out.append(s[written:])
    return "".join(out)


def _esc_css_value(*args: object) -> str:
    s, t = _stringify(args)
    if t == _CT_CSS:
        return s
    b = _decode_css(s)
    ident: list[str] = []
    for i, ch in enumerate(b):
        if ch in "\0\"'()/;@[\\]`{}":
            return _FILTER_FAILSAFE
        if ch == "-":
            if i != 0 and b[i - 1] == "-":
                return _FILTER_FAILSAFE
        elif ch < "\x80" and _is_css_nmchar(ch):
            ident.append(ch)
    low = "".join(ident).lower()
    if "expression" in low or "mozbinding" in low:
        return _FILTER_FAILSAFE
    return b


def _esc_eval_args(*args: object) -> str:
    """html/template ``evalArgs`` (``fmt.Sprint``), used by ``{{html .x .y}}`` rewriting."""
    if len(args) == 1 and isinstance(args[0], str):
        return str.__str__(args[0])
    return _sprint(args)


_ESCAPERS: Final[dict[str, _Func]] = {
    name: _Func(fn, 0, True)
    for name, fn in {
        "_html_template_attrescaper": _esc_attr,
        "_html_template_commentescaper": _esc_comment,
        "_html_template_cssescaper": _esc_css,
        "_html_template_cssvaluefilter": _esc_css_value,
        "_html_template_htmlnamefilter": _esc_html_name,
        "_html_template_htmlescaper": _esc_html,
        "_html_template_jsregexpescaper": _esc_js_regexp,
        "_html_template_jsstrescaper": _esc_js_str,
        "_html_template_jstmpllitescaper": _esc_js_tmpl_lit,
        "_html_template_jsvalescaper": _esc_js_val,
        "_html_template_nospaceescaper": _esc_nospace,
        "_html_template_rcdataescaper": _esc_rcdata,
        "_html_template_srcsetescaper": _esc_srcset,
        "_html_template_urlescaper": _esc_url_escaper,
        "_html_template_urlfilter": _esc_url_filter,
        "_html_template_urlnormalizer": _esc_url_normalizer,
        "_eval_args_": _esc_eval_args,
    }.items()
}

_EXEC_FUNCS: Final[dict[str, _Func]] = {**_BUILTINS, **_ESCAPERS}
_PARSE_FUNCS: Final = frozenset(_BUILTINS)

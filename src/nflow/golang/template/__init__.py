"""Go ``html/template`` rendering for nFlow page templates.

nFlow's ``template(text, data)`` and the ``form`` palette module render pages with Go's
``html/template`` (plus one extra function, ``unescapeHTML``), and users compare the HTML
byte for byte with what the Go runtime served.  This module is a port of the parts of
``text/template`` (lexer, parser, executor, builtins) and ``html/template`` (contextual
auto-escaping) that such pages can reach, following the sources of Go 1.23 (the toolchain
of the Go runtime) rule by rule: the same parse-tree rewriting (escaper functions appended to
each action's pipeline, static text rewritten once at compile time), the same escaper tables
and the same error texts.  Later Go releases changed a few escaping rules (``<meta content>``
URLs, ``<script type="">``); those are deliberately not followed.

Data is what goja exports from JavaScript: ``dict``/``list``/``str``/``int``/``float``/
``bool``/``None``.  A Python ``int`` stands for a Go ``int64`` and ``None`` for a nil
``interface{}``.

Not supported (a Go template using them fails here with a :class:`TemplateError`):
``{{define}}``, ``{{template}}`` and ``{{block}}`` (nFlow renders one anonymous template per
call, so no page can define or call another), method calls, ``call`` on real functions, and
the ``%x``/``%b`` verbs on floats in ``printf``.
"""

from __future__ import annotations

import functools
import html as _stdhtml
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, NamedTuple, NoReturn, Protocol

__all__ = [
    "HTML",
    "CompiledTemplate",
    "TemplateError",
    "compile_template",
    "render",
]


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated names: keeps Go's long name tables compact."""
    return tuple(text.split())


# ---------------------------------------------------------------------------------------------
# Public types


class TemplateError(Exception):
    """A parse, escaping or execution error, worded like Go's.

    ``phase`` is ``"parse"`` (Go panics in ``template.Must``), ``"escape"`` (Go's ``Execute``
    returns the error and writes nothing) or ``"exec"`` (Go has already written ``output``,
    the partial page, when it stops).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        line: int,
        phase: Literal["parse", "escape", "exec"],
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.phase = phase
        self.output = output


class HTML(str):
    """A string known to be safe HTML (Go's ``template.HTML``); escapers pass it through."""

    __slots__ = ()


class _GoInt(int):
    """An ``int`` constant from the template text.

    Go distinguishes ``int`` (literals, range indexes, ``len``) from the ``int64`` values that
    come from JavaScript; only error messages show the difference.
    """

    __slots__ = ()


class _Invalid:
    """The zero ``reflect.Value``: a missing map key, or nil after a pipeline stage."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()


class _NoFinal:
    """``missingVal``: the command is the first of its pipeline, so it gets no piped value."""

    __slots__ = ()


_NO_FINAL: Final = _NoFinal()


# ---------------------------------------------------------------------------------------------
# Go value formatting (fmt, strconv)


def _go_type(v: object) -> str:
    if v is None or v is _INVALID:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, _GoInt):
        return "int"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, complex):
        return "complex128"
    if isinstance(v, HTML):
        return "template.HTML"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    return type(v).__name__


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``abs(f)`` (non-zero, finite) as ``0.DIGITS * 10**dp``.

    ``repr`` gives the same shortest digits as Go's ``strconv`` (both are correctly rounded
    shortest representations); only the layout differs, and that is redone by the callers.
    """
    mant, _, exp = repr(abs(f)).partition("e")
    e = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    dp = len(ip) + e
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return (stripped.rstrip("0") or "0"), dp


def _fmt_e(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    out = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{out}{'E' if upper else 'e'}{sign}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _format_float_g(f: float, upper: bool = False) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``, which is what ``%v`` prints for a float64."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, dp = _shortest_digits(f)
    sign = "-" if f < 0 else ""
    exp = dp - 1
    # With the shortest precision Go switches to %e at exponent 6, not 21 as JSON does.
    if exp < -4 or exp >= 6:
        return sign + _fmt_e(digits, dp, upper)
    return sign + _fmt_f(digits, dp)


def _format_float_json(f: float) -> str:
    """``encoding/json`` float formatting (ES6 number-to-string)."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, dp = _shortest_digits(f)
    sign = "-" if f < 0 else ""
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(digits, dp)
        # Go trims "e-07" to "e-7" (but keeps "e+21").
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return sign + s
    return sign + _fmt_f(digits, dp)


def _format_complex(c: complex) -> str:
    re_s = _format_float_g(c.real)
    im_s = _format_float_g(c.imag)
    if not im_s.startswith(("-", "+")):
        im_s = "+" + im_s
    return f"({re_s}{im_s}i)"


def _sprint_v(v: object) -> str:
    """``fmt.Sprint`` of one operand (the ``%v`` verb)."""
    if isinstance(v, str):
        return str.__str__(v)
    if v is None or v is _INVALID:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return _format_float_g(v)
    if isinstance(v, complex):
        return _format_complex(v)
    if isinstance(v, Mapping):
        items = _sorted_items(v)
        return "map[" + " ".join(f"{_sprint_v(k)}:{_sprint_v(x)}" for k, x in items) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_sprint_v(x) for x in v) + "]"
    return str(v)


def _sorted_items(m: Mapping[object, object]) -> list[tuple[object, object]]:
    """Map entries in ``fmtsort`` order (Go prints and ranges over maps sorted by key)."""
    try:
        return sorted(m.items(), key=lambda kv: kv[0])  # type: ignore[arg-type,return-value]
    except TypeError:
        return sorted(m.items(), key=lambda kv: _sprint_v(kv[0]))


def _sprint(args: Sequence[object]) -> str:
    """``fmt.Sprint``: a space between operands when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_sprint_v(a))
        prev_string = is_string
    return "".join(out)


def _sprintln(args: Sequence[object]) -> str:
    return " ".join(_sprint_v(a) for a in args) + "\n"


_GO_QUOTE_SHORT: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def _go_quote(s: str, quote: str = '"') -> str:
    """``strconv.Quote`` (or ``QuoteRune`` with ``quote="'"``)."""
    out = [quote]
    for ch in s:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _GO_QUOTE_SHORT:
            out.append(_GO_QUOTE_SHORT[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            o = ord(ch)
            if o < 0x80:
                out.append(f"\\x{o:02x}")
            elif o < 0x10000:
                out.append(f"\\u{o:04x}")
            else:
                out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


def _go_quote_trunc(s: str, n: int) -> str:
    """``%.Nq``: quote the first ``n`` runes."""
    return _go_quote(s[:n])


# -- printf -----------------------------------------------------------------------------------


class _Spec(NamedTuple):
    minus: bool
    plus: bool
    sharp: bool
    space: bool
    zero: bool
    width: int | None
    prec: int | None
    verb: str


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    w = spec.width
    if w is None or len(s) >= w:
        return s
    if spec.minus:
        return s + " " * (w - len(s))
    if spec.zero and numeric:
        sign = s[0] if s[:1] in ("-", "+", " ") else ""
        body = s[len(sign) :]
        return sign + "0" * (w - len(s)) + body
    return " " * (w - len(s)) + s


def _bad_verb(spec: _Spec, v: object) -> str:
    if v is None or v is _INVALID:
        return f"%!{spec.verb}(<nil>)"
    return f"%!{spec.verb}({_go_type(v)}={_sprint_v(v)})"


def _fmt_int(v: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        try:
            return _pad(chr(v), spec)
        except (ValueError, OverflowError):
            return _pad("\ufffd", spec)
    if verb == "q":
        try:
            return _pad(_go_quote(chr(v), "'"), spec)
        except (ValueError, OverflowError):
            return _pad("'\ufffd'", spec)
    if verb == "U":
        s = f"U+{v:04X}"
        if spec.sharp and 0 <= v <= 0x10FFFF:
            s += f" '{chr(v)}'"
        return _pad(s, spec)
    neg = v < 0
    a = -v if neg else v
    prefix = ""
    if verb in ("d", "v"):
        body = str(a)
    elif verb == "x":
        body = f"{a:x}"
        prefix = "0x" if spec.sharp else ""
    elif verb == "X":
        body = f"{a:X}"
        prefix = "0X" if spec.sharp else ""
    elif verb == "o":
        body = f"{a:o}"
        prefix = "0" if spec.sharp else ""
    elif verb == "O":
        body = f"{a:o}"
        prefix = "0o"
    elif verb == "b":
        body = f"{a:b}"
    else:
        return _bad_verb(spec, v)
    if spec.prec is not None:
        body = body.rjust(spec.prec, "0") if spec.prec else ("" if a == 0 else body)
    sign = "-" if neg else ("+" if spec.plus else (" " if spec.space else ""))
    s = sign + prefix + body
    return _pad(s, spec, numeric=spec.prec is None)


def _fmt_float(v: float, spec: _Spec) -> str:
    verb = spec.verb
    if verb not in "vgGeEfF":
        return _bad_verb(spec, v)
    if math.isnan(v) or math.isinf(v):
        # fmt keeps the sign of an infinity but only shows one on NaN when asked to.
        if math.isnan(v):
            s = "+NaN" if spec.plus else (" NaN" if spec.space else "NaN")
        else:
            s = "+Inf" if v > 0 else "-Inf"
        return _pad(s, spec._replace(zero=False))
    if spec.prec is None and verb in "vgG":
        s = _format_float_g(v, upper=verb == "G")
    else:
        p = 6 if spec.prec is None else spec.prec
        pyverb = {"v": "g", "F": "f"}.get(verb, verb)
        s = format(v, f".{p}{pyverb}")
        if pyverb in "gG" and "e" in s.lower():
            mant, _, exp = s.partition("e" if pyverb == "g" else "E")
            s = f"{mant}{'e' if pyverb == 'g' else 'E'}{exp[0]}{int(exp[1:]):02d}"
    if spec.plus and not s.startswith("-"):
        s = "+" + s
    elif spec.space and not s.startswith("-"):
        s = " " + s
    return _pad(s, spec, numeric=True)


def _fmt_str(v: str, spec: _Spec) -> str:
    verb = spec.verb
    if verb in ("s", "v"):
        s = v if spec.prec is None else v[: spec.prec]
        return _pad(s, spec)
    if verb == "q":
        s = v if spec.prec is None else v[: spec.prec]
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(_go_quote(s), spec)
    if verb in ("x", "X"):
        data = v.encode("utf-8", "surrogatepass")
        if spec.prec is not None:
            data = data[: spec.prec]
        fmt = "{:02x}" if verb == "x" else "{:02X}"
        parts = [fmt.format(b) for b in data]
        if spec.space:
            pre = ("0x" if verb == "x" else "0X") if spec.sharp else ""
            return _pad(" ".join(pre + p for p in parts), spec)
        pre = ("0x" if verb == "x" else "0X") if spec.sharp and parts else ""
        return _pad(pre + "".join(parts), spec)
    return _bad_verb(spec, v)


def _fmt_value(v: object, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "T":
        return _pad("<nil>" if v is None or v is _INVALID else _go_type(v), spec)
    if v is None or v is _INVALID:
        if verb == "v":
            return _pad("<nil>", spec)
        return _bad_verb(spec, v)
    if isinstance(v, bool):
        if verb in ("t", "v"):
            return _pad("true" if v else "false", spec)
        return _bad_verb(spec, v)
    if isinstance(v, int):
        return _fmt_int(v, spec)
    if isinstance(v, float):
        return _fmt_float(v, spec)
    if isinstance(v, complex):
        if verb not in "vgGeEfF":
            return _bad_verb(spec, v)
        inner = spec._replace(width=None, plus=True)
        re_s = _fmt_float(v.real, spec._replace(width=None))
        im_s = _fmt_float(v.imag, inner)
        return _pad(f"({re_s}{im_s}i)", spec)
    if isinstance(v, str):
        return _fmt_str(v, spec)
    if isinstance(v, Mapping):
        parts = [f"{_fmt_value(k, spec)}:{_fmt_value(x, spec)}" for k, x in _sorted_items(v)]
        return "map[" + " ".join(parts) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_fmt_value(x, spec) for x in v) + "]"
    return _pad(str(v), spec)


def _sprintf(fmt: str, args: Sequence[object]) -> str:
    """``fmt.Sprintf`` for the verbs templates use (flags, width, precision, ``*``)."""
    out: list[str] = []
    argi = 0
    i = 0
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        minus = plus = sharp = space = zero = False
        while i < n and fmt[i] in "-+# 0":
            c = fmt[i]
            if c == "-":
                minus, zero = True, False
            elif c == "+":
                plus = True
            elif c == "#":
                sharp = True
            elif c == " ":
                space = True
            elif not minus:
                zero = True
            i += 1
        width: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and isinstance(args[argi], int):
                width = int(args[argi])  # type: ignore[call-overload]
                if width < 0:
                    minus, width = True, -width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                width = int(fmt[k:i])
        prec: int | None = None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and isinstance(args[argi], int):
                    prec = int(args[argi])  # type: ignore[call-overload]
                    if prec < 0:
                        prec = None
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[k:i]) if i > k else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = _Spec(minus, plus, sharp, space, zero, width, prec, verb)
        out.append(_fmt_value(args[argi], spec))
        argi += 1
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None or a is _INVALID else f"{_go_type(a)}={_sprint_v(a)}"
            for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Lexer (text/template/parse/lex.go)

(
    _I_ERROR,
    _I_BOOL,
    _I_CHAR,
    _I_CHAR_CONSTANT,
    _I_COMMENT,
    _I_COMPLEX,
    _I_ASSIGN,
    _I_DECLARE,
    _I_EOF,
    _I_FIELD,
    _I_IDENTIFIER,
    _I_LEFT_DELIM,
    _I_LEFT_PAREN,
    _I_NUMBER,
    _I_PIPE,
    _I_RAW_STRING,
    _I_RIGHT_DELIM,
    _I_RIGHT_PAREN,
    _I_SPACE,
    _I_STRING,
    _I_TEXT,
    _I_VARIABLE,
    _I_KEYWORD,
    _I_BLOCK,
    _I_BREAK,
    _I_CONTINUE,
    _I_DOT,
    _I_DEFINE,
    _I_ELSE,
    _I_END,
    _I_IF,
    _I_NIL,
    _I_RANGE,
    _I_TEMPLATE,
    _I_WITH,
) = range(35)

_KEYWORDS: Final = {
    ".": _I_DOT,
    "block": _I_BLOCK,
    "break": _I_BREAK,
    "continue": _I_CONTINUE,
    "define": _I_DEFINE,
    "else": _I_ELSE,
    "end": _I_END,
    "if": _I_IF,
    "range": _I_RANGE,
    "nil": _I_NIL,
    "template": _I_TEMPLATE,
    "with": _I_WITH,
}

_LEFT_DELIM: Final = "{{"
_RIGHT_DELIM: Final = "}}"
_LEFT_COMMENT: Final = "/*"
_RIGHT_COMMENT: Final = "*/"
_SPACE_CHARS: Final = " \t\r\n"


class _Item(NamedTuple):
    typ: int
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.typ == _I_EOF:
            return "EOF"
        if self.typ == _I_ERROR:
            return self.val
        if self.typ > _I_KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote_trunc(self.val, 10) + "..."
        return _go_quote(self.val)


class _StateFn(Protocol):
    def __call__(self) -> _StateFn | None: ...


def _is_space(r: str) -> bool:
    return r in (" ", "\t", "\r", "\n")


def _is_alnum(r: str) -> bool:
    return r == "_" or (r != "" and (r.isalpha() or r.isdigit()))


def _has_left_trim_marker(s: str) -> bool:
    return len(s) >= 2 and s[0] == "-" and _is_space(s[1])


def _has_right_trim_marker(s: str) -> bool:
    return len(s) >= 2 and _is_space(s[0]) and s[1] == "-"


class _Lexer:
    """A port of Go's state-function lexer; positions are character offsets."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.at_eof = False
        self.paren_depth = 0
        self.line = 1
        self.start_line = 1
        self.item = _Item(_I_EOF, 0, "EOF", 1)
        self.inside_action = False

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return ""
        r = self.input[self.pos]
        self.pos += 1
        if r == "\n":
            self.line += 1
        return r

    def peek(self) -> str:
        r = self.next()
        self.backup()
        return r

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1
            if self.input[self.pos] == "\n":
                self.line -= 1

    def this_item(self, t: int) -> _Item:
        i = _Item(t, self.start, self.input[self.start : self.pos], self.start_line)
        self.start = self.pos
        self.start_line = self.line
        return i

    def emit(self, t: int) -> _StateFn | None:
        self.item = self.this_item(t)
        return None

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        r = self.next()
        if r != "" and r in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            r = self.next()
            if r == "" or r not in valid:
                break
        self.backup()

    def errorf(self, msg: str) -> _StateFn | None:
        self.item = _Item(_I_ERROR, self.start, msg, self.start_line)
        self.start = 0
        self.pos = 0
        self.input = ""
        return None

    def next_item(self) -> _Item:
        self.item = _Item(_I_EOF, self.pos, "EOF", self.start_line)
        state: _StateFn | None = self.lex_inside_action if self.inside_action else self.lex_text
        while state is not None:
            state = state()
        return self.item

    def lex_text(self) -> _StateFn | None:
        x = self.input.find(_LEFT_DELIM, self.pos)
        if x >= 0:
            if x > self.pos:
                self.pos = x
                trim = 0
                delim_end = self.pos + len(_LEFT_DELIM)
                if _has_left_trim_marker(self.input[delim_end : delim_end + 2]):
                    seg = self.input[self.start : self.pos]
                    trim = len(seg) - len(seg.rstrip(_SPACE_CHARS))
                self.pos -= trim
                self.line += self.input.count("\n", self.start, self.pos)
                i = self.this_item(_I_TEXT)
                self.pos += trim
                self.ignore()
                if i.val:
                    self.item = i
                    return None
            return self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.line += self.input.count("\n", self.start, self.pos)
            return self.emit(_I_TEXT)
        return self.emit(_I_EOF)

    def at_right_delim(self) -> tuple[bool, bool]:
        s = self.input
        p = self.pos
        if _has_right_trim_marker(s[p : p + 2]) and s.startswith(_RIGHT_DELIM, p + 2):
            return True, True
        if s.startswith(_RIGHT_DELIM, p):
            return True, False
        return False, False

    def lex_left_delim(self) -> _StateFn | None:
        self.pos += len(_LEFT_DELIM)
        trim = _has_left_trim_marker(self.input[self.pos : self.pos + 2])
        after = 2 if trim else 0
        if self.input.startswith(_LEFT_COMMENT, self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        i = self.this_item(_I_LEFT_DELIM)
        self.inside_action = True
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        self.item = i
        return None

    def lex_comment(self) -> _StateFn | None:
        self.pos += len(_LEFT_COMMENT)
        x = self.input.find(_RIGHT_COMMENT, self.pos)
        if x < 0:
            return self.errorf("unclosed comment")
        self.pos = x + len(_RIGHT_COMMENT)
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        self.line += self.input.count("\n", self.start, self.pos)
        self.this_item(_I_COMMENT)
        if trim:
            self.pos += 2
        self.pos += len(_RIGHT_DELIM)
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(_SPACE_CHARS))
        self.ignore()
        return self.lex_text

    def lex_right_delim(self) -> _StateFn | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += len(_RIGHT_DELIM)
        i = self.this_item(_I_RIGHT_DELIM)
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(_SPACE_CHARS))
            self.ignore()
        self.inside_action = False
        self.item = i
        return None

    def lex_inside_action(self) -> _StateFn | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.errorf("unclosed left paren")
        r = self.next()
        if r == "":
            return self.errorf("unclosed action")
        if _is_space(r):
            self.backup()
            return self.lex_space
        if r == "=":
            return self.emit(_I_ASSIGN)
        if r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            return self.emit(_I_DECLARE)
        if r == "|":
            return self.emit(_I_PIPE)
        if r == '"':
            return self.lex_quote
        if r == "`":
            return self.lex_raw_quote
        if r == "$":
            return self.lex_variable
        if r == "'":
            return self.lex_char
        if r == ".":
            if self.pos < len(self.input):
                nxt = self.input[self.pos]
                if nxt < "0" or nxt > "9":
                    return self.lex_field
            self.backup()
            return self.lex_number
        if r in "+-" or "0" <= r <= "9":
            self.backup()
            return self.lex_number
        if _is_alnum(r):
            self.backup()
            return self.lex_identifier
        if r == "(":
            self.paren_depth += 1
            return self.emit(_I_LEFT_PAREN)
        if r == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf("unexpected right paren")
            return self.emit(_I_RIGHT_PAREN)
        if r <= "\x7f" and r.isprintable():
            return self.emit(_I_CHAR)
        return self.errorf(f"unrecognized character in action: {_go_rune_u(r)}")

    def lex_space(self) -> _StateFn | None:
        num = 0
        while _is_space(self.peek()):
            self.next()
            num += 1
        s = self.input
        if _has_right_trim_marker(s[self.pos - 1 : self.pos + 1]) and s.startswith(
            _RIGHT_DELIM, self.pos + 1
        ):
            self.backup()
            if num == 1:
                return self.lex_right_delim
        return self.emit(_I_SPACE)

    def lex_identifier(self) -> _StateFn | None:
        while True:
            r = self.next()
            if _is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_go_rune_u(r)}")
            kw = _KEYWORDS.get(word, 0)
            if kw > _I_KEYWORD:
                return self.emit(kw)
            if word[0] == ".":
                return self.emit(_I_FIELD)
            if word in ("true", "false"):
                return self.emit(_I_BOOL)
            return self.emit(_I_IDENTIFIER)

    def lex_field(self) -> _StateFn | None:
        return self.lex_field_or_variable(_I_FIELD)

    def lex_variable(self) -> _StateFn | None:
        if self.at_terminator():
            return self.emit(_I_VARIABLE)
        return self.lex_field_or_variable(_I_VARIABLE)

    def lex_field_or_variable(self, typ: int) -> _StateFn | None:
        if self.at_terminator():
            return self.emit(_I_VARIABLE if typ == _I_VARIABLE else _I_DOT)
        r = ""
        while True:
            r = self.next()
            if not _is_alnum(r):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {_go_rune_u(r)}")
        return self.emit(typ)

    def at_terminator(self) -> bool:
        r = self.peek()
        if _is_space(r):
            return True
        if r in ("", ".", ",", "|", ":", ")", "("):
            return True
        return self.input.startswith(_RIGHT_DELIM, self.pos)

    def lex_char(self) -> _StateFn | None:
        while True:
            r = self.next()
            if r == "\\":
                r = self.next()
                if r not in ("", "\n"):
                    continue
                return self.errorf("unterminated character constant")
            if r in ("", "\n"):
                return self.errorf("unterminated character constant")
            if r == "'":
                break
        return self.emit(_I_CHAR_CONSTANT)

    def lex_number(self) -> _StateFn | None:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {_go_quote(self.input[self.start : self.pos])}")
        sign = self.peek()
        if sign in ("+", "-") and sign != "":
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                text = self.input[self.start : self.pos]
                return self.errorf(f"bad number syntax: {_go_quote(text)}")
            return self.emit(_I_COMPLEX)
        return self.emit(_I_NUMBER)

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True

    def lex_quote(self) -> _StateFn | None:
        while True:
            r = self.next()
            if r == "\\":
                r = self.next()
                if r not in ("", "\n"):
                    continue
                return self.errorf("unterminated quoted string")
            if r in ("", "\n"):
                return self.errorf("unterminated quoted string")
            if r == '"':
                break
        return self.emit(_I_STRING)

    def lex_raw_quote(self) -> _StateFn | None:
        while True:
            r = self.next()
            if r == "":
                return self.errorf("unterminated raw quoted string")
            if r == "`":
                break
        return self.emit(_I_RAW_STRING)


def _go_rune_u(r: str) -> str:
    """``%#U`` of a rune: ``U+0041 'A'``."""
    if r == "":
        return "U+FFFFFFFFFFFFFFFF"
    o = ord(r)
    if r.isprintable():
        return f"U+{o:04X} '{r}'"
    return f"U+{o:04X}"


# -- Go literal decoding ----------------------------------------------------------------------


class _SyntaxError(Exception):
    pass


_SIMPLE_ESCAPES: Final = dict(zip("abfnrtv\\", "\a\b\f\n\r\t\v\\", strict=True))


def _unquote_char(s: str, i: int, quote: str) -> tuple[str, int]:
    """``strconv.UnquoteChar`` at ``s[i]``: the decoded rune and the index after it."""
    c = s[i]
    if c == quote and quote in ("'", '"'):
        raise _SyntaxError
    if c != "\\":
        return c, i + 1
    if i + 1 >= len(s):
        raise _SyntaxError
    c = s[i + 1]
    i += 2
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i
    if c in ("x", "u", "U"):
        n = {"x": 2, "u": 4, "U": 8}[c]
        h = s[i : i + n]
        if len(h) != n or any(ch not in "0123456789abcdefABCDEF" for ch in h):
            raise _SyntaxError
        v = int(h, 16)
        if c == "x":
            # \xNN is a byte; a lone byte >= 0x80 is not valid UTF-8 in a Python str.
            return chr(v) if v < 0x80 else "\ufffd", i + n
        if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            raise _SyntaxError
        return chr(v), i + n
    if "0" <= c <= "7":
        o = s[i - 1 : i + 2]
        if len(o) != 3 or any(ch not in "01234567" for ch in o):
            raise _SyntaxError
        v = int(o, 8)
        if v > 255:
            raise _SyntaxError
        return (chr(v) if v < 0x80 else "\ufffd"), i + 2
    if c in ("'", '"'):
        if c != quote:
            raise _SyntaxError
        return c, i
    raise _SyntaxError


def _go_unquote(s: str) -> str:
    """``strconv.Unquote`` of a double-quoted or back-quoted Go string literal."""
    if len(s) < 2 or s[0] != s[-1]:
        raise _SyntaxError
    q = s[0]
    body = s[1:-1]
    if q == "`":
        if "`" in body:
            raise _SyntaxError
        return body.replace("\r", "")
    if q != '"' or "\n" in body:
        raise _SyntaxError
    out: list[str] = []
    i = 0
    while i < len(body):
        ch, i = _unquote_char(body, i, q)
        out.append(ch)
    return "".join(out)


_OCTAL_RE: Final = re.compile(r"[+-]?0[0-7_]+\Z")


def _parse_go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``; None when it fails."""
    try:
        v = int(text.replace("_", ""), 8) if _OCTAL_RE.match(text) else int(text, 0)
    except ValueError:
        return None
    if not -(1 << 63) <= v < (1 << 63):
        return None
    return v


def _parse_go_float(text: str) -> float | None:
    t = text.replace("_", "")
    try:
        if t.lstrip("+-")[:2] in ("0x", "0X"):
            return float.fromhex(t)
        if t.lower().lstrip("+-") in ("inf", "infinity", "nan"):
            return None
        return float(t)
    except (ValueError, OverflowError):
        return None


# ---------------------------------------------------------------------------------------------
# Parse tree (text/template/parse/node.go).  Nodes hash by identity: the escaper keys its
# edits by node, exactly as Go keys them by pointer.


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _TextNode(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _ListNode(_Node):
    __slots__ = ("nodes",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.nodes: list[_Node] = []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class _IdentifierNode(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class _VariableNode(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return ".".join(self.ident)


class _DotNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _NilNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _FieldNode(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class _BoolNode(_Node):
    __slots__ = ("val",)

    def __init__(self, pos: int, val: bool) -> None:
        super().__init__(pos)
        self.val = val

    def __str__(self) -> str:
        return "true" if self.val else "false"


class _NumberNode(_Node):
    __slots__ = ("text", "value")

    def __init__(self, pos: int, text: str, value: object) -> None:
        super().__init__(pos)
        self.text = text
        self.value = value

    def __str__(self) -> str:
        return self.text


class _StringNode(_Node):
    __slots__ = ("quoted", "text")

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class _CommandNode(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _PipeNode) else str(a) for a in self.args)


class _PipeNode(_Node):
    __slots__ = ("cmds", "decl", "is_assign", "line")

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line
        self.is_assign = False
        self.decl: list[_VariableNode] = []
        self.cmds: list[_CommandNode] = []

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


class _ChainNode(_Node):
    __slots__ = ("field", "node")

    def __init__(self, pos: int, node: _Node) -> None:
        super().__init__(pos)
        self.node = node
        self.field: list[str] = []

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, _PipeNode) else str(self.node)
        return s + "".join("." + f for f in self.field)


class _ActionNode(_Node):
    __slots__ = ("line", "pipe")

    def __init__(self, pos: int, line: int, pipe: _PipeNode) -> None:
        super().__init__(pos)
        self.line = line
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _BranchNode(_Node):
    """``{{if}}``, ``{{range}}`` or ``{{with}}`` (``kind``)."""

    __slots__ = ("else_list", "kind", "line", "list", "pipe")

    def __init__(
        self,
        kind: str,
        pos: int,
        line: int,
        pipe: _PipeNode,
        lst: _ListNode,
        else_list: _ListNode | None,
    ) -> None:
        super().__init__(pos)
        self.kind = kind
        self.line = line
        self.pipe = pipe
        self.list = lst
        self.else_list = else_list

    def __str__(self) -> str:
        s = "{{" + self.kind + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


class _BreakNode(_Node):
    __slots__ = ("line",)

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{break}}"


class _ContinueNode(_Node):
    __slots__ = ("line",)

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{continue}}"


class _EndNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class _ElseNode(_Node):
    __slots__ = ("line",)

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{else}}"


# ---------------------------------------------------------------------------------------------
# Parser (text/template/parse/parse.go)


class _ParseError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _Parser:
    """Go's recursive-descent parser over a pre-lexed token list.

    Go reports a parse error at the line of ``token[0]``, the token most recently taken from
    the lexer; ``self.hi`` tracks that token so lines match Go's.
    """

    def __init__(self, name: str, text: str, funcs: frozenset[str]) -> None:
        self.name = name
        self.funcs = funcs
        lexer = _Lexer(text)
        self.tokens: list[_Item] = []
        while True:
            item = lexer.next_item()
            self.tokens.append(item)
            if item.typ in (_I_EOF, _I_ERROR):
                break
        self.i = 0
        self.hi = 0
        self.vars: list[str] = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.stack_depth = 0

    # -- token stream --------------------------------------------------------------------

    def _tok(self, i: int) -> _Item:
        if i >= len(self.tokens):
            last = self.tokens[-1]
            return _Item(_I_EOF, last.pos, "EOF", last.line)
        self.hi = max(self.hi, i)
        return self.tokens[i]

    def next(self) -> _Item:
        t = self._tok(self.i)
        self.i += 1
        return t

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> _Item:
        return self._tok(self.i)

    def next_non_space(self) -> _Item:
        while True:
            t = self.next()
            if t.typ != _I_SPACE:
                return t

    def peek_non_space(self) -> _Item:
        t = self.next_non_space()
        self.backup()
        return t

    # -- errors --------------------------------------------------------------------------

    def errorf(self, msg: str) -> NoReturn:
        line = self._tok(self.hi).line
        raise _ParseError(f"template: {self.name}:{line}: {msg}", line)

    def expect(self, expected: int, context: str) -> _Item:
        t = self.next_non_space()
        if t.typ != expected:
            self.unexpected(t, context)
        return t

    def unexpected(self, token: _Item, context: str) -> NoReturn:
        if token.typ == _I_ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            self.errorf(f"{token}{extra}")
        self.errorf(f"unexpected {token} in {context}")

    # -- grammar -------------------------------------------------------------------------

    def parse(self) -> _ListNode:
        root = _ListNode(self.peek().pos)
        while self.peek().typ != _I_EOF:
            if self.peek().typ == _I_LEFT_DELIM:
                mark = self.i
                self.next()
                if self.next_non_space().typ == _I_DEFINE:
                    self.errorf("{{define}} is not supported")
                self.i = mark
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                self.errorf(f"unexpected {n}")
            root.nodes.append(n)
        return root

    def item_list(self) -> tuple[_ListNode, _Node]:
        lst = _ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != _I_EOF:
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> _Node:
        token = self.next_non_space()
        if token.typ == _I_TEXT:
            return _TextNode(token.pos, token.val)
        if token.typ == _I_LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        self.unexpected(token, "input")

    def action(self) -> _Node:
        token = self.next_non_space()
        typ = token.typ
        if typ == _I_BREAK:
            return self.break_control(token, "{{break}}")
        if typ == _I_CONTINUE:
            return self.break_control(token, "{{continue}}")
        if typ == _I_ELSE:
            return self.else_control()
        if typ == _I_END:
            return _EndNode(self.expect(_I_RIGHT_DELIM, "end").pos)
        if typ == _I_IF:
            return self.parse_control("if")
        if typ == _I_RANGE:
            return self.parse_control("range")
        if typ == _I_WITH:
            return self.parse_control("with")
        if typ in (_I_TEMPLATE, _I_BLOCK):
            self.errorf(f"{{{{{token.val}}}}} is not supported")
        self.backup()
        token = self.peek()
        return _ActionNode(token.pos, token.line, self.pipeline("command", _I_RIGHT_DELIM))

    def break_control(self, token: _Item, what: str) -> _Node:
        t = self.next_non_space()
        if t.typ != _I_RIGHT_DELIM:
            self.unexpected(t, what)
        if self.range_depth == 0:
            self.errorf(f"{what} outside {{{{range}}}}")
        if what == "{{break}}":
            return _BreakNode(token.pos, token.line)
        return _ContinueNode(token.pos, token.line)

    def else_control(self) -> _Node:
        peek = self.peek_non_space()
        if peek.typ in (_I_IF, _I_WITH):
            return _ElseNode(peek.pos, peek.line)
        token = self.expect(_I_RIGHT_DELIM, "else")
        return _ElseNode(token.pos, token.line)

    def parse_control(self, context: str) -> _BranchNode:
        nvars = len(self.vars)
        try:
            pipe = self.pipeline(context, _I_RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: _ListNode | None = None
            if isinstance(nxt, _ElseNode):
                if context == "if" and self.peek().typ == _I_IF:
                    self.next()
                    else_list = _ListNode(nxt.pos)
                    else_list.nodes.append(self.parse_control("if"))
                elif context == "with" and self.peek().typ == _I_WITH:
                    self.next()
                    else_list = _ListNode(nxt.pos)
                    else_list.nodes.append(self.parse_control("with"))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _EndNode):
                        self.errorf(f"expected end; found {nxt}")
            return _BranchNode(context, pipe.pos, pipe.line, pipe, lst, else_list)
        finally:
            del self.vars[nvars:]

    def pipeline(self, context: str, end: int) -> _PipeNode:
        token = self.peek_non_space()
        pipe = _PipeNode(token.pos, token.line)
        while True:  # "decls:" in Go
            v = self.peek_non_space()
            if v.typ != _I_VARIABLE:
                break
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ in (_I_ASSIGN, _I_DECLARE):
                pipe.is_assign = nxt.typ == _I_ASSIGN
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                break
            if nxt.typ == _I_CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (_I_VARIABLE, _I_RIGHT_DELIM, _I_RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            # Not a declaration: push back the variable (and the space after it).
            self._unread_to(v)
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in (
                _I_BOOL,
                _I_CHAR_CONSTANT,
                _I_COMPLEX,
                _I_DOT,
                _I_FIELD,
                _I_IDENTIFIER,
                _I_NUMBER,
                _I_NIL,
                _I_RAW_STRING,
                _I_STRING,
                _I_VARIABLE,
                _I_LEFT_PAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def _unread_to(self, token: _Item) -> None:
        while self.tokens[self.i - 1] is not token:
            self.i -= 1
        self.i -= 1

    def check_pipeline(self, pipe: _PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (_BoolNode, _DotNode, _NilNode, _NumberNode, _StringNode)):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> _CommandNode:
        cmd = _CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == _I_SPACE:
                continue
            if token.typ in (_I_RIGHT_DELIM, _I_RIGHT_PAREN):
                self.backup()
            elif token.typ != _I_PIPE:
                self.unexpected(token, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == _I_FIELD:
            chain = _ChainNode(self.peek().pos, node)
            while self.peek().typ == _I_FIELD:
                chain.field.append(self.next().val[1:])
            if isinstance(node, _FieldNode):
                return _FieldNode(chain.pos, node.ident + chain.field)
            if isinstance(node, _VariableNode):
                return _VariableNode(chain.pos, node.ident + chain.field)
            if isinstance(node, (_BoolNode, _StringNode, _NumberNode, _NilNode, _DotNode)):
                self.errorf(f"unexpected . after term {_go_quote(str(node))}")
            return chain
        return node

    def term(self) -> _Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == _I_IDENTIFIER:
            if token.val not in self.funcs:
                self.errorf(f"function {_go_quote(token.val)} not defined")
            return _IdentifierNode(token.pos, token.val)
        if typ == _I_DOT:
            return _DotNode(token.pos)
        if typ == _I_NIL:
            return _NilNode(token.pos)
        if typ == _I_VARIABLE:
            return self.use_var(token.pos, token.val)
        if typ == _I_FIELD:
            return _FieldNode(token.pos, [token.val[1:]])
        if typ == _I_BOOL:
            return _BoolNode(token.pos, token.val == "true")
        if typ in (_I_CHAR_CONSTANT, _I_COMPLEX, _I_NUMBER):
            return self.new_number(token)
        if typ == _I_LEFT_PAREN:
            if self.stack_depth >= 10000:
                self.errorf("max expression depth exceeded")
            self.stack_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", _I_RIGHT_PAREN)
            finally:
                self.stack_depth -= 1
        if typ in (_I_STRING, _I_RAW_STRING):
            try:
                text = _go_unquote(token.val)
            except _SyntaxError:
                self.errorf("invalid syntax")
            return _StringNode(token.pos, token.val, text)
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> _VariableNode:
        ident = name.split(".") if name != "$" else ["$"]
        if ident[0] not in self.vars:
            self.errorf(f"undefined variable {_go_quote(ident[0])}")
        return _VariableNode(pos, ident)

    def new_number(self, token: _Item) -> _NumberNode:
        text = token.val
        if token.typ == _I_CHAR_CONSTANT:
            try:
                ch, end = _unquote_char(text, 1, "'")
            except (_SyntaxError, IndexError):
                self.errorf("invalid syntax")
            if text[end:] != "'":
                self.errorf(f"malformed character constant: {text}")
            return _NumberNode(token.pos, text, _GoInt(ord(ch)))
        if token.typ == _I_COMPLEX or text.endswith("i"):
            body = text[:-1] if token.typ != _I_COMPLEX else text
            try:
                value: object = complex(body.replace("i", "j").replace("_", ""))
            except ValueError:
                self.errorf(f"illegal number syntax: {_go_quote(text)}")
            if token.typ != _I_COMPLEX:
                value = complex(0, float(body.replace("_", "")))
            return _NumberNode(token.pos, text, value)
        iv = _parse_go_int(text)
        if iv is not None:
            return _NumberNode(token.pos, text, _GoInt(iv))
        fv = _parse_go_float(text)
        if fv is None:
            self.errorf(f"illegal number syntax: {_go_quote(text)}")
        if not any(c in ".eEpP" for c in text):
            # It parsed as a float but looks like an integer: too large for an int64.
            self.errorf(f"integer overflow: {_go_quote(text)}")
        return _NumberNode(token.pos, text, fv)


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


# ---------------------------------------------------------------------------------------------
# Executor (text/template/exec.go)


class _ExecError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    __slots__ = ("funcs", "name", "node", "out", "text", "vars")

    def __init__(self, name: str, text: str, funcs: Mapping[str, _Func], out: list[str]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.out = out
        self.vars: list[tuple[str, object]] = []
        self.node: _Node | None = None

    # -- errors and variables ------------------------------------------------------------

    def at(self, node: _Node) -> None:
        self.node = node

    def errorf(self, msg: str) -> NoReturn:
        node = self.node
        if node is None:
            raise _ExecError(f"template: {self.name}: {msg}", 0)
        line, col = _location(self.text, node.pos)
        raise _ExecError(
            f"template: {self.name}:{line}:{col}: executing {_go_quote(self.name)} "
            f"at <{node}>: {msg}",
            line,
        )

    def set_var(self, name: str, value: object) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: object) -> None:
        i = len(self.vars) - n
        self.vars[i] = (self.vars[i][0], value)

    def var_value(self, name: str) -> object:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        self.errorf(f"undefined variable: {name}")

    # -- statements ----------------------------------------------------------------------

    def walk(self, dot: object, node: _Node) -> None:
        self.node = node
        if isinstance(node, _TextNode):
            self.out.append(node.text)
        elif isinstance(node, _ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.at(node)
                self.out.append("<no value>" if val is _INVALID else _sprint_v(val))
        elif isinstance(node, _ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, _BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, _BreakNode):
            raise _Break
        elif isinstance(node, _ContinueNode):
            raise _Continue
        else:  # pragma: no cover - the parser creates no other statement nodes
            self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, dot: object, node: _BranchNode) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            if _truth(val):
                self.walk(val if node.kind == "with" else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: object, r: _BranchNode) -> None:
        self.at(r)
        mark0 = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = len(self.vars)
            decl = r.pipe.decl

            def one(index: object, elem: object) -> None:
                if decl:
                    if r.pipe.is_assign:
                        self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
                    else:
                        self.set_top_var(1, elem)
                if len(decl) > 1:
                    if r.pipe.is_assign:
                        self.set_var(decl[1].ident[0], elem)
                    else:
                        self.set_top_var(2, index)
                try:
                    self.walk(elem, r.list)
                except _Continue:
                    pass
                finally:
                    del self.vars[mark:]

            ran = False
            try:
                if isinstance(val, (list, tuple)):
                    for i, e in enumerate(val):
                        ran = True
                        one(_GoInt(i), e)
                elif isinstance(val, Mapping):
                    for k, e in _sorted_items(val):
                        ran = True
                        one(k, e)
                elif isinstance(val, int) and not isinstance(val, bool):
                    if len(decl) > 1:
                        self.errorf(
                            f"can't use {_sprint_v(val)} to iterate over more than one variable"
                        )
                    for i in range(val):
                        ran = True
                        one(_INVALID, type(val)(i))
                elif val is not _INVALID:
                    self.errorf(f"range can't iterate over {_sprint_v(val)}")
            except _Break:
                return
            if not ran and r.else_list is not None:
                self.walk(dot, r.else_list)
        finally:
            del self.vars[mark0:]

    # -- expressions ---------------------------------------------------------------------

    def eval_pipeline(self, dot: object, pipe: _PipeNode) -> object:
        self.at(pipe)
        value: object = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            # Go digs into interface{} after every stage: a nil interface becomes invalid.
            if value is None:
                value = _INVALID
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.vars.append((var.ident[0], value))
        return value

    def not_a_function(self, args: Sequence[_Node] | None, final: object) -> None:
        if (args is not None and len(args) > 1) or final is not _NO_FINAL:
            first = args[0] if args else ""
            self.errorf(f"can't give argument to non-function {first}")

    def eval_command(self, dot: object, cmd: _CommandNode, final: object) -> object:
        first = cmd.args[0]
        if isinstance(first, _FieldNode):
            self.at(first)
            return self.eval_field_chain(dot, dot, first, first.ident, cmd.args, final)
        if isinstance(first, _ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, _IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _BoolNode):
            return first.val
        if isinstance(first, _DotNode):
            return dot
        if isinstance(first, _NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, _NumberNode):
            return first.value
        if isinstance(first, _StringNode):
            return first.text
        self.errorf(f"can't evaluate command {_go_quote(str(first))}")

    def eval_chain_node(
        self, dot: object, chain: _ChainNode, args: Sequence[_Node] | None, final: object
    ) -> object:
        self.at(chain)
        if isinstance(chain.node, _NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.field, args, final)

    def eval_variable_node(
        self, dot: object, var: _VariableNode, args: Sequence[_Node] | None, final: object
    ) -> object:
        self.at(var)
        value = self.var_value(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.ident[1:], args, final)

    def eval_field_chain(
        self,
        dot: object,
        receiver: object,
        node: _Node,
        ident: Sequence[str],
        args: Sequence[_Node] | None,
        final: object,
    ) -> object:
        for name in ident[:-1]:
            receiver = self.eval_field(name, None, _NO_FINAL, receiver)
        return self.eval_field(ident[-1], args, final, receiver)

    def eval_field(
        self, name: str, args: Sequence[_Node] | None, final: object, receiver: object
    ) -> object:
        if receiver is _INVALID:
            return _INVALID
        if receiver is None:
            self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Mapping):
            if (args is not None and len(args) > 1) or final is not _NO_FINAL:
                self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, _INVALID)
        self.errorf(f"can't evaluate field {name} in type interface {{}}")

    def eval_function(
        self,
        dot: object,
        node: _IdentifierNode,
        cmd: _Node,
        args: Sequence[_Node] | None,
        final: object,
    ) -> object:
        self.at(node)
        f = self.funcs[node.ident]
        return self.call(dot, f, cmd, node.ident, args, final)

    def call(
        self,
        dot: object,
        f: _Func,
        node: _Node,
        name: str,
        args: Sequence[_Node] | None,
        final: object,
    ) -> object:
        argnodes = list(args[1:]) if args is not None else []
        num_in = len(argnodes) + (0 if final is _NO_FINAL else 1)
        if f.variadic:
            if num_in < f.nfixed:
                self.errorf(
                    f"wrong number of args for {name}: want at least {f.nfixed} got {len(argnodes)}"
                )
        elif num_in != f.nfixed:
            self.errorf(f"wrong number of args for {name}: want {f.nfixed} got {num_in}")
        if name in ("and", "or") and f.fn is _b_and_or:
            v: object = None
            for a in argnodes:
                v = self.eval_arg(dot, "value", a)
                if _truth(v) == (name == "or"):
                    return v
            if final is not _NO_FINAL:
                v = self.validate(final, "value")
            return v
        argv: list[object] = []
        for i, a in enumerate(argnodes):
            argv.append(self.eval_arg(dot, f.types[i] if i < f.nfixed else f.vtype, a))
        if final is not _NO_FINAL:
            if f.variadic:
                t = f.vtype if num_in - 1 >= f.nfixed else f.types[num_in - 1]
            else:
                t = f.types[-1]
            argv.append(self.validate(final, t))
        try:
            return f.fn(*argv)
        except _FuncError as e:
            self.at(node)
            self.errorf(f"error calling {name}: {e}")

    def validate(self, value: object, typ: str | None) -> object:
        if typ is None:
            return value
        if value is _INVALID:
            if typ == "value":
                return None
            self.errorf(f"invalid value; expected {typ}")
        if typ == "value" or (isinstance(value, str) and not isinstance(value, HTML)):
            return value
        got = "interface {}" if value is None else _go_type(value)
        self.errorf(f"wrong type for value; expected {typ}; got {got}")

    def eval_arg(self, dot: object, typ: str | None, n: _Node) -> object:
        self.at(n)
        if isinstance(n, _DotNode):
            return self.validate(dot, typ)
        if isinstance(n, _NilNode):
            if typ == "value":
                return None
            self.errorf(f"cannot assign nil to {typ}")
        if isinstance(n, _FieldNode):
            v = self.eval_field_chain(dot, dot, n, n.ident, [n], _NO_FINAL)
            return self.validate(v, typ)
        if isinstance(n, _VariableNode):
            return self.validate(self.eval_variable_node(dot, n, None, _NO_FINAL), typ)
        if isinstance(n, _PipeNode):
            return self.validate(self.eval_pipeline(dot, n), typ)
        if isinstance(n, _IdentifierNode):
            return self.validate(self.eval_function(dot, n, n, None, _NO_FINAL), typ)
        if isinstance(n, _ChainNode):
            return self.validate(self.eval_chain_node(dot, n, None, _NO_FINAL), typ)
        if typ == "string":
            if isinstance(n, _StringNode):
                return n.text
            self.errorf(f"expected string; found {n}")
        if isinstance(n, _BoolNode):
            return n.val
        if isinstance(n, _NumberNode):
            return n.value
        if isinstance(n, _StringNode):
            return n.text
        self.errorf(f"can't handle assignment of {n} to empty interface argument")


def _location(text: str, pos: int) -> tuple[int, int]:
    """Go's ``ErrorContext``: line, and byte column within that line."""
    before = text[:pos]
    nl = before.rfind("\n")
    line = 1 + before.count("\n")
    col = len(before[nl + 1 :].encode("utf-8", "surrogatepass"))
    return line, col


# ---------------------------------------------------------------------------------------------
# html/template: escaping contexts (context.go)

(
    _S_TEXT,
    _S_TAG,
    _S_ATTR_NAME,
    _S_AFTER_NAME,
    _S_BEFORE_VALUE,
    _S_HTML_CMT,
    _S_RCDATA,
    _S_ATTR,
    _S_URL,
    _S_SRCSET,
    _S_JS,
    _S_JS_DQ_STR,
    _S_JS_SQ_STR,
    _S_JS_TMPL_LIT,
    _S_JS_REGEXP,
    _S_JS_BLOCK_CMT,
    _S_JS_LINE_CMT,
    _S_JS_HTML_OPEN_CMT,
    _S_JS_HTML_CLOSE_CMT,
    _S_CSS,
    _S_CSS_DQ_STR,
    _S_CSS_SQ_STR,
    _S_CSS_DQ_URL,
    _S_CSS_SQ_URL,
    _S_CSS_URL,
    _S_CSS_BLOCK_CMT,
    _S_CSS_LINE_CMT,
    _S_ERROR,
    _S_DEAD,
) = range(29)

_STATE_NAMES: Final = _words(
    "stateText stateTag stateAttrName stateAfterName stateBeforeValue stateHTMLCmt stateRCDATA "
    "stateAttr stateURL stateSrcset stateJS stateJSDqStr stateJSSqStr stateJSTmplLit "
    "stateJSRegexp stateJSBlockCmt stateJSLineCmt stateJSHTMLOpenCmt stateJSHTMLCloseCmt "
    "stateCSS stateCSSDqStr stateCSSSqStr stateCSSDqURL stateCSSSqURL stateCSSURL "
    "stateCSSBlockCmt stateCSSLineCmt stateError stateDead"
)

_D_NONE, _D_DOUBLE_QUOTE, _D_SINGLE_QUOTE, _D_SPACE_OR_TAG_END = range(4)
_DELIM_NAMES: Final = ("delimNone", "delimDoubleQuote", "delimSingleQuote", "delimSpaceOrTagEnd")
_U_NONE, _U_PRE_QUERY, _U_QUERY_OR_FRAG, _U_UNKNOWN = range(4)
_URL_PART_NAMES: Final = ("urlPartNone", "urlPartPreQuery", "urlPartQueryOrFrag", "urlPartUnknown")
_J_REGEXP, _J_DIV_OP, _J_UNKNOWN = range(3)
_JS_CTX_NAMES: Final = ("jsCtxRegexp", "jsCtxDivOp", "jsCtxUnknown")
_A_NONE, _A_SCRIPT, _A_SCRIPT_TYPE, _A_STYLE, _A_URL, _A_SRCSET = range(6)
_ATTR_NAMES: Final = (
    "attrNone",
    "attrScript",
    "attrScriptType",
    "attrStyle",
    "attrURL",
    "attrSrcset",
)
_E_NONE, _E_SCRIPT, _E_STYLE, _E_TEXTAREA, _E_TITLE = range(5)
_ELEMENT_NAMES: Final = _words(
    "elementNone elementScript elementStyle elementTextarea elementTitle"
)


class _EscError:
    """html/template's ``*Error``: mutable, compared by identity like Go's pointer."""

    __slots__ = ("desc", "line", "node")

    def __init__(self, node: _Node | None, line: int, desc: str) -> None:
        self.node = node
        self.line = line
        self.desc = desc

    def __str__(self) -> str:
        return self.desc


class _Ctx(NamedTuple):
    state: int = _S_TEXT
    delim: int = _D_NONE
    url_part: int = _U_NONE
    js_ctx: int = _J_REGEXP
    attr: int = _A_NONE
    element: int = _E_NONE
    brace: tuple[int, ...] = ()
    err: _EscError | None = None

    def __str__(self) -> str:
        names = (
            _STATE_NAMES[self.state],
            _DELIM_NAMES[self.delim],
            _URL_PART_NAMES[self.url_part],
            _JS_CTX_NAMES[self.js_ctx],
            _ATTR_NAMES[self.attr],
            _ELEMENT_NAMES[self.element],
            "<nil>" if self.err is None else self.err.desc,
        )
        return "{" + " ".join(names) + "}"


def _ctx_eq(a: _Ctx, b: _Ctx) -> bool:
    # Go's context.eq ignores the template-literal brace stack.
    return a[:6] == b[:6] and a.err is b.err


def _err_ctx(node: _Node | None, line: int, desc: str) -> _Ctx:
    return _Ctx(_S_ERROR, err=_EscError(node, line, desc))


_COMMENT_STATES: Final = frozenset(
    {
        _S_HTML_CMT,
        _S_JS_BLOCK_CMT,
        _S_JS_LINE_CMT,
        _S_JS_HTML_OPEN_CMT,
        _S_JS_HTML_CLOSE_CMT,
        _S_CSS_BLOCK_CMT,
        _S_CSS_LINE_CMT,
    }
)
_IN_TAG_STATES: Final = frozenset({_S_TAG, _S_ATTR_NAME, _S_AFTER_NAME, _S_BEFORE_VALUE, _S_ATTR})
_SCRIPT_LITERAL_STATES: Final = frozenset(
    {_S_JS_DQ_STR, _S_JS_SQ_STR, _S_JS_TMPL_LIT, _S_JS_REGEXP}
)


# -- content types and attributes (content.go, attr.go) ---------------------------------------

(
    _CT_PLAIN,
    _CT_CSS,
    _CT_HTML,
    _CT_HTML_ATTR,
    _CT_JS,
    _CT_JS_STR,
    _CT_URL,
    _CT_SRCSET,
    _CT_UNSAFE,
) = range(9)

_ATTR_TYPE_MAP: Final[dict[str, int]] = {
    **dict.fromkeys(
        _words(
            "accept alt autocomplete autofocus autoplay border checked class cols colspan "
            "contenteditable contextmenu controls coords datetime default dir dirname disabled "
            "draggable dropzone for formtarget headers height hidden high hreflang id ismap kind "
            "label lang list loop low max maxlength media mediagroup min multiple name open "
            "optimum placeholder preload pubdate radiogroup readonly required reversed rows "
            "rowspan spellcheck scope scoped seamless selected shape size sizes span srclang "
            "start step tabindex target title width wrap"
        ),
        _CT_PLAIN,
    ),
    **dict.fromkeys(
        _words(
            "action archive background cite classid codebase data formaction href icon longdesc "
            "manifest poster profile src usemap xmlns"
        ),
        _CT_URL,
    ),
    # Attributes that change how other content or the request is interpreted.
    **dict.fromkeys(
        _words(
            "accept-charset async challenge charset content crossorigin defer enctype form "
            "formenctype formmethod formnovalidate http-equiv keytype language method novalidate "
            "pattern rel sandbox type value"
        ),
        _CT_UNSAFE,
    ),
    "srcdoc": _CT_HTML,
    "srcset": _CT_SRCSET,
    "style": _CT_CSS,
}


def _attr_type(name: str) -> int:
    if name.startswith("data-"):
        name = name[5:]
    elif ":" in name:
        prefix, _, rest = name.partition(":")
        if prefix == "xmlns":
            return _CT_URL
        name = rest
    t = _ATTR_TYPE_MAP.get(name)
    if t is not None:
        return t
    if name.startswith("on"):
        return _CT_JS
    if "src" in name or "uri" in name or "url" in name:
        return _CT_URL
    return _CT_PLAIN


# -- transitions (transition.go) --------------------------------------------------------------

_ELEMENT_CONTENT_TYPE: Final = (_S_TEXT, _S_JS, _S_CSS, _S_RCDATA, _S_RCDATA)
_ATTR_START_STATES: Final = (_S_ATTR, _S_JS, _S_ATTR, _S_CSS, _S_URL, _S_SRCSET)
_ELEMENT_BY_NAME: Final = {
    "script": _E_SCRIPT,
    "style": _E_STYLE,
    "textarea": _E_TEXTAREA,
    "title": _E_TITLE,
}
_SPECIAL_TAG_END_MARKERS: Final = ("", "script", "style", "textarea", "title")
_TAG_END_SEPARATORS: Final = "> \t\n\f/"

_Transition = Callable[[_Ctx, str], tuple[_Ctx, int]]


def _ascii_alpha(c: str) -> bool:
    return ("A" <= c <= "Z") or ("a" <= c <= "z")


def _ascii_alnum(c: str) -> bool:
    return _ascii_alpha(c) or ("0" <= c <= "9")


def _eat_white_space(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t\n\f\r":
        i += 1
    return i


def _eat_tag_name(s: str, i: int) -> tuple[int, int]:
    if i == len(s) or not _ascii_alpha(s[i]):
        return i, _E_NONE
    j = i + 1
    while j < len(s):
        x = s[j]
        if _ascii_alnum(x):
            j += 1
            continue
        if x in ":-" and j + 1 < len(s) and _ascii_alnum(s[j + 1]):
            j += 2
            continue
        break
    return j, _ELEMENT_BY_NAME.get(s[i:j].lower(), _E_NONE)


def _eat_attr_name(s: str, i: int) -> tuple[int, _EscError | None]:
    for j in range(i, len(s)):
        c = s[j]
        if c in " \t\n\f\r=>":
            return j, None
        if c in "'\"<":
            return -1, _EscError(
                None, 0, f"{_go_quote(c)} in attribute name: {_go_quote_trunc(s, 32)}"
            )
    return len(s), None


def _t_text(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    k = 0
    n = len(s)
    while True:
        i = s.find("<", k)
        if i < 0 or i + 1 == n:
            return c, n
        if s.startswith("<!--", i):
            return _Ctx(_S_HTML_CMT), i + 4
        i += 1
        end = False
        if s[i] == "/":
            if i + 1 == n:
                return c, n
            end, i = True, i + 1
        j, e = _eat_tag_name(s, i)
        if j != i:
            return _Ctx(_S_TAG, element=_E_NONE if end else e), j
        k = j


def _t_tag(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i = _eat_white_space(s, 0)
    if i == len(s):
        return c, len(s)
    if s[i] == ">":
        return _Ctx(_ELEMENT_CONTENT_TYPE[c.element], element=c.element), i + 1
    j, err = _eat_attr_name(s, i)
    if err is not None:
        return _Ctx(_S_ERROR, err=err), len(s)
    if i == j:
        return _err_ctx(
            None, 0, f"expected space, attr name, or end of tag, but got {_go_quote(s[i:])}"
        ), len(s)
    attr_name = s[i:j].lower()
    attr = _A_NONE
    if c.element == _E_SCRIPT and attr_name == "type":
        attr = _A_SCRIPT_TYPE
    else:
        attr = {
            _CT_URL: _A_URL,
            _CT_CSS: _A_STYLE,
            _CT_JS: _A_SCRIPT,
            _CT_SRCSET: _A_SRCSET,
        }.get(_attr_type(attr_name), _A_NONE)
    state = _S_ATTR_NAME if j == len(s) else _S_AFTER_NAME
    return _Ctx(state, element=c.element, attr=attr), j


def _t_attr_name(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i, err = _eat_attr_name(s, 0)
    if err is not None:
        return _Ctx(_S_ERROR, err=err), len(s)
    if i != len(s):
        c = c._replace(state=_S_AFTER_NAME)
    return c, i


def _t_after_name(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i = _eat_white_space(s, 0)
    if i == len(s):
        return c, len(s)
    if s[i] != "=":
        return c._replace(state=_S_TAG), i
    return c._replace(state=_S_BEFORE_VALUE), i + 1


def _t_before_value(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i = _eat_white_space(s, 0)
    if i == len(s):
        return c, len(s)
    delim = _D_SPACE_OR_TAG_END
    if s[i] == "'":
        delim, i = _D_SINGLE_QUOTE, i + 1
    elif s[i] == '"':
        delim, i = _D_DOUBLE_QUOTE, i + 1
    return c._replace(state=_ATTR_START_STATES[c.attr], delim=delim), i


def _t_html_cmt(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i = s.find("-->")
    if i != -1:
        return _Ctx(), i + 3
    return c, len(s)


def _index_tag_end(s: str, tag: str) -> int:
    res = 0
    while s:
        i = s.find("</")
        if i == -1:
            return -1
        s = s[i + 2 :]
        if len(tag) <= len(s) and s[: len(tag)].lower() == tag:
            s = s[len(tag) :]
            if s and s[0] in _TAG_END_SEPARATORS:
                return res + i
            res += len(tag)
        res += i + 2
    return -1


def _t_special_tag_end(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    if c.element != _E_NONE:
        # A "</script" inside a JS string or comment does not end the element: it is
        # escaped instead (escapeText), as the WHATWG parser would otherwise be confused.
        if c.element == _E_SCRIPT and (
            c.state in _SCRIPT_LITERAL_STATES or c.state in _COMMENT_STATES
        ):
            return c, len(s)
        i = _index_tag_end(s, _SPECIAL_TAG_END_MARKERS[c.element])
        if i != -1:
            return _Ctx(), i
    return c, len(s)


def _t_attr(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    return c, len(s)


def _t_url(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    if "#" in s or "?" in s:
        c = c._replace(url_part=_U_QUERY_OR_FRAG)
    elif len(s) != _eat_white_space(s, 0) and c.url_part == _U_NONE:
        c = c._replace(url_part=_U_PRE_QUERY)
    return c, len(s)


_JS_WHITESPACE: Final = (
    "\f\n\r\t\v\u0020\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_REGEXP_PRECEDER_KEYWORDS: Final = frozenset(
    _words("break case continue delete do else finally in instanceof return throw try typeof void")
)


def _is_js_ident_part(c: str) -> bool:
    return c == "$" or c == "_" or ("0" <= c <= "9") or ("A" <= c <= "Z") or ("a" <= c <= "z")


def _next_js_ctx(s: str, preceding: int) -> int:
    s = s.rstrip(_JS_WHITESPACE)
    n = len(s)
    if n == 0:
        return preceding
    c = s[-1]
    if c in "+-":
        start = n - 1
        while start > 0 and s[start - 1] == c:
            start -= 1
        return _J_REGEXP if (n - start) & 1 == 1 else _J_DIV_OP
    if c == ".":
        if n != 1 and "0" <= s[n - 2] <= "9":
            return _J_DIV_OP
        return _J_REGEXP
    if c in ",<>=*%&|^?!~([:;{}":
        return _J_REGEXP
    j = n
    while j > 0 and _is_js_ident_part(s[j - 1]):
        j -= 1
    if s[j:] in _REGEXP_PRECEDER_KEYWORDS:
        return _J_REGEXP
    return _J_DIV_OP


_JS_STOP_RE: Final = re.compile(r"[\"`'/{}<\-#]")


def _t_js(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    m = _JS_STOP_RE.search(s)
    if m is None:
        return c._replace(js_ctx=_next_js_ctx(s, c.js_ctx)), len(s)
    i = m.start()
    c = c._replace(js_ctx=_next_js_ctx(s[:i], c.js_ctx))
    ch = s[i]
    if ch == '"':
        c = c._replace(state=_S_JS_DQ_STR, js_ctx=_J_REGEXP)
    elif ch == "'":
        c = c._replace(state=_S_JS_SQ_STR, js_ctx=_J_REGEXP)
    elif ch == "`":
        c = c._replace(state=_S_JS_TMPL_LIT, js_ctx=_J_REGEXP)
    elif ch == "/":
        if i + 1 < len(s) and s[i + 1] == "/":
            c, i = c._replace(state=_S_JS_LINE_CMT), i + 1
        elif i + 1 < len(s) and s[i + 1] == "*":
            c, i = c._replace(state=_S_JS_BLOCK_CMT), i + 1
        elif c.js_ctx == _J_REGEXP:
            c = c._replace(state=_S_JS_REGEXP)
        elif c.js_ctx == _J_DIV_OP:
            c = c._replace(js_ctx=_J_REGEXP)
        else:
            return _err_ctx(
                None,
                0,
                f"'/' could start a division or regexp: {_go_quote_trunc(s[i:], 32)}",
            ), len(s)
    elif ch == "<":
        if s.startswith("<!--", i):
            c, i = c._replace(state=_S_JS_HTML_OPEN_CMT), i + 3
    elif ch == "-":
        if s.startswith("-->", i):
            c, i = c._replace(state=_S_JS_HTML_CLOSE_CMT), i + 2
    elif ch == "#":
        if i + 1 < len(s) and s[i + 1] == "!":
            c, i = c._replace(state=_S_JS_LINE_CMT), i + 1
    elif ch == "{":
        if not c.brace:
            return c, i + 1
        c = c._replace(brace=(*c.brace[:-1], c.brace[-1] + 1))
    elif ch == "}":
        if not c.brace:
            return c, i + 1
        depth = c.brace[-1] - 1
        if depth >= 0:
            return c._replace(brace=(*c.brace[:-1], depth)), i + 1
        c = c._replace(brace=c.brace[:-1], state=_S_JS_TMPL_LIT)
    return c, i + 1


_JS_TMPL_STOP_RE: Final = re.compile(r"[`\\$]")


def _t_js_tmpl(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    k = 0
    n = len(s)
    while True:
        m = _JS_TMPL_STOP_RE.search(s, k)
        if m is None:
            break
        i = m.start()
        ch = s[i]
        if ch == "\\":
            i += 1
            if i == n:
                return _err_ctx(
                    None, 0, f"unfinished escape sequence in JS string: {_go_quote(s)}"
                ), n
        elif ch == "$":
            if n >= i + 2 and s[i + 1] == "{":
                return c._replace(brace=(*c.brace, 0), state=_S_JS), i + 2
        else:
            return c._replace(state=_S_JS), i + 1
        k = i + 1
    return c, n


def _t_js_delimited(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    specials = '\\"'
    if c.state == _S_JS_SQ_STR:
        specials = "\\'"
    elif c.state == _S_JS_REGEXP:
        specials = "\\/[]"
    k = 0
    n = len(s)
    in_charset = False
    while True:
        i = k
        while i < n and s[i] not in specials:
            i += 1
        if i >= n:
            break
        ch = s[i]
        if ch == "\\":
            i += 1
            if i == n:
                return _err_ctx(
                    None, 0, f"unfinished escape sequence in JS string: {_go_quote(s)}"
                ), n
        elif ch == "[":
            in_charset = True
        elif ch == "]":
            in_charset = False
        elif ch == "/":
            # "</script" inside a regexp literal does not end it; escapeText escapes it.
            if i > 0 and i + 7 <= n and s[i - 1 : i + 7].lower() == "</script":
                i += 1
            elif not in_charset:
                return c._replace(state=_S_JS, js_ctx=_J_DIV_OP), i + 1
        elif not in_charset:
            return c._replace(state=_S_JS, js_ctx=_J_DIV_OP), i + 1
        k = i + 1
    if in_charset:
        return _err_ctx(None, 0, f"unfinished JS regexp charset: {_go_quote(s)}"), n
    return c, n


def _t_block_cmt(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    i = s.find("*/")
    if i == -1:
        return c, len(s)
    return c._replace(state=_S_JS if c.state == _S_JS_BLOCK_CMT else _S_CSS), i + 2


def _t_line_cmt(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    if c.state == _S_CSS_LINE_CMT:
        terminators, end_state = "\n\f\r", _S_CSS
    else:
        terminators, end_state = "\n\r\u2028\u2029", _S_JS
    for i, ch in enumerate(s):
        if ch in terminators:
            # The line terminator is not part of the comment.
            return c._replace(state=end_state), i
    return c, len(s)


def _is_css_nmchar(r: str) -> bool:
    o = ord(r)
    return (
        ("a" <= r <= "z")
        or ("A" <= r <= "Z")
        or ("0" <= r <= "9")
        or r in "-_"
        or 0x80 <= o <= 0xD7FF
        or 0xE000 <= o <= 0xFFFD
        or 0x10000 <= o <= 0x10FFFF
    )


def _ends_with_css_keyword(b: str, kw: str) -> bool:
    i = len(b) - len(kw)
    if i < 0:
        return False
    if i != 0 and _is_css_nmchar(b[i - 1]):
        return False
    return b[i:].lower() == kw


def _t_css(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    k = 0
    n = len(s)
    while True:
        i = k
        while i < n and s[i] not in "(\"'/":
            i += 1
        if i >= n:
            return c, n
        ch = s[i]
        if ch == "(":
            p = s[:i].rstrip("\t\n\f\r ")
            if _ends_with_css_keyword(p, "url"):
                j = n - len(s[i + 1 :].lstrip("\t\n\f\r "))
                if j != n and s[j] == '"':
                    return c._replace(state=_S_CSS_DQ_URL), j + 1
                if j != n and s[j] == "'":
                    return c._replace(state=_S_CSS_SQ_URL), j + 1
                return c._replace(state=_S_CSS_URL), j
        elif ch == "/":
            if i + 1 < n:
                if s[i + 1] == "/":
                    return c._replace(state=_S_CSS_LINE_CMT), i + 2
                if s[i + 1] == "*":
                    return c._replace(state=_S_CSS_BLOCK_CMT), i + 2
        elif ch == '"':
            return c._replace(state=_S_CSS_DQ_STR), i + 1
        else:
            return c._replace(state=_S_CSS_SQ_STR), i + 1
        k = i + 1


def _is_hex(c: str) -> bool:
    return c in "0123456789abcdefABCDEF" and c != ""


def _decode_css(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    while s:
        i = s.find("\\")
        if i == -1:
            i = len(s)
        out.append(s[:i])
        s = s[i:]
        if len(s) < 2:
            break
        if _is_hex(s[1]):
            j = 2
            while j < len(s) and j < 7 and _is_hex(s[j]):
                j += 1
            r = int(s[1:j], 16)
            if r > 0x10FFFF:
                r, j = r // 16, j - 1
            out.append(chr(r) if not 0xD800 <= r <= 0xDFFF else "\ufffd")
            s = s[j:]
            # One optional white space after a hex escape belongs to the escape.
            if s[:2] == "\r\n":
                s = s[2:]
            elif s[:1] in ("\t", "\n", "\f", " ", "\r") and s:
                s = s[1:]
        else:
            out.append(s[1])
            s = s[2:]
    return "".join(out)


def _t_css_str(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    if c.state in (_S_CSS_DQ_STR, _S_CSS_DQ_URL):
        end_and_esc = '\\"'
    elif c.state in (_S_CSS_SQ_STR, _S_CSS_SQ_URL):
        end_and_esc = "\\'"
    else:
        end_and_esc = "\\\t\n\f\r )"
    k = 0
    n = len(s)
    while True:
        i = k
        while i < n and s[i] not in end_and_esc:
            i += 1
        if i >= n:
            c, nread = _t_url(c, _decode_css(s[k:]))
            return c, k + nread
        if s[i] == "\\":
            i += 1
            if i == n:
                return _err_ctx(
                    None, 0, f"unfinished escape sequence in CSS string: {_go_quote(s)}"
                ), n
        else:
            return c._replace(state=_S_CSS), i + 1
        c, _ = _t_url(c, _decode_css(s[: i + 1]))
        k = i + 1


def _t_error(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    return c, len(s)


_TRANSITIONS: Final[tuple[_Transition, ...]] = (
    _t_text,  # stateText
    _t_tag,
    _t_attr_name,
    _t_after_name,
    _t_before_value,
    _t_html_cmt,
    _t_special_tag_end,  # stateRCDATA
    _t_attr,
    _t_url,
    _t_url,  # stateSrcset
    _t_js,
    _t_js_delimited,
    _t_js_delimited,
    _t_js_tmpl,
    _t_js_delimited,  # stateJSRegexp
    _t_block_cmt,
    _t_line_cmt,
    _t_line_cmt,
    _t_line_cmt,
    _t_css,
    _t_css_str,
    _t_css_str,
    _t_css_str,
    _t_css_str,
    _t_css_str,
    _t_block_cmt,
    _t_line_cmt,
    _t_error,
    _t_error,  # stateDead: never transitioned through
)

_DELIM_ENDS: Final = ("", '"', "'", " \t\n\f\r>")
_JS_MIME_TYPES: Final = frozenset(
    _words(
        "application/ecmascript application/javascript application/json application/ld+json "
        "application/x-ecmascript application/x-javascript module text/ecmascript text/javascript "
        "text/javascript1.0 text/javascript1.1 text/javascript1.2 text/javascript1.3 "
        "text/javascript1.4 text/javascript1.5 text/jscript text/livescript text/x-ecmascript "
        "text/x-javascript"
    )
)


def _is_js_type(mime: str) -> bool:
    return mime.partition(";")[0].lower().strip() in _JS_MIME_TYPES


def _context_after_text(c: _Ctx, s: str) -> tuple[_Ctx, int]:
    if c.delim == _D_NONE:
        c1, i = _t_special_tag_end(c, s)
        if i == 0:
            return c1, 0
        return _TRANSITIONS[c.state](c, s[:i])
    ends = _DELIM_ENDS[c.delim]
    i = 0
    n = len(s)
    while i < n and s[i] not in ends:
        i += 1
    if c.delim == _D_SPACE_OR_TAG_END:
        for j in range(i):
            if s[j] in "\"'<=`":
                return _err_ctx(
                    None, 0, f"{_go_quote(s[j])} in unquoted attr: {_go_quote(s[:i])}"
                ), n
    if i == n:
        # Still inside the attribute: run the value's own grammar on the decoded text so
        # that onclick="alert(&quot;x&quot;)" is seen as a JS string.
        u = _stdhtml.unescape(s)
        while u:
            c1, i1 = _TRANSITIONS[c.state](c, u)
            if i1 == 0 and c1 == c:  # pragma: no cover - defensive, Go would loop
                break
            c, u = c1, u[i1:]
        return c, n
    element = c.element
    if (
        c.state == _S_ATTR
        and c.element == _E_SCRIPT
        and c.attr == _A_SCRIPT_TYPE
        and not _is_js_type(s[:i])
    ):
        element = _E_NONE
    if c.delim != _D_SPACE_OR_TAG_END:
        i += 1
    return _Ctx(_S_TAG, element=element), i


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


# ---------------------------------------------------------------------------------------------
# The escape pass (escape.go)

_PREDEFINED_ESCAPERS: Final = frozenset({"html", "urlquery"})
_EQUIV_ESCAPERS: Final = {
    "_html_template_attrescaper": "html",
    "_html_template_htmlescaper": "html",
    "_html_template_rcdataescaper": "html",
    "_html_template_urlescaper": "urlquery",
    "_html_template_urlnormalizer": "urlquery",
}
_REDUNDANT_FUNCS: Final = {
    "_html_template_commentescaper": frozenset(
        {"_html_template_attrescaper", "_html_template_htmlescaper"}
    ),
    "_html_template_cssescaper": frozenset({"_html_template_attrescaper"}),
    "_html_template_jsregexpescaper": frozenset({"_html_template_attrescaper"}),
    "_html_template_jsstrescaper": frozenset({"_html_template_attrescaper"}),
    "_html_template_jstmpllitescaper": frozenset({"_html_template_attrescaper"}),
    "_html_template_urlescaper": frozenset({"_html_template_urlnormalizer"}),
}


def _normalize_esc_fn(e: str) -> str:
    return _EQUIV_ESCAPERS.get(e, e)


def _first_ident(cmd: _CommandNode) -> str | None:
    a = cmd.args[0]
    return a.ident if isinstance(a, _IdentifierNode) else None


def _new_ident_cmd(name: str, pos: int) -> _CommandNode:
    cmd = _CommandNode(pos)
    cmd.args.append(_IdentifierNode(pos, name))
    return cmd


def _append_cmd(cmds: list[_CommandNode], cmd: _CommandNode) -> list[_CommandNode]:
    if cmds:
        last, nxt = _first_ident(cmds[-1]), _first_ident(cmd)
        if last is not None and nxt is not None and nxt in _REDUNDANT_FUNCS.get(last, ()):
            return cmds
    return [*cmds, cmd]


def _ensure_pipeline_contains(p: _PipeNode, s: list[str]) -> None:
    if not s:
        return
    n = len(p.cmds)
    if n > 0:
        last = p.cmds[-1]
        esc = _first_ident(last)
        if esc is not None and esc in _PREDEFINED_ESCAPERS:
            if n == 1 and len(last.args) > 1:
                # {{html .x .y}} becomes {{_eval_args_ .x .y | html}} so that html can merge
                # with the contextual escapers below.
                last.args[0] = _IdentifierNode(last.args[0].pos, "_eval_args_")
                p.cmds = _append_cmd(p.cmds, _new_ident_cmd(esc, p.pos))
                n += 1
            dup = False
            for i, e in enumerate(s):
                if _normalize_esc_fn(esc) == _normalize_esc_fn(e):
                    s[i] = esc
                    dup = True
            if dup:
                n -= 1
    new = p.cmds[:n]
    inserted = {_normalize_esc_fn(ident) for c in new if (ident := _first_ident(c)) is not None}
    for name in s:
        if _normalize_esc_fn(name) not in inserted:
            new = _append_cmd(new, _new_ident_cmd(name, p.pos))
    p.cmds = new


def _nudge(c: _Ctx) -> _Ctx:
    if c.state == _S_TAG:
        return c._replace(state=_S_ATTR_NAME)
    if c.state == _S_BEFORE_VALUE:
        return c._replace(state=_ATTR_START_STATES[c.attr], delim=_D_SPACE_OR_TAG_END, attr=_A_NONE)
    if c.state == _S_AFTER_NAME:
        return c._replace(state=_S_ATTR_NAME, attr=_A_NONE)
    return c


def _join(a: _Ctx, b: _Ctx, node: _Node, node_name: str) -> _Ctx:
    if a.state == _S_ERROR:
        return a
    if b.state == _S_ERROR:
        return b
    if a.state == _S_DEAD:
        return b
    if b.state == _S_DEAD:
        return a
    if _ctx_eq(a, b):
        return a
    c = a._replace(url_part=b.url_part)
    if _ctx_eq(c, b):
        return c._replace(url_part=_U_UNKNOWN)
    c = a._replace(js_ctx=b.js_ctx)
    if _ctx_eq(c, b):
        return c._replace(js_ctx=_J_UNKNOWN)
    # A nudged context may join an unnudged one: <p title={{if .C}}{{.}}{{end}}
    c, d = _nudge(a), _nudge(b)
    if not (_ctx_eq(c, a) and _ctx_eq(d, b)):
        e = _join(c, d, node, node_name)
        if e.state != _S_ERROR:
            return e
    return _err_ctx(node, 0, f"{{{{{node_name}}}}} branches end in different contexts: {a}, {b}")


class _RangeCtx:
    __slots__ = ("breaks", "continues", "outer")

    def __init__(self, outer: _RangeCtx | None) -> None:
        self.outer = outer
        self.breaks: list[tuple[_Ctx, _Node]] = []
        self.continues: list[tuple[_Ctx, _Node]] = []


_SPECIAL_SCRIPT_TAG_RE: Final = re.compile(r"(?i)<(script|/script|!--)")


class _Escaper:
    """Computes, for every action, the escaper chain its context needs, and the rewritten
    static text (comments dropped, stray ``<`` escaped).  Edits are kept aside so that the
    speculative second pass over a range body can be thrown away, as in Go."""

    def __init__(self) -> None:
        self.action_edits: dict[_ActionNode, list[str]] = {}
        self.text_edits: dict[_TextNode, str] = {}
        self.range_ctx: _RangeCtx | None = None

    def escape(self, c: _Ctx, n: _Node) -> _Ctx:
        if isinstance(n, _ActionNode):
            return self.escape_action(c, n)
        if isinstance(n, _TextNode):
            return self.escape_text(c, n)
        if isinstance(n, _BranchNode):
            return self.escape_branch(c, n)
        if isinstance(n, _ListNode):
            return self.escape_list(c, n)
        if isinstance(n, (_BreakNode, _ContinueNode)):
            assert self.range_ctx is not None
            target = (
                self.range_ctx.breaks if isinstance(n, _BreakNode) else self.range_ctx.continues
            )
            target.append((c, n))
            return _Ctx(_S_DEAD)
        raise AssertionError(f"escaping {n} is unimplemented")  # pragma: no cover

    def escape_action(self, c: _Ctx, n: _ActionNode) -> _Ctx:
        if n.pipe.decl:
            return c
        c = _nudge(c)
        cmds = n.pipe.cmds
        for pos, cmd in enumerate(cmds):
            ident = _first_ident(cmd)
            if ident in _PREDEFINED_ESCAPERS and (
                pos < len(cmds) - 1
                or (c.state == _S_ATTR and c.delim == _D_SPACE_OR_TAG_END and ident == "html")
            ):
                return _err_ctx(
                    n, n.line, f"predefined escaper {_go_quote(ident or '')} disallowed in template"
                )
        s: list[str] = []
        st = c.state
        if st == _S_ERROR:
            return c
        if st in (_S_URL, _S_CSS_DQ_STR, _S_CSS_SQ_STR, _S_CSS_DQ_URL, _S_CSS_SQ_URL, _S_CSS_URL):
            if c.url_part == _U_UNKNOWN:
                return _err_ctx(n, n.line, f"{n} appears in an ambiguous context within a URL")
            if c.url_part == _U_QUERY_OR_FRAG:
                s.append("_html_template_urlescaper")
            else:
                if c.url_part == _U_NONE:
                    s.append("_html_template_urlfilter")
                if st in (_S_CSS_DQ_STR, _S_CSS_SQ_STR):
                    s.append("_html_template_cssescaper")
                else:
                    s.append("_html_template_urlnormalizer")
        elif st == _S_JS:
            s.append("_html_template_jsvalescaper")
            # A slash after a value starts a division operator.
            c = c._replace(js_ctx=_J_DIV_OP)
        elif st in (_S_JS_DQ_STR, _S_JS_SQ_STR):
            s.append("_html_template_jsstrescaper")
        elif st == _S_JS_TMPL_LIT:
            s.append("_html_template_jstmpllitescaper")
        elif st == _S_JS_REGEXP:
            s.append("_html_template_jsregexpescaper")
        elif st == _S_CSS:
            s.append("_html_template_cssvaluefilter")
        elif st == _S_TEXT:
            s.append("_html_template_htmlescaper")
        elif st == _S_RCDATA:
            s.append("_html_template_rcdataescaper")
        elif st == _S_ATTR:
            pass
        elif st in (_S_ATTR_NAME, _S_TAG):
            c = c._replace(state=_S_ATTR_NAME)
            s.append("_html_template_htmlnamefilter")
        elif st == _S_SRCSET:
            s.append("_html_template_srcsetescaper")
        elif st in _COMMENT_STATES:
            s.append("_html_template_commentescaper")
        else:  # pragma: no cover
            raise AssertionError(f"unexpected state {_STATE_NAMES[st]}")
        if c.delim == _D_SPACE_OR_TAG_END:
            s.append("_html_template_nospaceescaper")
        elif c.delim != _D_NONE:
            s.append("_html_template_attrescaper")
        self.action_edits[n] = s
        return c

    def escape_branch(self, c: _Ctx, n: _BranchNode) -> _Ctx:
        kind = n.kind
        if kind == "range":
            self.range_ctx = _RangeCtx(self.range_ctx)
        c0 = self.escape_list(c, n.list)
        if kind == "range":
            assert self.range_ctx is not None
            if c0.state != _S_ERROR:
                c0 = self._join_range(c0, self.range_ctx)
            self.range_ctx = self.range_ctx.outer
            if c0.state == _S_ERROR:
                return c0
            # The body may run again: check that a second pass ends where the first did.
            self.range_ctx = _RangeCtx(self.range_ctx)
            c1 = self._escape_list_discarding(c0, n.list)
            c0 = _join(c0, c1, n, kind)
            if c0.state == _S_ERROR:
                assert c0.err is not None
                self.range_ctx = self.range_ctx.outer
                c0.err.line = n.line
                c0.err.desc = "on range loop re-entry: " + c0.err.desc
                return c0
            c0 = self._join_range(c0, self.range_ctx)
            self.range_ctx = self.range_ctx.outer
            if c0.state == _S_ERROR:
                return c0
        c1 = self.escape_list(c, n.else_list)
        return _join(c0, c1, n, kind)

    def _join_range(self, c0: _Ctx, rc: _RangeCtx) -> _Ctx:
        for what, entries in (("break", rc.breaks), ("continue", rc.continues)):
            for c, node in entries:
                c0 = _join(c0, c, node, "range")
                if c0.state == _S_ERROR:
                    assert c0.err is not None
                    assert isinstance(node, (_BreakNode, _ContinueNode))
                    c0.err.line = node.line
                    c0.err.desc = f"at range loop {what}: " + c0.err.desc
                    return c0
        return c0

    def escape_list(self, c: _Ctx, n: _ListNode | None) -> _Ctx:
        if n is None:
            return c
        for m in n.nodes:
            c = self.escape(c, m)
            if c.state == _S_DEAD:
                break
        return c

    def _escape_list_discarding(self, c: _Ctx, n: _ListNode) -> _Ctx:
        e1 = _Escaper()
        e1.range_ctx = self.range_ctx
        return e1.escape_list(c, n)

    def escape_text(self, c: _Ctx, n: _TextNode) -> _Ctx:
        s = n.text
        written = 0
        i = 0
        b: list[str] = []
        ln = len(s)
        while i != ln:
            c1, nread = _context_after_text(c, s[i:])
            i1 = i + nread
            if c.state in (_S_TEXT, _S_RCDATA):
                end = i1
                if c1.state != c.state:
                    k = s.rfind("<", i, end)
                    if k >= 0:
                        end = k
                j = s.find("<", i, end)
                while j >= 0:
                    if s[j : j + 9].upper() != "<!DOCTYPE":
                        b.append(s[written:j])
                        b.append("&lt;")
                        written = j + 1
                    j = s.find("<", j + 1, end)
            elif c.state in _COMMENT_STATES and c.delim == _D_NONE:
                if c.state == _S_JS_BLOCK_CMT:
                    # A block comment containing a line break still separates statements.
                    seg = s[written:i1]
                    b.append("\n" if any(ch in seg for ch in "\n\r\u2028\u2029") else " ")
                elif c.state == _S_CSS_BLOCK_CMT:
                    b.append(" ")
                written = i1
            if c.state != c1.state and c1.state in _COMMENT_STATES and c1.delim == _D_NONE:
                cs = i1 - 2
                if c1.state in (_S_HTML_CMT, _S_JS_HTML_OPEN_CMT):
                    cs -= 2
                elif c1.state == _S_JS_HTML_CLOSE_CMT:
                    cs -= 1
                b.append(s[written:cs])
                written = i1
            if c.state in _SCRIPT_LITERAL_STATES and _SPECIAL_SCRIPT_TAG_RE.search(s, i, i1):
                b.append(s[written:i])
                b.append(_SPECIAL_SCRIPT_TAG_RE.sub(r"\\x3C\1", s[i:i1]))
                written = i1
            if i == i1 and c.state == c1.state:  # pragma: no cover
                raise AssertionError(f"infinite loop from {c} to {c1} on {s[:i]!r}..{s[i:]!r}")
            c, i = c1, i1
        if written != 0 and c.state != _S_ERROR:
            if c.state not in _COMMENT_STATES or c.delim != _D_NONE:
                b.append(s[written:])
            self.text_edits[n] = "".join(b)
        return c

    def commit(self) -> None:
        for node, s in self.action_edits.items():
            _ensure_pipeline_contains(node.pipe, s)
        for tn, text in self.text_edits.items():
            tn.text = text


def _escape_error_message(name: str, text: str, err: _EscError) -> tuple[str, int]:
    if err.node is not None:
        line, col = _location(text, err.node.pos)
        return f"html/template:{name}:{line}:{col}: {err.desc}", line
    if err.line != 0:
        return f"html/template:{name}:{err.line}: {err.desc}", err.line
    return f"html/template:{name}: {err.desc}", 0


# ---------------------------------------------------------------------------------------------
# Public API


class CompiledTemplate:
    """A parsed and contextually escaped template; :meth:`render` is thread-safe."""

    __slots__ = ("_escape_error", "_root", "_text", "name")

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        self._text = text
        try:
            root = _Parser(name, text, _PARSE_FUNCS).parse()
        except _ParseError as e:
            raise TemplateError(str(e), name=name, line=e.line, phase="parse") from None
        self._root = root
        self._escape_error: TemplateError | None = None
        esc = _Escaper()
        c = esc.escape_list(_Ctx(), root)
        if c.err is not None:
            msg, line = _escape_error_message(name, text, c.err)
        elif c.state != _S_TEXT:
            msg, line = f"html/template:{name}: ends in a non-text context: {c}", 0
        else:
            esc.commit()
            return
        # Go reports escaping problems from Execute, not from Parse; keep that split.
        self._escape_error = TemplateError(msg, name=name, line=line, phase="escape")

    def render(self, data: Mapping[str, object]) -> str:
        if self._escape_error is not None:
            err = self._escape_error
            raise TemplateError(str(err), name=err.name, line=err.line, phase="escape")
        out: list[str] = []
        st = _State(self.name, self._text, _EXEC_FUNCS, out)
        st.vars.append(("$", data))
        try:
            st.walk(data, self._root)
        except _ExecError as e:
            raise TemplateError(
                str(e), name=self.name, line=e.line, phase="exec", output="".join(out)
            ) from None
        return "".join(out)


@functools.lru_cache(maxsize=256)
def compile_template(text: str, *, name: str = "template") -> CompiledTemplate:
    """Parse and escape ``text`` once; pages re-render the same few templates per request."""
    return CompiledTemplate(text, name)


def render(text: str, data: Mapping[str, object], *, name: str = "template") -> str:
    """Render ``text`` as Go's ``html/template`` with nFlow's ``unescapeHTML`` function."""
    return compile_template(text, name=name).render(data)

"""Go value formatting: ``fmt`` verbs and ``strconv`` number formatting, as templates print them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from nflow.golang.template._types import _INVALID, HTML, _GoInt

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

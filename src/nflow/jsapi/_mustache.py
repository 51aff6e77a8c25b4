"""Mustache rendering as the Go runtime's ``mustache(text, data)`` did it.

The Go runtime rendered with the cbroglie/mustache library (v1.2), and pages are compared byte
for byte with what it served. This module follows that library rule by rule rather than the
mustache spec where the two differ:

* ``{{x}}`` prints the value with Go's ``fmt.Sprint`` (``true``/``false``, ``<nil>`` for a
  null, ``1e+06`` for a large float, ``map[a:1]`` for an object, ``[1 2]`` for an array)
  and escapes it with Go's ``template.HTMLEscape``: ``& < > " '`` become ``&amp; &lt; &gt;
  &#34; &#39;``, NUL becomes U+FFFD. ``{{{x}}}`` and ``{{& x}}`` print it unescaped.
* A missing name prints nothing. ``a.b`` looks ``a`` up through the context stack, then
  ``b`` in it only; array elements cannot be addressed by index.
* A section is skipped for a missing name, ``null``, ``false``, ``0``, an empty array and a
  string of only white space (``{}`` is not empty); an array repeats it per element, any
  other value is pushed on the context stack once. An inverted section is the opposite.
* Standalone section, comment, partial and delimiter tags take their line with them;
  ``{{=<% %>=}}`` changes the delimiters.
* ``{{> name}}`` renders nothing: the Go library read partials from files relative to the
  server's working directory, which a script must not be able to reach.

Data is what goja exports from JavaScript: ``dict``/``list``/``str``/``int``/``float``/
``bool``/``None``; an integral float is printed as goja's int64 would be.
"""

from __future__ import annotations

__all__ = ["MustacheError", "render_mustache"]

import functools
import math
from dataclasses import dataclass, field
from typing import Final

from nflow.golang.template import sprint

_STANDALONE_TYPES: Final = "#^/<>=!"
_ESCAPES: Final = str.maketrans(
    {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
)
# Go's strings.TrimSpace: unicode.IsSpace (Python's str.strip also strips \x1c-\x1f).
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_INT64: Final = 2**63


class MustacheError(Exception):
    """A template that does not parse; worded as the Go library's ``line N: ...``."""


class _Missing:
    """Go's invalid ``reflect.Value``: a name that is not there (unlike a null value)."""


_MISSING: Final = _Missing()


@dataclass(slots=True)
class _Var:
    name: str
    raw: bool


@dataclass(slots=True)
class _Section:
    name: str
    inverted: bool
    line: int
    elems: list[_Elem] = field(default_factory=list)


@dataclass(slots=True)
class _Partial:
    name: str


_Elem = str | _Var | _Section | _Partial


def _trim(text: str) -> str:
    return text.strip(_GO_SPACE)


class _Parser:
    """The Go library's parser: same scanning, same standalone-line rules, same errors."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.otag = "{{"
        self.ctag = "}}"
        self.p = 0
        self.line = 1

    def read_string(self, s: str) -> tuple[str, bool]:
        """Text up to and including ``s`` (advancing), or the rest and ``False`` at the end."""
        i = self.data.find(s, self.p)
        if i < 0:
            return self.data[self.p :], False
        end = i + len(s)
        text = self.data[self.p : end]
        self.line += text.count("\n")
        self.p = end
        return text, True

    def read_text(self) -> tuple[str, str, bool, bool]:
        """``(text, padding, may_standalone, found_tag)`` before the next open tag."""
        start = self.p
        text, found = self.read_string(self.otag)
        if not found:
            return text, "", False, False
        tag_at = self.p - len(self.otag)
        i = tag_at
        while i > start and self.data[i - 1] in " \t":
            i -= 1
        if i == 0 or self.data[i - 1] == "\n":
            return self.data[start:i], self.data[i:tag_at], True, True
        return self.data[start:tag_at], "", False, True

    def read_tag(self, may_standalone: bool) -> tuple[str, bool]:
        data = self.data
        if self.p < len(data) and data[self.p] == "{":
            text, found = self.read_string("}" + self.ctag)
        else:
            text, found = self.read_string(self.ctag)
        if not found:
            raise MustacheError(f"line {self.line}: unmatched open tag")
        tag = _trim(text[: len(text) - len(self.ctag)])
        if not tag:
            raise MustacheError(f"line {self.line}: empty tag")
        # The Go code leaves eow at p when only blanks follow up to the end of the text.
        eow = self.p
        for i in range(self.p, len(data)):
            if data[i] not in " \t":
                eow = i
                break
        standalone = True
        if may_standalone:
            if tag[0] not in _STANDALONE_TYPES:
                standalone = False
            elif eow == len(data):
                self.p = eow
            elif data[eow] == "\n":
                self.p = eow + 1
                self.line += 1
            elif data.startswith("\r\n", eow):
                self.p = eow + 2
                self.line += 1
            else:
                standalone = False
        return tag, standalone

    def parse(self, section: _Section | None = None) -> list[_Elem]:
        elems: list[_Elem] = []
        while True:
            text, padding, may_standalone, found = self.read_text()
            if not found:
                if section is not None:
                    raise MustacheError(
                        f"line {section.line}: Section {section.name} has no closing tag"
                    )
                elems.append(text)
                return elems
            elems.append(text)
            tag, standalone = self.read_tag(may_standalone)
            if not standalone:
                elems.append(padding)
            kind = tag[0]
            if kind == "!":
                continue
            if kind in "#^":
                inner = _Section(_trim(tag[1:]), kind == "^", self.line)
                inner.elems = self.parse(inner)
                elems.append(inner)
            elif kind == "/":
                name = _trim(tag[1:])
                if section is None:
                    raise MustacheError(f"line {self.line}: unmatched close tag")
                if name != section.name:
                    raise MustacheError(f"line {self.line}: interleaved closing tag: {name}")
                return elems
            elif kind == ">":
                elems.append(_Partial(_trim(tag[1:])))
            elif kind == "=":
                if tag[-1] != "=":
                    raise MustacheError(f"line {self.line}: Invalid meta tag")
                delims = _trim(tag[1:-1]).split(" ", 1)
                if len(delims) == 2:
                    self.otag, self.ctag = delims
            elif kind == "{":
                if tag[-1] == "}":
                    elems.append(_Var(_trim(tag[1:-1]), True))
            elif kind == "&":
                elems.append(_Var(_trim(tag[1:]), True))
            else:
                elems.append(_Var(tag, False))


# Flows render the same few templates on every request; parsed trees are never mutated.
@functools.lru_cache(maxsize=256)
def _parse(text: str) -> list[_Elem]:
    return _Parser(text).parse()


def _lookup(chain: list[object], name: str) -> object:
    if name != "." and "." in name:
        head, rest = name.split(".", 1)
        return _lookup([_lookup(chain, head)], rest)
    for ctx in chain:
        if ctx is _MISSING:
            continue
        if name == ".":
            return ctx
        if isinstance(ctx, dict) and name in ctx:
            return ctx[name]
    return _MISSING


def _is_empty(value: object) -> bool:
    if value is None or value is _MISSING or value is False:
        return True
    if isinstance(value, list | tuple):
        return len(value) == 0
    if isinstance(value, str):
        return not _trim(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # reflect's IsZero: a float is zero only when all its bits are (-0.0 is not).
        return value == 0 and math.copysign(1.0, value) > 0
    return False


def _go_value(value: object) -> object:
    """goja's export: an integral number is an int64, whatever JS stored (-0 stays a float)."""
    if isinstance(value, float):
        negative_zero = value == 0 and math.copysign(1.0, value) < 0
        if value.is_integer() and -_INT64 <= value < _INT64 and not negative_zero:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: _go_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_go_value(v) for v in value]
    return value


def _render(elems: list[_Elem], chain: list[object], out: list[str]) -> None:
    for elem in elems:
        if isinstance(elem, str):
            out.append(elem)
        elif isinstance(elem, _Var):
            value = _lookup(chain, elem.name)
            if value is _MISSING:
                continue
            text = sprint(_go_value(value))
            out.append(text if elem.raw else text.translate(_ESCAPES))
        elif isinstance(elem, _Section):
            value = _lookup(chain, elem.name)
            empty = _is_empty(value)
            if empty != elem.inverted:
                continue
            if elem.inverted:
                contexts: list[object] = [chain[0]]
            elif isinstance(value, list | tuple):
                contexts = list(value)
            else:
                contexts = [value]
            for ctx in contexts:
                _render(elem.elems, [ctx, *chain], out)
        # _Partial: nothing (see the module docstring)


def render_mustache(text: str, data: object) -> str:
    """Render ``text`` against ``data``; :class:`MustacheError` if it does not parse."""
    elems = _parse(text)
    out: list[str] = []
    _render(elems, [_MISSING if data is None else data], out)
    return "".join(out)

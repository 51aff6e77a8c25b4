"""The template lexer, ported from Go's ``text/template/parse/lex.go``."""

from __future__ import annotations

import re
from typing import Final, NamedTuple, Protocol

from nflow.golang.template._fmt import _go_quote, _go_quote_trunc

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

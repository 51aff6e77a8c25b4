"""``html/template`` escaping contexts and their transitions (Go's ``context.go``,
``transition.go``)."""

from __future__ import annotations

import html as _stdhtml
import re
from collections.abc import Callable
from typing import Final, NamedTuple

from nflow.golang.template._fmt import _go_quote, _go_quote_trunc
from nflow.golang.template._tree import _Node


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated names: keeps Go's long name tables compact."""
    return tuple(text.split())


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

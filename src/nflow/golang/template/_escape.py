"""The escape pass that adds escapers to each action by context (Go's ``escape.go``)."""

from __future__ import annotations

import re
from typing import Final

from nflow.golang.template._context import (
    _A_NONE,
    _ATTR_START_STATES,
    _COMMENT_STATES,
    _D_NONE,
    _D_SPACE_OR_TAG_END,
    _J_DIV_OP,
    _J_UNKNOWN,
    _S_AFTER_NAME,
    _S_ATTR,
    _S_ATTR_NAME,
    _S_BEFORE_VALUE,
    _S_CSS,
    _S_CSS_BLOCK_CMT,
    _S_CSS_DQ_STR,
    _S_CSS_DQ_URL,
    _S_CSS_SQ_STR,
    _S_CSS_SQ_URL,
    _S_CSS_URL,
    _S_DEAD,
    _S_ERROR,
    _S_HTML_CMT,
    _S_JS,
    _S_JS_BLOCK_CMT,
    _S_JS_DQ_STR,
    _S_JS_HTML_CLOSE_CMT,
    _S_JS_HTML_OPEN_CMT,
    _S_JS_REGEXP,
    _S_JS_SQ_STR,
    _S_JS_TMPL_LIT,
    _S_RCDATA,
    _S_SRCSET,
    _S_TAG,
    _S_TEXT,
    _S_URL,
    _SCRIPT_LITERAL_STATES,
    _STATE_NAMES,
    _U_NONE,
    _U_QUERY_OR_FRAG,
    _U_UNKNOWN,
    _context_after_text,
    _Ctx,
    _ctx_eq,
    _err_ctx,
    _EscError,
)
from nflow.golang.template._exec import _location
from nflow.golang.template._fmt import _go_quote
from nflow.golang.template._tree import (
    _ActionNode,
    _BranchNode,
    _BreakNode,
    _CommandNode,
    _ContinueNode,
    _IdentifierNode,
    _ListNode,
    _Node,
    _PipeNode,
    _TextNode,
)

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

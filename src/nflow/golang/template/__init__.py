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
from collections.abc import Mapping

from nflow.golang.template._context import _S_TEXT, _Ctx
from nflow.golang.template._escape import _escape_error_message, _Escaper
from nflow.golang.template._escapers import _EXEC_FUNCS, _PARSE_FUNCS
from nflow.golang.template._exec import _ExecError, _State
from nflow.golang.template._fmt import _sprint_v
from nflow.golang.template._parse import _ParseError, _Parser
from nflow.golang.template._types import HTML, TemplateError

__all__ = [
    "HTML",
    "CompiledTemplate",
    "TemplateError",
    "compile_template",
    "render",
    "sprint",
]


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


def sprint(value: object) -> str:
    """Go's ``fmt.Sprint`` of one value, as templates print it (mustache prints the same)."""
    return _sprint_v(value)


@functools.lru_cache(maxsize=256)
def compile_template(text: str, *, name: str = "template") -> CompiledTemplate:
    """Parse and escape ``text`` once; pages re-render the same few templates per request."""
    return CompiledTemplate(text, name)


def render(text: str, data: Mapping[str, object], *, name: str = "template") -> str:
    """Render ``text`` as Go's ``html/template`` with nFlow's ``unescapeHTML`` function."""
    return compile_template(text, name=name).render(data)

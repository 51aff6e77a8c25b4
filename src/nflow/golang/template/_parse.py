"""The template parser, ported from Go's ``text/template/parse/parse.go``."""

from __future__ import annotations

from typing import NoReturn

from nflow.golang.template._fmt import _go_quote
from nflow.golang.template._lex import (
    _I_ASSIGN,
    _I_BLOCK,
    _I_BOOL,
    _I_BREAK,
    _I_CHAR,
    _I_CHAR_CONSTANT,
    _I_COMPLEX,
    _I_CONTINUE,
    _I_DECLARE,
    _I_DEFINE,
    _I_DOT,
    _I_ELSE,
    _I_END,
    _I_EOF,
    _I_ERROR,
    _I_FIELD,
    _I_IDENTIFIER,
    _I_IF,
    _I_LEFT_DELIM,
    _I_LEFT_PAREN,
    _I_NIL,
    _I_NUMBER,
    _I_PIPE,
    _I_RANGE,
    _I_RAW_STRING,
    _I_RIGHT_DELIM,
    _I_RIGHT_PAREN,
    _I_SPACE,
    _I_STRING,
    _I_TEMPLATE,
    _I_TEXT,
    _I_VARIABLE,
    _I_WITH,
    _go_unquote,
    _Item,
    _Lexer,
    _parse_go_float,
    _parse_go_int,
    _SyntaxError,
    _unquote_char,
)
from nflow.golang.template._tree import (
    _ActionNode,
    _BoolNode,
    _BranchNode,
    _BreakNode,
    _ChainNode,
    _CommandNode,
    _ContinueNode,
    _DotNode,
    _ElseNode,
    _EndNode,
    _FieldNode,
    _IdentifierNode,
    _ListNode,
    _NilNode,
    _Node,
    _NumberNode,
    _PipeNode,
    _StringNode,
    _TextNode,
    _VariableNode,
)
from nflow.golang.template._types import _GoInt

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

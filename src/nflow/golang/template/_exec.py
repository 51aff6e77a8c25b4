"""The executor that walks a parse tree against the data (Go's ``text/template/exec.go``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

from nflow.golang.template._fmt import _go_quote, _go_type, _sorted_items, _sprint_v
from nflow.golang.template._funcs import _b_and_or, _Func, _FuncError, _truth
from nflow.golang.template._tree import (
    _ActionNode,
    _BoolNode,
    _BranchNode,
    _BreakNode,
    _ChainNode,
    _CommandNode,
    _ContinueNode,
    _DotNode,
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
from nflow.golang.template._types import _INVALID, _NO_FINAL, HTML, _GoInt

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

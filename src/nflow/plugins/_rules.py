"""``rule_run(input, output, ...rules)`` : a small, safe rule language.

The Go runtime used the sazito/mosalat engine. This is nflow's own language, parsed and
evaluated here (never ``eval``): a rule reads ``input`` and ``output`` and may only assign
into ``output``::

    when input.age >= 18 and input.country == "UY" then output.adult = true
    when input.total > 100 then output.discount = input.total * 0.1, output.tier = "gold"
        else output.discount = 0

Grammar (keywords lower case)::

    rule       = "when" expr "then" actions [ "else" actions ]
    actions    = assignment { ("," | ";") assignment }
    assignment = path "=" expr                      (the path starts with output)
    expr       = and { ("or" | "||") and }
    and        = not { ("and" | "&&") not }
    not        = ("not" | "!") not | compare
    compare    = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum ]
    sum        = product { ("+" | "-") product }
    product    = unary { ("*" | "/" | "%") unary }
    unary      = "-" unary | primary
    primary    = number | string | "true" | "false" | "null" | path
               | "[" [ expr { "," expr } ] "]" | "(" expr ")"
    path       = ("input" | "output") { "." name | "[" (integer | string) "]" }

Rules written for the Go runtime's engine (sazito/mosalat) are accepted as they are: a rule
that does not start with ``when`` is read in that syntax, ``[condition " | "] name = expr
{"," name = expr}``, where bare names are top-level keys of ``input`` or ``output``::

    plan_name == "premium_1" && sales_amount > 1000 | plan_name = "free", feature_1 = true

There ``&&`` and ``||`` have the same precedence and group from the left, as in the Go
engine; a condition and the operands of ``!``, ``&&`` and ``||`` are true unless false, null,
0, "" or an empty array or object (Go's truthiness); an assignment may not change the type of
a value ``output`` holds. What cannot work is refused with an error naming it: a name that is
neither an ``input`` nor an ``output`` key (nor assigned by an earlier rule), a name in both,
an assignment to an ``input`` key, a function call (``rule_add_fx`` functions could not be
registered from JavaScript), a chained comparison.

Values are JSON's. A missing path is ``null``. ``and``/``or``/``not`` and conditions take
booleans only; ``<`` and friends compare two numbers or two strings; ``+`` adds numbers or
joins strings; ``in`` tests membership in an array or a substring. Rules run in order and see
what earlier ones wrote to ``output``. The result is ``{output, err}``: on any error (syntax,
types, division by zero) ``err`` names the rule and the problem, and ``output`` is returned
as it was given, as the original returned its error instead of throwing.
"""

from __future__ import annotations

__all__ = ["RuleError", "rules", "run_rules"]

import copy
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nflow.jsapi._context import RunContext
from nflow.jsapi._host import HostTable

MAX_RULES = 500
MAX_RULE_LENGTH = 10_000
MAX_DEPTH = 64
_MAX_SAFE_INT = 2**53

rules = HostTable()


class RuleError(Exception):
    """A rule that cannot be parsed or evaluated; the message says where and why."""


# --------------------------------------------------------------------------------------------
# Tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>=!+\-*/%(),\[\].;|])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_KEYWORDS = frozenset({"when", "then", "else", "and", "or", "not", "in", "true", "false", "null"})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # number, string, op, name, kw, end
    text: str
    value: Any
    column: int


def _unescape(body: str, column: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise RuleError(f"at column {column}: unknown escape \\{nxt} in a string")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        column = pos + 1
        if m is None:
            shown = source[pos : pos + 10]
            raise RuleError(f"at column {column}: unexpected {shown!r}")
        kind = m.lastgroup
        word = m.group()
        pos = m.end()
        if kind == "space":
            continue
        if kind == "number":
            number = float(word)
            value: Any = int(number) if number.is_integer() and "." not in word else number
            if not math.isfinite(number):
                raise RuleError(f"at column {column}: number {word} is too large")
            out.append(_Tok("number", word, value, column))
        elif kind == "string":
            out.append(_Tok("string", word, _unescape(word[1:-1], column), column))
        elif kind == "name" and word in _KEYWORDS:
            out.append(_Tok("kw", word, None, column))
        else:
            out.append(_Tok(str(kind), word, None, column))
    out.append(_Tok("end", "end of rule", None, len(source) + 1))
    return out


# --------------------------------------------------------------------------------------------
# Syntax tree: small tuples evaluated by _eval

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _tokens(source)
        self.i = 0
        self.depth = 0

    # helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def at(self, *texts: str) -> bool:
        tok = self.tok
        return tok.kind in ("op", "kw") and tok.text in texts

    def take(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def expect(self, text: str, what: str = "") -> _Tok:
        if not self.at(text):
            self.fail(what or f'"{text}"')
        return self.take()

    def fail(self, expected: str) -> None:
        tok = self.tok
        got = tok.text if tok.kind == "end" else f'"{tok.text}"'
        raise RuleError(f"at column {tok.column}: expected {expected}, got {got}")

    # grammar
    def rule(self) -> Node:
        self.expect("when", '"when" at the start of the rule')
        condition = self.expr()
        if self.at("="):
            raise RuleError(f"at column {self.tok.column}: use == to compare (= assigns)")
        self.expect("then", '"then" or an operator')
        then = self.actions()
        otherwise: list[Node] = []
        if self.at("else"):
            self.take()
            otherwise = self.actions()
        if self.tok.kind != "end":
            self.fail('"," between assignments, "else" or the end of the rule')
        return ("rule", condition, then, otherwise)

    def actions(self) -> list[Node]:
        found = [self.assignment()]
        while self.at(",", ";"):
            self.take()
            found.append(self.assignment())
        return found

    def assignment(self) -> Node:
        tok = self.tok
        if not (tok.kind == "name" and tok.text == "output"):
            self.fail("an assignment to output (output.name = value)")
        target = self.path()
        if len(target[2]) == 0:
            raise RuleError(f"at column {tok.column}: assign to a field of output, not output")
        self.expect("=", '"=" after the output path')
        return ("set", target[2], self.expr(), tok.column)

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(f"at column {self.tok.column}: nested more than {MAX_DEPTH} deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def expr(self) -> Node:
        return self.nested(self.or_)

    def or_(self) -> Node:
        node = self.and_()
        while self.at("or", "||"):
            column = self.take().column
            node = ("or", node, self.and_(), column)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("and", "&&"):
            column = self.take().column
            node = ("and", node, self.not_(), column)
        return node

    def not_(self) -> Node:
        if self.at("not", "!"):
            column = self.take().column
            return ("not", self.nested(self.not_), column)
        return self.compare()

    def compare(self) -> Node:
        left = self.sum()
        if self.at("==", "!=", "<", "<=", ">", ">=", "in"):
            tok = self.take()
            return ("cmp", tok.text, left, self.sum(), tok.column)
        if self.at("not") and self.toks[self.i + 1].text == "in":
            column = self.take().column
            self.take()
            return ("not", ("cmp", "in", left, self.sum(), column), column)
        return left

    def sum(self) -> Node:
        node = self.product()
        while self.at("+", "-"):
            tok = self.take()
            node = ("math", tok.text, node, self.product(), tok.column)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at("*", "/", "%"):
            tok = self.take()
            node = ("math", tok.text, node, self.unary(), tok.column)
        return node

    def unary(self) -> Node:
        if self.at("-"):
            column = self.take().column
            return ("neg", self.nested(self.unary), column)
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.take()
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            self.take()
            return ("lit", {"true": True, "false": False, "null": None}[tok.text])
        if tok.kind == "name":
            if tok.text not in ("input", "output"):
                self.fail("input or output at the start of a path")
            return self.path()
        if self.at("("):
            self.take()
            node = self.expr()
            self.expect(")", '")"')
            return node
        if self.at("["):
            self.take()
            items: list[Node] = []
            if not self.at("]"):
                items.append(self.expr())
                while self.at(","):
                    self.take()
                    items.append(self.expr())
            self.expect("]", '"," or "]"')
            return ("list", items)
        self.fail("a value (number, string, true, false, null, a path, [...] or (...))")
        raise AssertionError  # fail() raised

    def path(self) -> Node:
        root = self.take().text
        keys: list[str | int] = []
        while self.at(".", "["):
            if self.take().text == ".":
                tok = self.tok
                if tok.kind not in ("name", "kw"):
                    self.fail("a field name after the dot")
                keys.append(self.take().text)
                continue
            tok = self.tok
            if tok.kind == "string" or (tok.kind == "number" and isinstance(tok.value, int)):
                keys.append(self.take().value)
            else:
                self.fail("an index (a whole number) or a quoted key inside [ ]")
            self.expect("]", '"]"')
        return ("path", root, keys)


class _GoParser(_Parser):
    """The Go engine's syntax: ``[condition " | "] name = expr {"," name = expr}``."""

    def rule(self) -> Node:
        condition: Node | None = None
        depth = 0
        for tok in self.toks:
            if tok.kind == "op" and tok.text in "([":
                depth += 1
            elif tok.kind == "op" and tok.text in ")]":
                depth -= 1
            elif tok.kind == "op" and tok.text == "|" and depth == 0:
                condition = ("truthy", self.expr(), 0)
                self.expect("|", '" | " between the condition and the assignments')
                break
        actions = [self.assignment()]
        while self.at(","):
            self.take()
            actions.append(self.assignment())
        if self.tok.kind != "end":
            self.fail('"," between assignments or the end of the rule')
        return ("gorule", condition, actions, [])

    def assignment(self) -> Node:
        tok = self.tok
        if tok.kind not in ("name", "kw") or tok.text in ("true", "false"):
            self.fail("an assignment (name = value)")
        self.take()
        self._no_path(tok)
        self.expect("=", f'"=" after {tok.text}')
        return ("set", [tok.text], self.expr(), tok.column)

    def _no_path(self, name: _Tok) -> None:
        if self.at(".", "["):
            after = self.toks[self.i + 1]
            shown = name.text + (f".{after.text}" if self.tok.text == "." else "[...]")
            raise RuleError(
                f"at column {name.column}: {shown} is a path of nflow's "
                'rule syntax, which starts with "when" (when <condition> then output.x = ...); '
                "rules without it use bare names (<condition> | x = ...)"
            )

    def or_(self) -> Node:
        # The Go engine gives && and || one precedence, grouped from the left.
        node = self.compare()
        while self.at("&&", "||"):
            tok = self.take()
            node = ("gand" if tok.text == "&&" else "gor", node, self.compare(), tok.column)
        return node

    def compare(self) -> Node:
        left = self.sum()
        if self.at("==", "!=", "<", "<=", ">", ">="):
            tok = self.take()
            node = ("cmp", tok.text, left, self.sum(), tok.column)
            if self.at("==", "!=", "<", "<=", ">", ">="):
                raise RuleError(
                    f"at column {self.tok.column}: chained comparison; join them with &&"
                )
            return node
        return left

    def sum(self) -> Node:
        # % binds loosest of the arithmetic operators in the Go engine.
        node = self._additive()
        while self.at("%"):
            tok = self.take()
            node = ("math", "%", node, self._additive(), tok.column)
        return node

    def _additive(self) -> Node:
        node = self.product()
        while self.at("+", "-"):
            tok = self.take()
            node = ("math", tok.text, node, self.product(), tok.column)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at("*", "/"):
            tok = self.take()
            node = ("math", tok.text, node, self.unary(), tok.column)
        return node

    def unary(self) -> Node:
        if self.at("!"):
            column = self.take().column
            return ("gnot", self.nested(self.unary), column)
        return super().unary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "kw" and tok.text in ("true", "false"):
            self.take()
            return ("lit", tok.text == "true")
        if tok.kind in ("name", "kw"):
            self.take()
            self._no_path(tok)
            if self.at("("):
                raise RuleError(
                    f"at column {tok.column}: {tok.text}() is a function; rule_run has none "
                    "(rule_add_fx functions could not be registered from JavaScript)"
                )
            return ("name", tok.text, tok.column)
        if self.at("["):
            self.fail("a value (number, string, true, false, a name or (...))")
        return super().primary()


def _is_go_rule(source: str) -> bool:
    first = source.split(None, 1)
    return not first or first[0] != "when"


# Flows run the same rule strings on every request; the parsed trees are never mutated.
@functools.lru_cache(maxsize=1024)
def parse_rule(source: str) -> Node:
    if len(source) > MAX_RULE_LENGTH:
        raise RuleError(f"longer than {MAX_RULE_LENGTH} characters")
    if _is_go_rule(source):
        return _GoParser(source).rule()
    return _Parser(source).rule()


def _check_names(node: object, input_keys: set[str], known: set[str]) -> None:
    """The Go engine's parse-time checks on bare names: each is one input or output key."""
    if not isinstance(node, tuple) or not node:
        return
    if node[0] == "name":
        name, column = node[1], node[2]
        if name in input_keys and name in known:
            raise RuleError(f"at column {column}: {name} is a key of both input and output")
        if name not in input_keys and name not in known:
            raise RuleError(
                f"at column {column}: unknown name {name} (not a key of input or output, "
                "nor assigned by an earlier rule)"
            )
        return
    for part in node[1:]:
        if isinstance(part, list):
            for item in part:
                _check_names(item, input_keys, known)
        else:
            _check_names(part, input_keys, known)


def _check_go_rule(rule: Node, input_keys: set[str], known: set[str]) -> None:
    _, condition, actions, _ = rule
    _check_names(condition, input_keys, known)
    for _, keys, expr, column in actions:
        name = keys[0]
        if name in input_keys:
            raise RuleError(f"at column {column}: cannot assign to {name}, a key of input")
        known.add(name)  # as in the Go parser: declared before its value is read
        _check_names(expr, input_keys, known)


# --------------------------------------------------------------------------------------------
# Evaluation


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 30 else value[:27] + "..."
        return f'"{text}"'
    if isinstance(value, int | float):
        return repr(value)
    return "an array" if isinstance(value, list) else "an object"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: object, b: object) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, arrays and objects compare deeply."""
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _lookup(value: object, keys: list[str | int]) -> object:
    for key in keys:
        if isinstance(value, dict) and isinstance(key, str):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def _bool(value: object, column: int, what: str) -> bool:
    if not isinstance(value, bool):
        where = f"at column {column}: " if column else ""
        raise RuleError(f"{where}{what} needs true or false, got {_show(value)}")
    return value


def _number(value: object) -> object:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArithmeticError
        return int(value) if value.is_integer() and abs(value) < _MAX_SAFE_INT else value
    if isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
        return float(value)
    return value


class _Env:
    def __init__(self, input_: object, output: dict[str, Any]) -> None:
        self.roots = {"input": input_, "output": output}
        self.input = input_ if isinstance(input_, dict) else {}
        self.output = output


def _go_truth(value: object) -> bool:
    """Go's template-style truth, as the Go rule engine used: zero values are false."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    if _is_number(value):
        return value != 0
    return True


def _eval(node: Node, env: _Env) -> object:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        return _lookup(env.roots[node[1]], node[2])
    if kind == "name":
        name = node[1]
        return env.input[name] if name in env.input else env.output.get(name)
    if kind == "truthy":
        return _go_truth(_eval(node[1], env))
    if kind == "gnot":
        return not _go_truth(_eval(node[1], env))
    if kind == "gand":
        return _go_truth(_eval(node[1], env)) and _go_truth(_eval(node[2], env))
    if kind == "gor":
        return _go_truth(_eval(node[1], env)) or _go_truth(_eval(node[2], env))
    if kind == "list":
        return [_eval(item, env) for item in node[1]]
    if kind == "and":
        if not _bool(_eval(node[1], env), node[3], '"and"'):
            return False
        return _bool(_eval(node[2], env), node[3], '"and"')
    if kind == "or":
        if _bool(_eval(node[1], env), node[3], '"or"'):
            return True
        return _bool(_eval(node[2], env), node[3], '"or"')
    if kind == "not":
        return not _bool(_eval(node[1], env), node[2], '"not"')
    if kind == "neg":
        value = _eval(node[1], env)
        if not _is_number(value):
            raise RuleError(f"at column {node[2]}: cannot negate {_show(value)}")
        assert isinstance(value, int | float)
        return -value
    if kind == "cmp":
        return _compare(node[1], _eval(node[2], env), _eval(node[3], env), node[4])
    if kind == "math":
        return _math(node[1], _eval(node[2], env), _eval(node[3], env), node[4])
    raise AssertionError(kind)


def _compare(op: str, a: object, b: object, column: int) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        if isinstance(b, list):
            return any(_equal(a, item) for item in b)
        if isinstance(b, str) and isinstance(a, str):
            return a in b
        raise RuleError(
            f'at column {column}: "in" needs an array (or two strings), got {_show(a)} in '
            f"{_show(b)}"
        )
    if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        x: Any = a
        y: Any = b
        return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])
    raise RuleError(
        f"at column {column}: cannot compare {_show(a)} {op} {_show(b)} "
        "(two numbers or two strings)"
    )


def _math(op: str, a: object, b: object, column: int) -> object:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > 1_000_000:
            raise RuleError(f"at column {column}: string longer than 1000000 characters")
        return a + b
    if not (_is_number(a) and _is_number(b)):
        raise RuleError(f"at column {column}: cannot compute {_show(a)} {op} {_show(b)}")
    x: Any = a
    y: Any = b
    try:
        if op == "+":
            return _number(x + y)
        if op == "-":
            return _number(x - y)
        if op == "*":
            return _number(x * y)
        if y == 0:
            raise RuleError(f"at column {column}: division by zero")
        if op == "/":
            return _number(x / y)
        return _number(math.fmod(x, y))
    except (ArithmeticError, OverflowError):
        raise RuleError(f"at column {column}: the result of {op} is not a finite number") from None


def _assign(output: dict[str, Any], keys: list[str | int], value: object, column: int) -> None:
    target: Any = output
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(target, dict) and isinstance(key, str):
            if last:
                target[key] = copy.deepcopy(value)
                return
            if target.get(key) is None:
                target[key] = {}
            target = target[key]
        elif isinstance(target, list) and isinstance(key, int) and 0 <= key < len(target):
            if last:
                target[key] = copy.deepcopy(value)
                return
            target = target[key]
        else:
            raise RuleError(f"at column {column}: cannot assign into {_show(target)} at {key!r}")


def run_rules(input_: object, output: object, sources: list[object]) -> dict[str, Any]:
    """Parse every rule, then apply them in order; ``{output, err}``, never raising."""
    original = output if output is not None else {}
    if not isinstance(original, dict):
        return {"output": output, "err": "rule_run: output must be an object"}
    if len(sources) > MAX_RULES:
        return {"output": original, "err": f"rule_run: more than {MAX_RULES} rules"}
    parsed: list[tuple[str, Node]] = []
    for number, source in enumerate(sources, start=1):
        if not isinstance(source, str):
            return {
                "output": original,
                "err": f"rule {number}: expected a rule string, got {_show(source)}",
            }
        try:
            parsed.append((source, parse_rule(source)))
        except RuleError as exc:
            return {"output": original, "err": f"rule {number} ({_brief(source)}): {exc}"}
    input_keys = set(input_) if isinstance(input_, dict) else set()
    known = set(original)
    for number, (source, rule) in enumerate(parsed, start=1):
        if rule[0] == "gorule":
            try:
                _check_go_rule(rule, input_keys, known)
            except RuleError as exc:
                return {"output": original, "err": f"rule {number} ({_brief(source)}): {exc}"}
    working: dict[str, Any] = copy.deepcopy(original)
    env = _Env(input_, working)
    for number, (source, rule) in enumerate(parsed, start=1):
        kind, condition, then, otherwise = rule
        try:
            if kind == "gorule":
                if condition is None or _eval(condition, env):
                    for _, keys, expr, column in then:
                        value = _eval(expr, env)
                        _same_type(working, keys[0], value, column)
                        _assign(working, keys, value, column)
                continue
            chosen = then if _bool(_eval(condition, env), 0, "the condition") else otherwise
            for _, keys, expr, column in chosen:
                _assign(working, keys, _eval(expr, env), column)
        except RuleError as exc:
            return {"output": original, "err": f"rule {number} ({_brief(source)}): {exc}"}
    return {"output": working, "err": None}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _same_type(output: dict[str, Any], name: str, value: object, column: int) -> None:
    """The Go engine refused to change the type of a value output already holds."""
    old = output.get(name)
    if old is None or value is None:
        return
    if _json_type(old) != _json_type(value):
        raise RuleError(
            f"at column {column}: {name} holds a {_json_type(old)}; "
            f"cannot assign {_show(value)} to it"
        )


def _brief(source: str) -> str:
    text = " ".join(source.split())
    return text if len(text) <= 60 else text[:57] + "..."


@rules.function("rule_run")
def rule_run(ctx: RunContext, input_: object = None, output: object = None, *more: object) -> Any:
    """``rule_run(input, output, ...rules)``; rules may also come as one array."""
    sources: list[object] = []
    for item in more:
        sources.extend(item if isinstance(item, list) else [item])
    return run_rules(input_ if input_ is not None else {}, output, sources)

"""Static analysis of step scripts on a real JavaScript syntax tree.

The Go runtime matched regular expressions over the whole text, so ``regex.exec(s)`` counted as
spawning a process and ``"window.x = 1"`` inside a string as a global assignment. Here every
script is parsed with tree-sitter's JavaScript grammar (ES2024: classes, arrow functions,
template literals, ``?.``, ``??``, async/await, spread, private fields…) and the rules look at
the nodes: a call of ``eval``, a ``.constructor.constructor`` chain, a ``while (true)`` whose
body has no ``break``/``return``/``throw``.

The analyzer is advice and a gate, never the security boundary (the sandbox is): when the
grammar cannot parse a script, the result carries a low ``parse_error`` finding and every high
finding is lowered to medium, so a script the analyzer does not understand is never blocked
because of it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_SCRIPT_BYTES",
    "RULES",
    "AnalyzerRules",
    "Finding",
    "NodeFinding",
    "ScriptAnalyzer",
    "analyze",
    "blocks",
    "check_app",
    "playbook_sources",
]

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import tree_sitter
import tree_sitter_javascript

from nflow.security._findings import (
    DEFAULT_MAX_SCRIPT_BYTES,
    RULES,
    AnalyzerRules,
    Finding,
    NodeFinding,
    Severity,
    blocks,
    playbook_sources,
    record_verdict,
)

_LANGUAGE = tree_sitter.Language(tree_sitter_javascript.language())

_GLOBAL_ALIASES = frozenset({"globalThis", "window", "global", "self"})
_BUILTINS = frozenset(
    {
        "Object",
        "Array",
        "String",
        "Number",
        "Boolean",
        "Function",
        "Symbol",
        "BigInt",
        "RegExp",
        "Date",
        "Error",
        "Promise",
        "Map",
        "Set",
        "WeakMap",
        "WeakSet",
        "ArrayBuffer",
        "Uint8Array",
        "JSON",
        "Math",
        "Reflect",
        "Proxy",
    }
)
_FUNCTION_LITERALS = frozenset(
    {"function_expression", "arrow_function", "generator_function", "class", "function"}
)
# Nodes that start a new function body: return/yield/break inside them do not leave a loop
# outside them.
_SCOPES = frozenset(
    {
        "function_declaration",
        "function_expression",
        "function",
        "arrow_function",
        "generator_function",
        "generator_function_declaration",
        "method_definition",
        "class_declaration",
        "class",
        "class_static_block",
    }
)
_LOOPS = frozenset(
    {"while_statement", "do_statement", "for_statement", "for_in_statement", "switch_statement"}
)
_DECLARING = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "variable_declarator",
    }
)
# Called bare (after destructuring require("child_process")) unless the script declares them.
_PROCESS_FUNCTIONS = frozenset(
    {"exec", "execSync", "execFile", "execFileSync", "spawn", "spawnSync"}
)
_PROCESS_METHODS = _PROCESS_FUNCTIONS | {"fork"}
_PROCESS_OBJECTS = frozenset({"child_process", "childProcess", "cp"})
_PROCESS_INTERNALS = frozenset({"binding", "_linkedBinding", "dlopen", "mainModule"})
_FS_MODULES = frozenset({"fs"})
_PROCESS_MODULES = frozenset({"child_process", "worker_threads", "cluster"})
_CODE_MODULES = frozenset({"vm", "v8", "inspector", "module"})
_NET_MODULES = frozenset({"http", "https", "http2", "net", "dgram", "tls", "dns"})
_TIMERS = frozenset({"setTimeout", "setInterval", "setImmediate"})
_LEGACY_ACCESSORS = frozenset(
    {"__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__"}
)
_GLOBAL_WRITERS = frozenset(
    {
        ("Object", "defineProperty"),
        ("Object", "defineProperties"),
        ("Object", "assign"),
        ("Reflect", "set"),
        ("Reflect", "defineProperty"),
    }
)
_PROTO_SETTERS = frozenset({("Object", "setPrototypeOf"), ("Reflect", "setPrototypeOf")})
_PROPERTY_READERS = frozenset(
    {
        ("Reflect", "get"),
        ("Reflect", "getOwnPropertyDescriptor"),
        ("Object", "getOwnPropertyDescriptor"),
    }
)
_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
}
_MAX_FOLD_DEPTH = 64
_LOOP_CHECK_BUDGET = 200_000
_MAX_FINDINGS_PER_RULE = 100
_SNIPPET_RADIUS = 40


def analyze(source: str, *, rules: AnalyzerRules | None = None) -> list[Finding]:
    """Every finding of one script, in source order. Never raises."""
    rules = rules or AnalyzerRules()
    if not rules.enabled:
        return []
    try:
        found = _Analysis(source, rules).run()
    except Exception as exc:  # the analyzer must never take a request or a check down
        found = [
            Finding(
                "parse_error",
                "low",
                f"could not parse the script: analyzer failure ({type(exc).__name__})",
                1,
                1,
                "",
            )
        ]
    return [f for f in found if f.rule not in rules.disabled_rules and not rules.allows(f)]


class ScriptAnalyzer:
    """:func:`analyze` with a per-text cache (``cache_analysis_results``/``cache_ttl_minutes``).

    Thread-safe; one instance per configuration is meant to live as long as the server.
    """

    def __init__(self, rules: AnalyzerRules, *, max_entries: int = 2048) -> None:
        self.rules = rules
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._cache: dict[bytes, tuple[float, tuple[Finding, ...]]] = {}

    def analyze(self, source: str) -> list[Finding]:
        ttl = self.rules.cache_ttl_seconds
        if ttl <= 0 or not self.rules.enabled:
            return analyze(source, rules=self.rules)
        key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return list(hit[1])
        result = analyze(source, rules=self.rules)
        with self._lock:
            if len(self._cache) >= self._max_entries:
                expired = [k for k, (t, _) in self._cache.items() if t <= now]
                for k in expired or list(self._cache)[: self._max_entries // 4]:
                    del self._cache[k]
            self._cache[key] = (now + ttl, tuple(result))
        return result

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def check_app(
    sources: Iterable[tuple[str, str, str]], rules: AnalyzerRules | None = None
) -> list[NodeFinding]:
    """Findings of every ``(node_id, field, source)`` of an app (a shared module is analysed
    once)."""
    rules = rules or AnalyzerRules()
    done: dict[str, list[Finding]] = {}
    out: list[NodeFinding] = []
    for node_id, field_name, source in sources:
        if source not in done:
            done[source] = analyze(source, rules=rules)
            record_verdict(rules, source, done[source])
        out.extend(NodeFinding(node_id, field_name, f) for f in done[source])
    return out


# --------------------------------------------------------------------------------------------
# Helpers on tree-sitter nodes

Node = tree_sitter.Node


def _text(node: Node) -> str:
    raw = node.text
    return raw.decode("utf-8", "replace") if raw is not None else ""


def _field(node: Node, name: str) -> Node | None:
    return node.child_by_field_name(name)


def _unwrap(node: Node | None) -> Node | None:
    """Strip parentheses and take the value of comma sequences: ``(0, eval)`` is ``eval``."""
    depth = 0
    while node is not None and depth < _MAX_FOLD_DEPTH:
        depth += 1
        if node.type in ("parenthesized_expression", "sequence_expression"):
            inner = [c for c in node.named_children if c.type != "comment"]
            node = inner[-1] if inner else None
        else:
            return node
    return node


def _parent(node: Node) -> Node | None:
    """The nearest ancestor that is not a parenthesis."""
    parent = node.parent
    while parent is not None and parent.type == "parenthesized_expression":
        parent = parent.parent
    return parent


def _decode_js_string(raw: str) -> str:
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt == "x" and i + 4 <= n:
            out.append(chr(int(raw[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u" and i + 2 < n and raw[i + 2] == "{":
            end = raw.index("}", i)
            out.append(chr(int(raw[i + 3 : end], 16)))
            i = end + 1
        elif nxt == "u":
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        elif nxt in "\r\n":
            i += 2  # line continuation
        else:
            out.append(_SIMPLE_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


def _static_string(node: Node | None, depth: int = 0) -> str | None:
    """The value of a string the script spells out: literals, templates without
    substitutions, and ``+`` of those. ``None`` for anything computed."""
    node = _unwrap(node)
    if node is None or depth > _MAX_FOLD_DEPTH:
        return None
    if node.type in ("string", "template_string"):
        parts: list[str] = []
        for child in node.named_children:
            if child.type == "string_fragment":
                parts.append(_text(child))
            elif child.type == "escape_sequence":
                try:
                    parts.append(_decode_js_string(_text(child)))
                except (ValueError, OverflowError):
                    return None
            else:  # a ${substitution}
                return None
        return "".join(parts)
    if node.type == "binary_expression":
        operator = _field(node, "operator")
        if operator is None or operator.type != "+":
            return None
        left = _static_string(_field(node, "left"), depth + 1)
        if left is None:
            return None
        right = _static_string(_field(node, "right"), depth + 1)
        return None if right is None else left + right
    return None


def _member_name(node: Node) -> str | None:
    """The property name of ``a.b`` or ``a["b"]`` when the script spells it out."""
    if node.type == "member_expression":
        prop = _field(node, "property")
        if prop is None or prop.type == "private_property_identifier":
            return None
        return _text(prop)
    if node.type == "subscript_expression":
        index = _field(node, "index")
        if index is not None and index.type == "number":
            return _text(index)
        return _static_string(index)
    return None


def _path(node: Node | None) -> tuple[str, ...] | None:
    """``globalThis.Object["assign"]`` → ``("Object", "assign")``; ``None`` if computed."""
    names: list[str] = []
    node = _unwrap(node)
    depth = 0
    while node is not None and depth < _MAX_FOLD_DEPTH:
        depth += 1
        if node.type == "identifier":
            names.append(_text(node))
            break
        if node.type in ("member_expression", "subscript_expression"):
            name = _member_name(node)
            if name is None:
                return None
            names.append(name)
            node = _unwrap(_field(node, "object"))
            continue
        return None
    else:
        return None
    names.reverse()
    while len(names) > 1 and names[0] in _GLOBAL_ALIASES:
        names.pop(0)
    return tuple(names)


def _is_global_object(node: Node | None) -> bool:
    node = _unwrap(node)
    return node is not None and node.type == "identifier" and _text(node) in _GLOBAL_ALIASES


def _is_builtin_prototype(node: Node | None) -> bool:
    """``Object.prototype``, ``Array.prototype``…"""
    path = _path(node)
    return path is not None and len(path) == 2 and path[1] == "prototype" and path[0] in _BUILTINS


def _arguments(node: Node) -> list[Node]:
    args = _field(node, "arguments")
    if args is None or args.type != "arguments":
        return []
    return [c for c in args.named_children if c.type != "comment"]


def _always_true(node: Node | None) -> bool:
    """Conditions a loop can never leave through: ``true``, ``1``, ``!0``, ``"x"``."""
    node = _unwrap(node)
    if node is None:
        return True
    if node.type == "expression_statement":
        inner = node.named_children
        return bool(inner) and _always_true(inner[0])
    kind = node.type
    if kind == "empty_statement" or kind == "true":
        return True
    if kind == "number":
        try:
            return float(_text(node).replace("_", "").rstrip("n") or "0") != 0
        except ValueError:
            return True  # hex, octal, binary literals: non-zero unless all zeros
    if kind in ("string", "template_string"):
        value = _static_string(node)
        return bool(value)
    if kind == "unary_expression":
        operator = _field(node, "operator")
        argument = _unwrap(_field(node, "argument"))
        if operator is not None and operator.type == "!" and argument is not None:
            return argument.type in ("false", "null", "undefined") or (
                argument.type == "number" and _always_false_number(argument)
            )
    return False


def _always_false_number(node: Node) -> bool:
    try:
        return float(_text(node).replace("_", "").rstrip("n")) == 0
    except ValueError:
        return False


def _loop_has_exit(body: Node | None, budget: list[int]) -> bool:
    """True when the loop body contains a way out: a ``break`` of this loop, a labelled
    ``break``, ``return``, ``throw`` or ``yield`` (not counting nested functions).

    ``budget[0]`` is how many more nodes the script's loop checks may visit; once it is
    spent the answer is True (no finding), so nested loops cannot make the check quadratic.
    """
    if body is None:
        return False
    inner_labels: set[str] = set()
    breaks: list[tuple[str | None, bool]] = []
    stack: list[tuple[Node, bool]] = [(body, False)]
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            return True
        node, nested = stack.pop()
        kind = node.type
        if kind in _SCOPES:
            continue
        if kind in ("return_statement", "throw_statement", "yield_expression"):
            return True
        if kind == "break_statement":
            target = _field(node, "label")
            breaks.append((_text(target) if target is not None else None, nested))
            continue
        if kind == "labeled_statement":
            defined = _field(node, "label")
            if defined is not None:
                inner_labels.add(_text(defined))
        child_nested = nested or kind in _LOOPS
        stack.extend((c, child_nested) for c in node.named_children)
    for label, nested in breaks:
        if label is None and not nested:
            return True
        if label is not None and label not in inner_labels:
            return True
    return False


# --------------------------------------------------------------------------------------------
# Regular expressions


def _quantifier(pattern: str, i: int) -> tuple[bool, bool, int]:
    """At ``pattern[i]``: (is a quantifier, is unbounded, length incl. a lazy ``?``)."""
    if i >= len(pattern):
        return False, False, 0
    ch = pattern[i]
    length = 0
    unbounded = False
    if ch in "+*":
        length, unbounded = 1, True
    elif ch == "?":
        length = 1
    elif ch == "{":
        match = re.match(r"\{(\d+)(,(\d*))?\}", pattern[i:])
        if match is None:
            return False, False, 0
        length = match.end()
        low = int(match.group(1))
        high = match.group(3)
        if match.group(2) is not None and (not high or int(high) - low >= 10):
            unbounded = True
    else:
        return False, False, 0
    if i + length < len(pattern) and pattern[i + length] == "?":
        length += 1
    return True, unbounded, length


def _nested_quantifier(pattern: str) -> bool:
    """``(a+)+``, ``(?:x*y)*``, ``((ab)+c){2,}``: a group repeated without bound that itself
    contains an unbounded repetition."""
    stack: list[bool] = []  # per open group: does it contain an unbounded quantifier?
    i = 0
    n = len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 1
            continue
        if ch == "(":
            stack.append(False)
            i += 1
            if i < n and pattern[i] == "?":  # (?: (?= (?! (?<= (?<! (?<name>
                i += 1
                if i < n and pattern[i] == "<" and i + 1 < n and pattern[i + 1] not in "=!":
                    end = pattern.find(">", i)
                    i = end + 1 if end != -1 else n
                else:
                    i += 2 if i < n and pattern[i] == "<" else 1
            continue
        if ch == ")":
            inner = stack.pop() if stack else False
            i += 1
            is_q, unbounded, length = _quantifier(pattern, i)
            if is_q and unbounded and inner:
                return True
            if stack and (inner or (is_q and unbounded)):
                stack[-1] = True
            i += length
            continue
        is_q, unbounded, length = _quantifier(pattern, i)
        if is_q:
            if unbounded and stack:
                stack[-1] = True
            i += length
            continue
        i += 1
    return False


# --------------------------------------------------------------------------------------------
# The analysis


class _Analysis:
    def __init__(self, source: str, rules: AnalyzerRules) -> None:
        self.source = source
        self.rules = rules
        self.data = source.encode("utf-8", "surrogatepass")
        self.found: dict[tuple[str, int, int], Finding] = {}
        self.declared: set[str] = set()
        # bare calls such as exec(...) whose verdict depends on the script's own declarations
        self.pending_process_calls: list[tuple[Node, str]] = []
        self._line_starts: list[int] | None = None
        self.loop_budget = [_LOOP_CHECK_BUDGET]
        self._lines: dict[int, tuple[bytes, str, bool]] = {}
        self.per_rule: dict[str, int] = {}

    # --- positions ---------------------------------------------------------------------------

    def _starts(self) -> list[int]:
        if self._line_starts is None:
            starts = [0]
            find = self.data.find
            pos = find(b"\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = find(b"\n", pos + 1)
            self._line_starts = starts
        return self._line_starts

    def _line(self, row: int) -> tuple[bytes, str, bool]:
        cached = self._lines.get(row)
        if cached is None:
            starts = self._starts()
            begin = starts[row] if row < len(starts) else 0
            end = starts[row + 1] - 1 if row + 1 < len(starts) else len(self.data)
            raw = self.data[begin:end]
            cached = (raw, raw.decode("utf-8", "replace").rstrip("\r"), raw.isascii())
            self._lines[row] = cached
        return cached

    def _position(self, node: Node) -> tuple[int, int, str]:
        row = node.start_point.row
        raw, line_text, ascii_only = self._line(row)
        column = node.start_point.column
        if not ascii_only:
            column = len(raw[:column].decode("utf-8", "replace"))
        lo = max(0, column - _SNIPPET_RADIUS)
        hi = min(len(line_text), column + _SNIPPET_RADIUS)
        snippet = line_text[lo:hi]
        if lo > 0:
            snippet = "..." + snippet
        if hi < len(line_text):
            snippet += "..."
        return row + 1, column + 1, snippet.strip()

    def add(self, rule: str, node: Node, message: str, severity: Severity | None = None) -> None:
        level: Severity = severity or RULES[rule][0]
        count = self.per_rule.get(rule, 0)
        if count >= _MAX_FINDINGS_PER_RULE:
            return  # the first ones say enough, and a blocking one is already among them
        line, column, snippet = self._position(node)
        key = (rule, line, column)
        old = self.found.get(key)
        if old is not None and _RANK[old.severity] >= _RANK[level]:
            return
        if old is None:
            self.per_rule[rule] = count + 1
        self.found[key] = Finding(rule, level, message, line, column, snippet)

    # --- driver ------------------------------------------------------------------------------

    def run(self) -> list[Finding]:
        size = len(self.data)
        if size > self.rules.max_script_bytes:
            return [
                Finding(
                    "script_too_large",
                    "high",
                    f"script is {size} bytes, over the maximum of "
                    f"{self.rules.max_script_bytes} bytes",
                    1,
                    1,
                    "",
                )
            ]
        parser = tree_sitter.Parser(_LANGUAGE)
        tree = parser.parse(self.data)
        root = tree.root_node
        handlers = self._handlers()
        stack = [root]
        while stack:
            node = stack.pop()
            handler = handlers.get(node.type)
            if handler is not None:
                handler(node)
            if node.type in _DECLARING:
                name = _field(node, "name")
                if name is not None and name.type == "identifier":
                    self.declared.add(_text(name))
            elif node.type == "formal_parameters":
                self.declared.update(
                    _text(c) for c in node.named_children if c.type == "identifier"
                )
            children = node.named_children
            children.reverse()
            stack.extend(children)
        for call, called in self.pending_process_calls:
            if called not in self.declared:
                self.add("child_process", call, f"{called}() looks like a child_process call")
        findings = sorted(self.found.values(), key=lambda f: (f.line, f.column, f.rule))
        if root.has_error:
            findings = self._partial(root, findings)
        return findings

    def _partial(self, root: Node, findings: list[Finding]) -> list[Finding]:
        where = root
        stack = [root]
        while stack:
            node = stack.pop()
            if node.is_error or node.is_missing:
                where = node
                break
            if node.has_error:
                children = node.children
                children.reverse()
                stack.extend(children)
        line, column, snippet = self._position(where)
        lowered = [
            Finding(
                f.rule,
                "medium",
                f.message + " (not blocking: the script did not parse completely)",
                f.line,
                f.column,
                f.snippet,
            )
            if f.severity == "high"
            else f
            for f in findings
        ]
        notice = Finding(
            "parse_error",
            "low",
            f"could not parse the script (syntax error or unsupported syntax near line "
            f"{line}); the other findings may be incomplete",
            line,
            column,
            snippet,
        )
        return sorted([notice, *lowered], key=lambda f: (f.line, f.column, f.rule))

    def _handlers(self) -> dict[str, _Handler]:
        return {
            "identifier": self.on_identifier,
            "shorthand_property_identifier": self.on_identifier,
            "member_expression": self.on_member,
            "subscript_expression": self.on_member,
            "call_expression": self.on_call,
            "new_expression": self.on_new,
            "regex": self.on_regex,
            "import_statement": self.on_import_statement,
            "while_statement": self.on_loop,
            "do_statement": self.on_loop,
            "for_statement": self.on_loop,
            "with_statement": self.on_with,
            "assignment_expression": self.on_assignment,
            "augmented_assignment_expression": self.on_assignment,
            "update_expression": self.on_assignment,
            "pair": self.on_pair,
        }

    # --- rules -------------------------------------------------------------------------------

    def on_identifier(self, node: Node) -> None:
        name = _text(node)
        if name == "eval":
            self._eval_reference(node)
        elif name == "Function":
            self._function_reference(node)
        if name in self.rules.blocked_globals:
            self.add("blocked_global", node, f"{name} is blocked by the configuration")

    def _eval_reference(self, node: Node) -> None:
        parent = _parent(node)
        if parent is not None and parent.type == "unary_expression":
            operator = _field(parent, "operator")
            if operator is not None and operator.type == "typeof":
                return  # feature detection
        called = (
            parent is not None
            and parent.type == "call_expression"
            and _unwrap(_field(parent, "function")) == node
        )
        if called:
            self.add("eval_usage", node, "eval() runs arbitrary code")
        else:
            self.add("eval_usage", node, "reference to eval (an indirect eval runs code)")

    def _function_reference(self, node: Node) -> None:
        """``Function`` (or ``globalThis.Function``) used in a way that can build code.

        Harmless uses pass: ``x instanceof Function``, ``typeof Function``, comparisons, and
        ``Function.prototype``/``.name``/``.length`` reads (``Function.prototype.constructor``
        is the constructor_chain rule's).
        """
        parent = _parent(node)
        if parent is not None:
            kind = parent.type
            if kind == "binary_expression":
                operator = _field(parent, "operator")
                op = operator.type if operator is not None else ""
                if op in ("instanceof", "===", "!==", "==", "!="):
                    return
            elif kind == "unary_expression":
                operator = _field(parent, "operator")
                if operator is not None and operator.type == "typeof":
                    return
            elif (
                kind in ("member_expression", "subscript_expression")
                and _unwrap(_field(parent, "object")) == node
                and _member_name(parent) not in ("call", "apply", "bind", "constructor")
            ):
                return
        self.add("function_constructor", node, "the Function constructor compiles code")

    def on_member(self, node: Node) -> None:
        name = _member_name(node)
        if name is None:
            return
        obj = _unwrap(_field(node, "object"))
        if obj is None:
            return
        if _is_global_object(obj):
            if name == "eval":
                self._eval_reference(node)
            elif name == "Function":
                self._function_reference(node)
            elif name in self.rules.blocked_globals:
                self.add("blocked_global", node, f"{name} is blocked by the configuration")
        if name == "constructor":
            self._constructor(node, obj)
        elif name == "__proto__":
            self.add("proto_access", node, "__proto__ access changes or exposes a prototype")
        elif name in _LEGACY_ACCESSORS:
            self.add("proto_access", node, f"{name} manipulates property accessors")
        elif name in _PROCESS_INTERNALS and obj.type == "identifier" and _text(obj) == "process":
            self.add("child_process", node, f"process.{name} reaches native internals")

    def _constructor(self, node: Node, obj: Node) -> None:
        if obj.type in ("member_expression", "subscript_expression"):
            inner = _member_name(obj)
            if inner == "constructor":
                self.add("constructor_chain", node, ".constructor.constructor reaches Function")
                return
            if inner == "prototype":
                base = _path(_field(obj, "object"))
                base_node = _unwrap(_field(obj, "object"))
                if base == ("Function",) or (
                    base_node is not None and base_node.type in _FUNCTION_LITERALS
                ):
                    self.add("constructor_chain", node, "Function.prototype.constructor")
                    return
        if obj.type in _FUNCTION_LITERALS:
            self.add("constructor_chain", node, "the constructor of a function is Function")
            return
        if obj.type == "identifier" and _text(obj) == "Function":
            self.add("constructor_chain", node, "Function.constructor is Function")
            return
        if obj.type == "call_expression" and _path(_field(obj, "function")) in (
            ("Object", "getPrototypeOf"),
            ("Reflect", "getPrototypeOf"),
        ):
            args = _arguments(obj)
            first = _unwrap(args[0]) if args else None
            if first is not None and first.type in _FUNCTION_LITERALS:
                self.add(
                    "constructor_chain",
                    node,
                    "the constructor of a function's prototype is a Function constructor",
                )
                return
        is_this = obj.type == "this"
        parent = _parent(node)
        if parent is not None and not is_this:
            if parent.type == "call_expression" and _unwrap(_field(parent, "function")) == node:
                if _arguments(parent):
                    self.add("constructor_chain", node, "calling .constructor(...) with code")
                else:
                    self.add("constructor_chain", node, "calling .constructor() directly", "medium")
                return
            if parent.type == "new_expression" and _unwrap(_field(parent, "constructor")) == node:
                args = _arguments(parent)
                if any(_static_string(a) is not None for a in args):
                    self.add(
                        "constructor_chain", node, "new .constructor(...) with a string argument"
                    )
                    return
        if node.type == "subscript_expression":
            self.add("constructor_chain", node, 'computed ["constructor"] access', "medium")

    def on_call(self, node: Node) -> None:
        function = _field(node, "function")
        if function is None:
            return
        args = _arguments(node)
        if function.type == "import":
            self.add("dynamic_import", node, "import() is not available to scripts")
            module = _static_string(args[0]) if args else None
            if module is not None:
                self._module(node, module)
            return
        path = _path(function)
        if path is None:
            return
        if path == ("require",):
            module = _static_string(args[0]) if args else None
            if module is None:
                self.add("dynamic_require", node, "require() of a computed module name")
            else:
                self._module(node, module)
            return
        if len(path) == 1:
            name = path[0]
            if name in _TIMERS and args and _static_string(args[0]) is not None:
                self.add("eval_usage", node, f"{name}() with a string runs it as code")
            elif name in _PROCESS_FUNCTIONS:
                self.pending_process_calls.append((node, name))
            elif name == "RegExp":
                self._regexp_call(node, args)
            elif name == "Buffer":
                self.add("buffer_constructor", node, "Buffer() is deprecated and unsafe")
            return
        if path[-1] in _PROCESS_METHODS and (
            path[0] in _PROCESS_OBJECTS or (len(path) == 2 and path[0] == "require")
        ):
            self.add("child_process", node, f"{'.'.join(path)}() spawns a process")
            return
        head = (path[0], path[1]) if len(path) == 2 else None
        if head is None or not args:
            return
        first = args[0]
        if head in _PROTO_SETTERS:
            if _is_global_object(first) or _is_builtin_prototype(first):
                self.add(
                    "proto_access",
                    node,
                    f"{'.'.join(head)} on the global object or a built-in prototype",
                    "high",
                )
        elif head in _GLOBAL_WRITERS:
            if _is_global_object(first):
                self.add("global_assignment", node, f"{'.'.join(head)} on the global object")
            elif _is_builtin_prototype(first):
                self.add("proto_access", node, f"{'.'.join(head)} on a built-in prototype")
        elif head in _PROPERTY_READERS and len(args) > 1:
            key = _static_string(args[1])
            if key == "constructor":
                self.add("constructor_chain", node, f"{'.'.join(head)}(…, 'constructor')", "medium")
            elif key == "__proto__":
                self.add("proto_access", node, f"{'.'.join(head)}(…, '__proto__')")

    def on_new(self, node: Node) -> None:
        path = _path(_field(node, "constructor"))
        if path == ("RegExp",):
            self._regexp_call(node, _arguments(node))
        elif path == ("Buffer",):
            self.add("buffer_constructor", node, "new Buffer() is deprecated and unsafe")

    def _regexp_call(self, node: Node, args: list[Node]) -> None:
        if not args:
            return
        pattern = _static_string(args[0])
        if pattern is None:
            first = _unwrap(args[0])
            if first is not None and first.type != "regex":
                self.add(
                    "dangerous_regex",
                    node,
                    "regular expression built from a computed string (ReDoS risk with input)",
                )
            return
        if _nested_quantifier(pattern):
            self.add("dangerous_regex", node, f"nested quantifier in /{pattern[:60]}/")

    def on_regex(self, node: Node) -> None:
        pattern = _field(node, "pattern")
        if pattern is not None and _nested_quantifier(_text(pattern)):
            self.add("dangerous_regex", node, f"nested quantifier in /{_text(pattern)[:60]}/")

    def _module(self, node: Node, module: str) -> None:
        base = module.removeprefix("node:")
        root = base.split("/", 1)[0]
        if root in _FS_MODULES:
            self.add("file_system_access", node, f"module {module!r} accesses files")
        elif root in _PROCESS_MODULES:
            self.add("child_process", node, f"module {module!r} creates processes or threads")
        elif root in _CODE_MODULES:
            self.add("eval_usage", node, f"module {module!r} compiles or inspects code")
        elif root in _NET_MODULES:
            self.add("network_access", node, f"module {module!r} opens network connections")

    def on_import_statement(self, node: Node) -> None:
        source = _field(node, "source")
        module = _static_string(source)
        if module is not None:
            self._module(node, module)

    def on_loop(self, node: Node) -> None:
        condition = _field(node, "condition")
        if node.type == "for_statement" and condition is None:
            infinite = True
        else:
            infinite = _always_true(condition) if condition is not None else False
        if infinite and not _loop_has_exit(_field(node, "body"), self.loop_budget):
            kind = {"while_statement": "while", "do_statement": "do…while", "for_statement": "for"}
            self.add(
                "infinite_loop",
                node,
                f"{kind[node.type]} loop with a constant condition and no break/return/throw",
            )

    def on_with(self, node: Node) -> None:
        self.add("with_statement", node, "with statement")

    def on_assignment(self, node: Node) -> None:
        target = _unwrap(
            _field(node, "argument") if node.type == "update_expression" else _field(node, "left")
        )
        if target is None or target.type not in ("member_expression", "subscript_expression"):
            return
        obj = _unwrap(_field(target, "object"))
        if obj is None:
            return
        if obj.type == "identifier" and (_text(obj) in _GLOBAL_ALIASES or _text(obj) == "process"):
            name = _member_name(target)
            shown = f"{_text(obj)}.{name}" if name is not None else f"{_text(obj)}[…]"
            self.add("global_assignment", node, f"assignment to {shown}")
        elif _is_builtin_prototype(obj) or _is_builtin_prototype(target):
            self.add("proto_access", node, "modifies a built-in prototype")

    def on_pair(self, node: Node) -> None:
        key = _field(node, "key")
        if key is None:
            return
        name = _text(key) if key.type == "property_identifier" else _static_string(key)
        if name == "__proto__":
            self.add("proto_access", node, "__proto__ key in an object literal sets its prototype")


_RANK: Mapping[str, int] = {"low": 0, "medium": 1, "high": 2}

if TYPE_CHECKING:
    from collections.abc import Callable

    _Handler = Callable[[Node], None]

"""What the script analyzer reports and checks, without the parser; and its verdicts.

:mod:`nflow.security._analyzer` parses scripts with tree-sitter (3.9 MB a process with its
grammar). Its findings and rules live here, with the verdicts of scripts already analysed:
the short-lived child that checks an ``nflow serve`` start records what it found
(:func:`start_recording`, :func:`recorded`), the master hands that to the workers
(:func:`load_verdicts`), and a worker loading the same scripts under the same rules takes the
findings from there instead of parsing them again. A script it has no verdict for (a changed
app, other rules) is analysed as before: the parser is imported then.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_SCRIPT_BYTES",
    "RULES",
    "AnalyzerRules",
    "Finding",
    "NodeFinding",
    "Severity",
    "blocks",
    "known_findings",
    "load_verdicts",
    "playbook_sources",
    "record_verdict",
    "recorded",
    "start_recording",
]

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Literal

import orjson

from nflow.errors import Problem

if TYPE_CHECKING:
    from nflow.config import SecurityConfig
    from nflow.playbook import Playbook

Severity = Literal["high", "medium", "low"]

DEFAULT_MAX_SCRIPT_BYTES = 512 * 1024

# rule → (severity, what it means). The first ten are the Go analyzer's names.
RULES: Mapping[str, tuple[Severity, str]] = {
    "eval_usage": ("high", "eval (or a timer given a string) runs arbitrary code"),
    "function_constructor": ("high", "the Function constructor compiles arbitrary code"),
    "file_system_access": ("high", "file system modules are not available to scripts"),
    "child_process": ("high", "process creation is not available to scripts"),
    "network_access": ("medium", "network modules are not available to scripts"),
    "infinite_loop": ("medium", "a loop with a constant condition and no way out"),
    "global_assignment": ("medium", "writes to the global object"),
    "dynamic_require": ("medium", "require() of a computed module name"),
    "dangerous_regex": ("low", "a regular expression prone to catastrophic backtracking"),
    "buffer_constructor": ("low", "deprecated Buffer constructor"),
    "constructor_chain": ("high", "a constructor chain that reaches Function"),
    "proto_access": ("medium", "prototype manipulation (__proto__, built-in prototypes)"),
    "dynamic_import": ("high", "import() is not available to scripts"),
    "with_statement": ("medium", "with statements change scope resolution"),
    "script_too_large": ("high", "the script is larger than the configured maximum"),
    "blocked_global": ("high", "use of a global the configuration blocks"),
    "parse_error": ("low", "the analyzer could not parse the script"),
}


# --------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule hit: where (1-based line and column, in characters) and what."""

    rule: str
    severity: Severity
    message: str
    line: int
    column: int
    snippet: str

    def __str__(self) -> str:
        return f"line {self.line}:{self.column}: {self.rule} ({self.severity}): {self.message}"


@dataclass(frozen=True, slots=True)
class NodeFinding:
    """A finding in one script of an app: the node id and the field it came from."""

    node: str
    field: str  # "code" (inline) or "script" (a module of the modules table)
    finding: Finding

    @property
    def rule(self) -> str:
        return self.finding.rule

    @property
    def severity(self) -> Severity:
        return self.finding.severity

    @property
    def line(self) -> int:
        return self.finding.line

    def to_problem(self, *, block: bool, tab: str = "") -> Problem:
        """As an ``nflow check`` problem: an error when it blocks the app, else a warning."""
        blocking = block and self.finding.severity == "high"
        return Problem(
            "error" if blocking else "warning",
            f"security {self.finding.rule} ({self.finding.severity}): {self.finding.message}",
            node=self.node,
            field=self.field,
            tab=tab,
            line=self.finding.line,
        )


@dataclass(frozen=True, slots=True)
class AnalyzerRules:
    """What the analyzer checks and what a high finding means.

    ``allowed_patterns`` are regular expressions: a finding is dropped when one of them
    matches its rule name exactly or is found in its snippet (the flagged line).
    """

    enabled: bool = True
    block_on_high: bool = True
    allowed_patterns: tuple[str, ...] = ()
    max_script_bytes: int = DEFAULT_MAX_SCRIPT_BYTES
    blocked_globals: frozenset[str] = frozenset()
    disabled_rules: frozenset[str] = frozenset()
    cache_ttl_seconds: float = 300.0
    _allowed: tuple[re.Pattern[str], ...] = field(
        default=(), init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.max_script_bytes < 1:
            raise ValueError("max_script_bytes must be at least 1")
        unknown = set(self.disabled_rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown analyzer rule(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "_allowed", tuple(re.compile(p) for p in self.allowed_patterns))

    @classmethod
    def from_config(
        cls,
        config: SecurityConfig,
        *,
        max_script_bytes: int = DEFAULT_MAX_SCRIPT_BYTES,
        blocked_globals: Iterable[str] = (),
        disabled_rules: Iterable[str] = (),
    ) -> AnalyzerRules:
        """Rules from the ``[security]`` section.

        ``[security]`` has no size key, so the maximum script size is an argument (pass a
        ``[limits]`` value if one is added); ``blocked_globals`` likewise.
        """
        ttl = config.cache_ttl_minutes * 60.0 if config.cache_analysis_results else 0.0
        return cls(
            enabled=config.enable_static_analysis,
            block_on_high=config.block_on_high_severity,
            allowed_patterns=tuple(config.allowed_patterns),
            max_script_bytes=max_script_bytes,
            blocked_globals=frozenset(blocked_globals),
            disabled_rules=frozenset(disabled_rules),
            cache_ttl_seconds=ttl,
        )

    @property
    def mode(self) -> Literal["block", "warn"]:
        return "block" if self.block_on_high else "warn"

    def allows(self, finding: Finding) -> bool:
        """True when an allowed pattern suppresses this finding."""
        return any(p.fullmatch(finding.rule) or p.search(finding.snippet) for p in self._allowed)

    def blocks(self, findings: Iterable[Finding | NodeFinding]) -> bool:
        """True when these findings must stop the app from being served."""
        return blocks(findings, self)


def blocks(findings: Iterable[Finding | NodeFinding], rules: AnalyzerRules) -> bool:
    """``block`` mode and at least one high finding."""
    if not (rules.enabled and rules.block_on_high):
        return False
    return any(f.severity == "high" for f in findings)


def playbook_sources(
    playbook: Playbook, modules: Mapping[str, str | None]
) -> Iterator[tuple[str, str, str]]:
    """The ``(node_id, field, source)`` of every js node, chosen as the runtime does:
    non-blank inline ``code`` wins, else the ``script`` module's code (missing modules
    are skipped: ``check_playbook`` reports them)."""
    for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
        if node.type != "js":
            continue
        code = node.data.get("code")
        script = node.data.get("script")
        if isinstance(code, str) and code.strip():
            yield node.id, "code", code
        elif isinstance(script, str) and script:
            module = modules.get(script)
            if module:
                yield node.id, "script", module


# --------------------------------------------------------------------------------------------
# Verdicts carried from the process that analysed a script to the processes that load it

_verdicts: dict[str, tuple[Finding, ...]] = {}
_recording = False


def _verdict_key(rules: AnalyzerRules, source: str) -> str:
    what = (
        sorted(rules.allowed_patterns),
        rules.max_script_bytes,
        sorted(rules.blocked_globals),
        sorted(rules.disabled_rules),
    )
    digest = hashlib.sha256(orjson.dumps(what))
    digest.update(source.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def start_recording() -> None:
    """Keep the verdict of every script analysed from now on, for :func:`recorded`."""
    global _recording
    _recording = True


def record_verdict(rules: AnalyzerRules, source: str, findings: Sequence[Finding]) -> None:
    if _recording:
        _verdicts[_verdict_key(rules, source)] = tuple(findings)


def recorded() -> bytes:
    """The verdicts kept since :func:`start_recording`, as JSON for :func:`load_verdicts`."""
    return orjson.dumps({k: [astuple(f) for f in v] for k, v in _verdicts.items()})


def load_verdicts(data: bytes) -> None:
    """Take the verdicts another process recorded (the same nflow, so the same analyzer)."""
    for key, rows in orjson.loads(data).items():
        _verdicts[key] = tuple(Finding(*row) for row in rows)


def known_findings(
    sources: Iterable[tuple[str, str, str]], rules: AnalyzerRules
) -> list[NodeFinding] | None:
    """What :func:`~nflow.security.check_app` finds, from the verdicts alone; None when a
    script has none (it must be analysed)."""
    if not _verdicts:
        return None
    out: list[NodeFinding] = []
    for node_id, field_name, source in sources:
        found = _verdicts.get(_verdict_key(rules, source))
        if found is None:
            return None
        out.extend(NodeFinding(node_id, field_name, f) for f in found)
    return out

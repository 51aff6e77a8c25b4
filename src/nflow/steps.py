"""Custom steps in Python: node types whose work is a Python function instead of a script.

A package (or the program embedding nflow) registers a function for a Drawflow node type::

    from pydantic import BaseModel
    import nflow

    class In(BaseModel):
        text: str

    class Out(BaseModel):
        slug: str

    @nflow.step("slugify", input=In, output=Out)
    def slugify(ctx: nflow.StepContext, data: In) -> Out:
        return Out(slug=data.text.lower().replace(" ", "-"))

Nodes whose ``data.type`` is ``"slugify"`` then run it. Its input is the payload with the
node's own ``data`` fields on top (the designer's configuration wins over request values), and
its output is merged into the payload. Installed packages make their steps known through the
``nflow.steps`` entry-point group; :func:`discover_steps` imports them (the Runtime does so when
it opens, ``nflow check`` before it checks).
"""

from __future__ import annotations

__all__ = [
    "KNOWN_NODE_TYPES",
    "RequestInfo",
    "StepContext",
    "StepDefinition",
    "StepError",
    "StepInputError",
    "StepRegistrationError",
    "discover_steps",
    "registered_steps",
    "step",
    "unregister_step",
]

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from nflow.errors import NflowError, ScriptError

# The node types the engine runs itself; a custom step cannot take one of these names.
KNOWN_NODE_TYPES = frozenset(
    {"starter", "js", "wasm", "gorutine", "parallel", "join", "dromedary", "dromedary_callback"}
)

if TYPE_CHECKING:
    from nflow._http import Request

F = TypeVar("F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "nflow.steps"


class StepRegistrationError(NflowError):
    """A step could not be registered, or an ``nflow.steps`` entry point could not be loaded."""


class StepError(ScriptError):
    """A custom step raised or returned something unusable; answered like a script error."""


class StepInputError(StepError):
    """The payload and node data did not validate into the step's input model."""

    def __init__(self, message: str, *, node: str = "", fields: tuple[str, ...] = ()) -> None:
        super().__init__(message, node=node, name="ValidationError")
        self.fields = fields


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """One registered node type: its function, its models and where it came from."""

    name: str
    func: Callable[..., Any]
    input: type[BaseModel] | None
    output: type[BaseModel] | None
    is_async: bool
    origin: str  # the distribution that declared it, or the function's module

    @property
    def qualname(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


class RequestInfo:
    """The request that started the run, read-only: a step reads it but cannot change it."""

    __slots__ = ("_request", "_vars")

    def __init__(self, request: Request, path_vars: Mapping[str, str]) -> None:
        self._request = request
        self._vars = path_vars

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def path(self) -> str:
        return self._request.path

    @property
    def query_string(self) -> str:
        return self._request.query_string

    @property
    def query(self) -> Mapping[str, tuple[str, ...]]:
        return MappingProxyType({k: tuple(v) for k, v in self._request.query.items()})

    @property
    def headers(self) -> Mapping[str, tuple[str, ...]]:
        """Go-canonical names (``Content-Type``), every value of each."""
        return MappingProxyType({k: tuple(v) for k, v in self._request.headers.items()})

    def header(self, name: str) -> str:
        """The first value of a header (any case), or ``""``."""
        return self._request.header(name)

    @property
    def path_vars(self) -> Mapping[str, str]:
        """Values of the starter's ``:name`` pattern segments."""
        return MappingProxyType(dict(self._vars))

    @property
    def client_ip(self) -> str:
        return self._request.client_ip

    @property
    def host(self) -> str:
        return self._request.host

    @property
    def scheme(self) -> str:
        return self._request.scheme

    @property
    def body(self) -> bytes:
        return self._request.body

    def __repr__(self) -> str:
        return f"RequestInfo({self.method} {self.path})"


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a custom step knows about the run that called it.

    ``data`` is the node's designer data and ``payload`` the payload it received (both
    read-only; return what should change). ``log`` tags its lines with wid, app and node.
    """

    type: str
    wid: str
    app: str
    node_id: str
    node_name: str
    data: Mapping[str, Any]
    payload: Mapping[str, Any]
    request: RequestInfo
    env: Mapping[str, str]
    log: logging.LoggerAdapter[logging.Logger]
    deadline: float  # time.monotonic() value when the step's time limit ends

    def remaining(self) -> float:
        """Seconds left before the step is answered with 408 (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


_registry: dict[str, StepDefinition] = {}
_loaded_entry_points: set[str] = set()
_origin: list[str] = []  # distribution being loaded by discover_steps, innermost last


def step(
    type_name: str,
    *,
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the handler of nodes of type ``type_name``.

    The function is called as ``func(ctx, data)``: ``ctx`` a :class:`StepContext`, ``data`` an
    ``input`` model instance (or a plain dict without one). It returns an ``output`` model, a
    dict or ``None`` (merged into the payload), optionally as ``(value, "output_2")`` to pick
    the output to follow. ``async def`` functions run on the runtime's I/O loop.
    """
    if not isinstance(type_name, str) or not type_name.strip() or type_name != type_name.strip():
        raise StepRegistrationError(
            f"step type must be a non-empty string without surrounding spaces, got {type_name!r}"
        )
    if type_name in KNOWN_NODE_TYPES:
        raise StepRegistrationError(
            f"step type {type_name!r} is a built-in node type and cannot be replaced"
        )
    for role, model in (("input", input), ("output", output)):
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise StepRegistrationError(
                f"step {type_name!r}: {role}= must be a pydantic BaseModel subclass, got {model!r}"
            )

    def register(func: F) -> F:
        if not callable(func):
            raise StepRegistrationError(f"step {type_name!r}: {func!r} is not callable")
        try:
            inspect.signature(func).bind(None, None)
        except TypeError:
            raise StepRegistrationError(
                f"step {type_name!r}: {func.__qualname__} must accept two arguments (ctx, data)"
            ) from None
        except ValueError:  # no signature available (some builtins): trust the caller
            pass
        definition = StepDefinition(
            name=type_name,
            func=func,
            input=input,
            output=output,
            is_async=inspect.iscoroutinefunction(func),
            origin=_origin[-1] if _origin else func.__module__,
        )
        current = _registry.get(type_name)
        if current is not None and current.qualname != definition.qualname:
            raise StepRegistrationError(
                f"step type {type_name!r} is already registered by {current.qualname} "
                f"({current.origin}); {definition.qualname} cannot take it"
            )
        _registry[type_name] = definition  # the same function again (a module reload) replaces
        return func

    return register


def registered_steps() -> Mapping[str, StepDefinition]:
    """Every registered node type, read-only, by type name."""
    return MappingProxyType(_registry)


def unregister_step(type_name: str) -> bool:
    """Forget a node type; True if it was registered."""
    return _registry.pop(type_name, None) is not None


def discover_steps() -> list[str]:
    """Import the modules named by installed ``nflow.steps`` entry points; their names.

    Each entry point is loaded once per process. A module that fails to import stops with a
    :class:`StepRegistrationError` naming the entry point and its package, rather than serving
    apps whose node types silently disappeared.
    """
    loaded: list[str] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        key = f"{ep.name}={ep.value}"
        if key in _loaded_entry_points:
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown package"
        _origin.append(dist)
        try:
            ep.load()
        except StepRegistrationError as exc:
            raise StepRegistrationError(
                f"entry point {ep.name!r} ({ENTRY_POINT_GROUP}, package {dist}): {exc}"
            ) from exc
        except Exception as exc:
            raise StepRegistrationError(
                f"entry point {ep.name!r} ({ENTRY_POINT_GROUP}, package {dist}) could not load "
                f"{ep.value!r}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _origin.pop()
        _loaded_entry_points.add(key)
        loaded.append(ep.name)
    return loaded

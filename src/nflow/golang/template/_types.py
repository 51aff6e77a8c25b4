"""The public value types: :class:`TemplateError` and :class:`HTML`."""

from __future__ import annotations

from typing import Final, Literal

# ---------------------------------------------------------------------------------------------
# Public types


class TemplateError(Exception):
    """A parse, escaping or execution error, worded like Go's.

    ``phase`` is ``"parse"`` (Go panics in ``template.Must``), ``"escape"`` (Go's ``Execute``
    returns the error and writes nothing) or ``"exec"`` (Go has already written ``output``,
    the partial page, when it stops).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        line: int,
        phase: Literal["parse", "escape", "exec"],
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.phase = phase
        self.output = output


class HTML(str):
    """A string known to be safe HTML (Go's ``template.HTML``); escapers pass it through."""

    __slots__ = ()


class _GoInt(int):
    """An ``int`` constant from the template text.

    Go distinguishes ``int`` (literals, range indexes, ``len``) from the ``int64`` values that
    come from JavaScript; only error messages show the difference.
    """

    __slots__ = ()


class _Invalid:
    """The zero ``reflect.Value``: a missing map key, or nil after a pipeline stage."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()


class _NoFinal:
    """``missingVal``: the command is the first of its pipeline, so it gets no piped value."""

    __slots__ = ()


_NO_FINAL: Final = _NoFinal()

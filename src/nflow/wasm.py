"""The sandbox of wasm nodes: WASI preview 1 command modules run by wasmtime, within limits.

A module is compiled once per process for its bytes (keyed by their sha256, so the same
module named by several nodes or app versions compiles once) and instantiated in a fresh
store for every run: nothing one run leaves in linear memory or globals reaches the next.
A run gets the payload on stdin and nothing else: no preopened directory, no environment
variable, no argument but its name, no socket. Its time limit is an epoch deadline (a ticker
thread advances the engine's epoch while modules run), its memory cap the store's limiter,
and what it writes to stdout is cut off at the same cap.

stdin, stdout and stderr are nflow's own ``fd_read``/``fd_write`` (shadowing WASI's), called
on the thread that runs the module: wasmtime's custom output streams call back into Python
from its own I/O threads (a thread switch per write, and once an abort of the interpreter at
exit), and offer stdin only from a file.

wasmtime is the optional ``nflow[wasm]`` extra, imported on first use: a process that serves
no wasm node never loads it.
"""

from __future__ import annotations

__all__ = [
    "EXTRA_HINT",
    "SOURCE_FIELDS",
    "CompiledModule",
    "WasmError",
    "WasmFailed",
    "WasmMemoryLimit",
    "WasmModuleError",
    "WasmModuleMissing",
    "WasmTimeout",
    "WasmUnavailable",
    "compile_module",
    "compile_stats",
    "module_bytes",
    "node_source",
]

import atexit
import base64
import binascii
import ctypes
import hashlib
import math
import os
import re
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nflow.errors import NflowError

# Where a wasm node's module comes from, in the order they are looked at.
SOURCE_FIELDS = ("wat", "wasm_b64", "module")
EXTRA_HINT = "install the extra with `pip install 'nflow[wasm]'`"
_MAGIC = b"\0asm"
# The epoch advances this often while modules run: a time limit is kept to within a tick.
_TICK_SECONDS = 0.01
# ... and goes on ticking this long after the last run ended.
_IDLE_SECONDS = 2.0
# What a failed run's stderr may add to its error message.
_STDERR_BYTES = 2048
# WASI errno values the stream functions answer with.
_EBADF, _EFAULT, _EFBIG, _EINVAL = 8, 21, 22, 28
# POSIX's IOV_MAX: a module cannot keep the host busy walking millions of empty buffers.
_IOV_MAX = 1024
_WASI = "wasi_snapshot_preview1"
# Where wat2wasm found an error: "--> <anon>:LINE:COLUMN".
_WAT_POSITION = re.compile(r"--> .*:(\d+):(\d+)$")


class WasmError(NflowError):
    """A wasm module could not be used or run."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WasmUnavailable(WasmError):
    """wasmtime (the ``nflow[wasm]`` extra) is not installed."""


class WasmModuleError(WasmError):
    """A node's module is missing, does not decode, does not compile or is no WASI command.

    ``field`` names the node data field it came from (``wat``, ``wasm_b64``, ``module``).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class WasmModuleMissing(WasmModuleError):
    """``module`` names a row that is not in the modules table."""


class WasmTimeout(WasmError):
    """The run passed its time limit."""


class WasmMemoryLimit(WasmError):
    """The run needed more memory than its cap (or wrote more than that to stdout)."""


class WasmFailed(WasmError):
    """The module trapped or exited with a non-zero code; ``stderr`` is what it wrote there."""

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def node_source(data: Mapping[str, Any], modules: Mapping[str, str | None]) -> tuple[str, str]:
    """The field a wasm node's module comes from and its text (WAT, or base64 of a binary).

    The first of ``wat``, ``wasm_b64`` and ``module`` that is set wins; ``module`` names a row
    of the modules table holding the base64 binary.
    """
    for field in SOURCE_FIELDS:
        value = data.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise WasmModuleError(
                f"{field} must be a string, got {type(value).__name__}", field=field
            )
        if field != "module":
            return field, value
        if value not in modules:
            raise WasmModuleMissing(
                f"module {value!r} is not in the modules table (import it with `nflow import`)",
                field=field,
            )
        code = modules[value]
        if not code or not code.strip():
            raise WasmModuleError(
                f"module {value!r} is empty; expected the base64 of a wasm binary", field=field
            )
        return field, code
    raise WasmModuleError(
        "a wasm node needs its module in data.wat (WebAssembly text), data.wasm_b64 (base64 "
        "of a binary) or data.module (a modules table row holding the base64 binary)",
        field="wat",
    )


def module_bytes(field: str, text: str) -> bytes:
    """The binary module of a source field's text: WAT compiled, base64 decoded."""
    if field == "wat":
        wasmtime = _wasmtime()
        try:
            return bytes(wasmtime.wat2wasm(text))
        except wasmtime.WasmtimeError as exc:
            raise WasmModuleError(
                f"invalid WebAssembly text: {_first_line(exc)}", field=field
            ) from None
    what = "module's code" if field == "module" else field
    try:
        binary = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WasmModuleError(f"the {what} is not valid base64: {exc}", field=field) from None
    if not binary.startswith(_MAGIC):
        raise WasmModuleError(
            f"the {what} does not decode to a wasm binary (it does not start with \\0asm)",
            field=field,
        )
    return binary


@dataclass(frozen=True, slots=True, eq=False)
class CompiledModule:
    """A module compiled and linked against WASI, ready to instantiate in fresh stores."""

    sha256: str
    size: int
    _pre: Any  # wasmtime.InstancePre: every import resolved once

    def run(
        self,
        stdin: bytes,
        *,
        timeout: float,
        memory_bytes: int,
        name: str = "main.wasm",
    ) -> bytes:
        """Run ``_start`` once in a new store; what it wrote to stdout.

        Raises :class:`WasmTimeout` past ``timeout`` seconds, :class:`WasmMemoryLimit` when
        it needed more than ``memory_bytes`` of linear memory or wrote more than that, and
        :class:`WasmFailed` when it trapped or exited with a non-zero code.
        """
        wasmtime = _wasmtime()
        state = _state()
        store = wasmtime.Store(state.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [name]
        store.set_wasi(wasi)
        store.set_limits(memory_size=memory_bytes)
        store.set_epoch_deadline(math.ceil(timeout / _TICK_SECONDS) + 1)
        io = _Streams(stdin, memory_bytes)
        out, err = io.stdout, io.stderr
        instance = None
        _local.streams = io
        state.ticker.enter()
        try:
            try:
                instance = self._pre.instantiate(store)
                exports = instance.exports(store)
                io.memory = exports.get("memory")
                exports["_start"](store)
            finally:
                state.ticker.leave()
                _local.streams = None
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                self._failed(
                    f"exited with code {exc.code}", store, instance, memory_bytes, err, out
                )
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                raise WasmTimeout(f"ran longer than its time limit of {timeout:.3g}s") from None
            where = _trap_function(exc)
            self._failed(
                f"trapped: {_first_line(exc)}{where}", store, instance, memory_bytes, err, out
            )
        except wasmtime.WasmtimeError as exc:
            # Instantiation refused: an initial memory above the cap among the reasons.
            text = _first_line(exc)
            if instance is None and "memory" in text and "limit" in text:
                raise WasmMemoryLimit(
                    f"needs more than its memory cap of {_mib(memory_bytes)} to start: {text}"
                ) from None
            self._failed(f"failed: {text}", store, instance, memory_bytes, err, out)
        if out.over:
            raise WasmMemoryLimit(f"wrote more than its memory cap of {_mib(memory_bytes)}")
        return out.value()

    def _failed(
        self,
        what: str,
        store: Any,
        instance: Any,
        memory_bytes: int,
        err: _Capped,
        out: _Capped,
    ) -> None:
        used = _memory_used(store, instance)
        stderr = err.value().decode("utf-8", "replace").strip()
        said = f"; stderr: {stderr}" if stderr else ""
        # memory.grow answers -1 at the cap and the module decides what that means (wasi-libc's
        # malloc returns NULL, abort() traps): a failure once memory is within a page of the
        # cap, or past half of it (where a doubling buffer fails), is put down to the cap.
        if out.over or used + 65536 > memory_bytes or used * 2 > memory_bytes:
            raise WasmMemoryLimit(
                f"{what} with its linear memory at {_mib(used)} of its memory cap of "
                f"{_mib(memory_bytes)}{said}"
            )
        raise WasmFailed(f"{what}{said}", stderr=stderr)


def compile_module(binary: bytes, *, field: str = "wasm_b64") -> CompiledModule:
    """The compiled module for ``binary``, from the process cache when these bytes were
    compiled before. Raises :class:`WasmModuleError` naming ``field`` when the bytes are not
    a valid module or not a WASI command (an ``_start`` function, WASI imports only)."""
    digest = hashlib.sha256(binary).hexdigest()
    state = _state()
    found = state.compiled.get(digest)
    if found is not None:
        state.hits += 1
        return found
    with state.lock:  # one compilation per module, however many threads ask at once
        found = state.compiled.get(digest)
        if found is not None:
            state.hits += 1
            return found
        compiled = _compile(state, binary, digest, field)
        if len(state.compiled) >= 1024:
            state.compiled.clear()  # app versions come and go: a bound, not an LRU
        state.compiled[digest] = compiled
        state.compiles += 1
        return compiled


def compile_stats() -> dict[str, int]:
    """Modules compiled by this process, cache hits, and modules held now."""
    state = _STATE
    if state is None or state.pid != os.getpid():
        return {"compiles": 0, "hits": 0, "cached": 0}
    return {"compiles": state.compiles, "hits": state.hits, "cached": len(state.compiled)}


# ------------------------------------------------------------------------------------------
# wasmtime


def _wasmtime() -> Any:
    try:
        import wasmtime
    except ImportError as exc:
        raise WasmUnavailable(
            f"wasm nodes need wasmtime, which is not installed ({exc.name} is missing): "
            f"{EXTRA_HINT}"
        ) from None
    return wasmtime


class _Ticker:
    """Advances the engine's epoch every tick while modules run, and for a while after.

    A store's epoch deadline is counted in ticks from its start, so a module that loops past
    its time limit traps with an interrupt within a tick of it. The epoch follows the clock,
    not the number of wake-ups: on a busy machine the thread may wake late, and then adds
    every tick that passed. It keeps ticking for ``_IDLE_SECONDS`` after the last run, so a
    steady stream of short runs never has to wake it (a wake-up would make the thread
    starting a run hand the GIL over first); idle longer, it waits, and the epoch stands
    still, which no deadline notices: each counts from the epoch its run started at.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._active = 0
        self._last_run = 0.0
        self._sleeping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._tick, name="nflow-wasm-epoch", daemon=True
                )
                self._thread.start()
            elif self._sleeping:
                self._sleeping = False
                self._cond.notify()

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._last_run = time.monotonic()

    def _tick(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(_TICK_SECONDS)
            now = time.monotonic()
            ticks = max(1, int((now - last) / _TICK_SECONDS))
            last += ticks * _TICK_SECONDS
            for _ in range(ticks):
                self._engine.increment_epoch()
            if self._active == 0 and now - self._last_run > _IDLE_SECONDS:
                with self._cond:  # asked again under the lock: a run may just have entered
                    if self._active == 0:
                        self._sleeping = True
                        while self._sleeping:
                            self._cond.wait()
                last = time.monotonic()  # the idle time was no run's time


class _State:
    """This process's engine, WASI linker, epoch ticker and compiled modules."""

    def __init__(self) -> None:
        wasmtime = _wasmtime()
        config = wasmtime.Config()
        config.epoch_interruption = True
        # Compilation threads would not survive a fork of the process that started them.
        config.parallel_compilation = False
        self.pid = os.getpid()
        self.engine = wasmtime.Engine(config)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.allow_shadowing = True
        self.linker.define_wasi()
        i32 = wasmtime.ValType.i32()
        stream = wasmtime.FuncType([i32, i32, i32, i32], [i32])
        self.linker.define_func(_WASI, "fd_read", stream, _fd_read, access_caller=True)
        self.linker.define_func(_WASI, "fd_write", stream, _fd_write, access_caller=True)
        self.ticker = _Ticker(self.engine)
        self.compiled: dict[str, CompiledModule] = {}
        self.lock = threading.Lock()
        self.compiles = 0
        self.hits = 0


_STATE: _State | None = None
_STATE_LOCK = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child has no ticker thread and must not share the parent's engine: its first
    # wasm node builds its own state. (The pid check in _state covers other ways to fork.)
    global _STATE, _STATE_LOCK
    _STATE = None
    _STATE_LOCK = threading.Lock()


def _release_at_exit() -> None:
    # wasmtime's objects free themselves through its bindings module, which the interpreter
    # may have emptied already when it clears modules at exit ("Exception ignored in
    # Managed.__del__"): let them go while everything is still there.
    global _STATE
    _STATE = None


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_release_at_exit)


def _state() -> _State:
    global _STATE
    state = _STATE
    if state is not None and state.pid == os.getpid():
        return state
    with _STATE_LOCK:
        if _STATE is None or _STATE.pid != os.getpid():
            _STATE = _State()
        return _STATE


def _compile(state: _State, binary: bytes, digest: str, field: str) -> CompiledModule:
    wasmtime = _wasmtime()
    try:
        module = wasmtime.Module(state.engine, binary)
    except wasmtime.WasmtimeError as exc:
        raise WasmModuleError(f"invalid wasm module: {_first_line(exc)}", field=field) from None
    start = next((e for e in module.exports if e.name == "_start"), None)
    if start is None or not isinstance(start.type, wasmtime.FuncType):
        raise WasmModuleError(
            "the module exports no _start function: build a WASI command (a C program with "
            "main(), linked for wasm32-wasi), not a library or reactor",
            field=field,
        )
    if start.type.params or start.type.results:
        raise WasmModuleError("the module's _start must take and return nothing", field=field)
    for imported in module.imports:
        if imported.module != _WASI:
            raise WasmModuleError(
                f"the module imports {imported.module}.{imported.name}; a wasm node offers "
                f"only WASI preview 1 ({_WASI})",
                field=field,
            )
    try:
        pre = state.linker.instantiate_pre(module)
    except wasmtime.WasmtimeError as exc:
        raise WasmModuleError(
            f"the module cannot be linked against WASI: {_first_line(exc)}", field=field
        ) from None
    return CompiledModule(sha256=digest, size=len(binary), _pre=pre)


class _Capped:
    """A stream's bytes up to a cap; a write past it is refused and remembered."""

    __slots__ = ("_cap", "_chunks", "_size", "over")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self.over = False

    def add(self, data: bytes) -> bool:
        if self._size + len(data) > self._cap:
            self.over = True
            return False
        self._chunks.append(data)
        self._size += len(data)
        return True

    def value(self) -> bytes:
        return b"".join(self._chunks)


class _Streams:
    """The standard streams of the run in progress on a thread."""

    __slots__ = ("memory", "pos", "stderr", "stdin", "stdout")

    def __init__(self, stdin: bytes, stdout_cap: int) -> None:
        self.memory: Any = None  # the instance's exported memory, once it is instantiated
        self.stdin = stdin
        self.pos = 0
        self.stdout = _Capped(stdout_cap)
        self.stderr = _Capped(_STDERR_BYTES)


_local = threading.local()


def _memory_view(caller: Any, streams: _Streams) -> tuple[int, int] | None:
    """The address and size of the calling module's memory (asked again at every call:
    growing the memory may move it)."""
    memory = streams.memory
    if memory is None:  # a call from the start function, before exports are known
        memory = caller.get("memory")
    if not isinstance(memory, _wasmtime().Memory):
        return None
    size = memory.data_len(caller)
    return (ctypes.addressof(memory.data_ptr(caller).contents), size) if size else None


def _iovecs(base: int, size: int, iovs: int, count: int) -> list[tuple[int, int]] | int:
    """The (address, length) of each buffer of an iovec array, or a WASI errno."""
    if count > _IOV_MAX:
        return _EINVAL
    if iovs < 0 or count < 0 or iovs + 8 * count > size:
        return _EFAULT
    raw = ctypes.string_at(base + iovs, 8 * count)
    buffers = []
    for at, length in struct.iter_unpack("<II", raw):
        if at + length > size:
            return _EFAULT
        buffers.append((base + at, length))
    return buffers


def _fd_read(caller: Any, fd: int, iovs: int, count: int, nread: int) -> int:
    """WASI fd_read: fd 0 reads the payload; there is no other readable descriptor."""
    streams: _Streams | None = getattr(_local, "streams", None)
    if streams is None or fd != 0:
        return _EBADF
    try:
        view = _memory_view(caller, streams)
        if view is None:
            return _EFAULT
        base, size = view
        buffers = _iovecs(base, size, iovs, count)
        if isinstance(buffers, int):
            return buffers
        if nread < 0 or nread + 4 > size:
            return _EFAULT
        total = 0
        for address, length in buffers:
            chunk = streams.stdin[streams.pos : streams.pos + length]
            ctypes.memmove(address, chunk, len(chunk))
            streams.pos += len(chunk)
            total += len(chunk)
            if len(chunk) < length:
                break
        ctypes.memmove(base + nread, struct.pack("<I", total), 4)
        return 0
    except Exception:  # an exception here would be wasmtime-py's process-wide "last error"
        return _EFAULT


def _fd_write(caller: Any, fd: int, iovs: int, count: int, nwritten: int) -> int:
    """WASI fd_write: fd 1 is the new payload (capped), fd 2 kept for error messages."""
    streams: _Streams | None = getattr(_local, "streams", None)
    if streams is None or fd not in (1, 2):
        return _EBADF
    try:
        view = _memory_view(caller, streams)
        if view is None:
            return _EFAULT
        base, size = view
        buffers = _iovecs(base, size, iovs, count)
        if isinstance(buffers, int):
            return buffers
        if nwritten < 0 or nwritten + 4 > size:
            return _EFAULT
        data = b"".join(ctypes.string_at(address, length) for address, length in buffers)
        if fd == 1 and not streams.stdout.add(data):
            return _EFBIG
        if fd == 2:
            streams.stderr.add(data)  # past its cap it is dropped: it only explains failures
        ctypes.memmove(base + nwritten, struct.pack("<I", len(data)), 4)
        return 0
    except Exception:
        return _EFAULT


def _memory_used(store: Any, instance: Any) -> int:
    if instance is None:
        return 0
    wasmtime = _wasmtime()
    try:
        memory = instance.exports(store).get("memory")
    except wasmtime.WasmtimeError:
        return 0
    if isinstance(memory, wasmtime.Memory):
        return int(memory.data_len(store))
    return 0


def _first_line(exc: BaseException) -> str:
    """wasmtime's error text in one line: its first line, the cause and the WAT position."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    if not lines or not lines[0]:
        return type(exc).__name__
    head = lines[0]
    if "Caused by:" in lines:
        causes = [line for line in lines[lines.index("Caused by:") + 1 :] if line]
        if causes:
            cause = causes[0].removeprefix("wasm trap: ")
            head = cause if head.startswith("error while executing") else f"{head}: {cause}"
    for line in lines[1:]:
        found = _WAT_POSITION.match(line)
        if found:
            head += f" (line {found[1]}, column {found[2]})"
            break
    return head


def _trap_function(trap: Any) -> str:
    try:
        frames = trap.frames
        name = frames[0].func_name if frames else None
    except Exception:  # frames are a debugging aid: never fail on them
        return ""
    return f" in function {name}" if name else ""


def _mib(size: int) -> str:
    return f"{size / 1048576:.3g} MiB"

"""SQLAlchemy's asyncio engine, without the asyncio ORM session nflow never uses.

``sqlalchemy.ext.asyncio``'s package module imports its ORM session, and with it the whole
ORM: about 6 MB in every worker. The engine itself lives in the package's ``engine`` module,
which needs none of it. So, unless something imported the package already, it is registered
with its path only while nflow imports the engine; the first use of any other name of the
package (``AsyncSession``, say) runs the package module as usual, so code that wants the
ORM still gets it. If SQLAlchemy's layout ever differs from what this expects, the package
is imported the ordinary way.
"""

from __future__ import annotations

__all__ = ["AsyncConnection", "AsyncEngine", "create_async_engine"]

import importlib
import importlib.util
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

_PACKAGE = "sqlalchemy.ext.asyncio"


class _Deferred(types.ModuleType):
    """The package module before its own code ran: submodules import, other names load it."""

    _lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None:
            return importlib.import_module(f"{_PACKAGE}.{name}")  # from . import exc
        with self._lock:
            if type(self) is _Deferred:
                if self.__dict__.get("_loading"):  # asked while its own code runs
                    raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
                self.__dict__["_loading"] = True
                spec = self.__spec__
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(self)
                del self.__dict__["_loading"]
                object.__setattr__(self, "__class__", types.ModuleType)
        return getattr(self, name)


def _engine_module() -> types.ModuleType:
    if _PACKAGE in sys.modules:
        return importlib.import_module(f"{_PACKAGE}.engine")
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return importlib.import_module(f"{_PACKAGE}.engine")
    package = _Deferred(_PACKAGE)
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = _PACKAGE
    package.__loader__ = spec.loader
    sys.modules[_PACKAGE] = package
    try:
        engine = importlib.import_module(f"{_PACKAGE}.engine")
    except Exception:
        # Not the layout this expects: forget the stand-in, import the package as usual.
        for name in [n for n in sys.modules if n == _PACKAGE or n.startswith(_PACKAGE + ".")]:
            del sys.modules[name]
        return importlib.import_module(f"{_PACKAGE}.engine")
    setattr(sys.modules["sqlalchemy.ext"], "asyncio", package)  # noqa: B010 - as import does
    return engine


if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
else:
    _engine = _engine_module()
    AsyncConnection = _engine.AsyncConnection
    AsyncEngine = _engine.AsyncEngine
    create_async_engine = _engine.create_async_engine

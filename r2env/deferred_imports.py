"""Modules docker-py imports that an r2env command almost never uses, loaded only when something uses them.

Every command pays at start for what it imports (benchmarks/README.md, r2env's start until `docker build`);
docker-py brings two such modules: paramiko (0.17 s here), for ssh:// engines it would reach without the ssh
client (r2env always uses the client), and, through requests, charset_normalizer (0.03 s: it probes every codec
at import), to guess the encoding of a response that names none (the engine's answers are JSON). docker-py
itself (0.06 s) loads at the first call that needs it (r2env/engine.py): a build starts the docker CLI first."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports it. (importlib's LazyLoader does
    not help here: the import statement itself reads the module's __spec__, which loads it.)"""

    _plain = False  # answer `is it a package?` with no (see stand_in_while_importing), without loading it

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "__path__" and self._plain:
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def import_lazily(name: str) -> None:
    """`import NAME` gives a stand-in from now on; the first attribute read imports the module for real."""
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _Deferred(name)


@contextmanager
def stand_in_while_importing(distribution: str, name: str) -> Iterator[None]:
    """While the block imports, `name` is a stand-in that knows its `__version__` (what requests checks at import)
    and says it is no package, so `from NAME import __version__` loads nothing. After the block it leaves
    sys.modules: whoever kept it loads the real module on first use, and a later import gets the real one."""
    try:
        version = None if name in sys.modules or importlib.util.find_spec(name) is None else importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # importable without its metadata: imported as usual
        version = None
    if version is None:
        yield
        return
    stand_in = _Deferred(name)
    stand_in._plain = True
    stand_in.__version__ = version  # type: ignore[attr-defined]
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


class ImportedOnFirstUse:
    """A module's stand-in for one module's global name (sys.modules is left alone): the first attribute read
    calls `load`, which imports and returns the module; every read after goes to that module."""

    def __init__(self, load: Callable[[], types.ModuleType]) -> None:
        self._load = load
        self._module: types.ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = self._load()
        return getattr(self._module, attribute)

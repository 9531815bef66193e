"""Lazy package exports: `import ptplan` (and `ptplan --help`) stays free of torch, optuna and polars."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` resolving `name` from `package + exports[name]` (a relative module
    name such as "._config") on first use and caching it in `namespace`."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name], package), name)
        namespace[name] = value
        return value

    return __getattr__

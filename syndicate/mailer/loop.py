"""The event loop the sender's drain runs on: uvloop when installed, else asyncio's own.

uvloop (libuv) spends less CPU per socket event than asyncio's selector
loop, and a drain is a few socket events per message over a pool of SMTP
connections. ``[send] loop`` picks: ``auto`` (uvloop if importable),
``uvloop`` (an error without it) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ConfigError

__all__ = ["LOOPS", "loop_factory", "loop_name", "run"]

LOOPS = ("auto", "uvloop", "asyncio")
T = TypeVar("T")


def loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop.new_event_loop`` for ``auto`` (when installed) and ``uvloop``; None (asyncio's) otherwise.

    Example:
        >>> loop_factory("asyncio") is None
        True
    """
    if kind not in LOOPS:
        raise ConfigError(f"[send] loop is {kind!r}; choose one of {', '.join(LOOPS)}")
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise ConfigError("[send] loop is 'uvloop' but uvloop is not installed (pip install uvloop)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(kind: str = "auto") -> str:
    """``uvloop`` or ``asyncio``: what :func:`run` will use."""
    return "asyncio" if loop_factory(kind) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``kind`` names."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)

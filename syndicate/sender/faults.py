"""Fault injection for the sender's fault trials (tests/e2e/test_send_faults.py).

``SYNDICATE_FAULT=point@n`` (several separated by commas) makes the n-th pass
through ``point`` fail, in a real ``syndicate send`` process:

``claim@n``
    raise :class:`InjectedFault` inside the n-th claim transaction, after the
    results so far were written in it and before it commits;
``journal-write@n``
    the n-th journal line fails with ``OSError(ENOSPC)``, as on a full disk.

Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os

ENV = "SYNDICATE_FAULT"
_passes: dict[str, int] = {}
_seen = [""]  # the spec the counts belong to: a new spec starts counting again


class InjectedFault(RuntimeError):
    """The error a fault trial asked for."""


def _plan() -> dict[str, int]:
    out: dict[str, int] = {}
    for part in os.environ.get(ENV, "").split(","):
        point, _, n = part.strip().partition("@")
        if point:
            out[point] = int(n) if n.isdigit() else 1
    return out


def inject(point: str) -> None:
    """Fail here if ``SYNDICATE_FAULT`` asks for this pass through ``point``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    if spec != _seen[0]:
        _seen[0] = spec
        _passes.clear()
    at = _plan().get(point)
    if at is None:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] != at:
        return
    if point == "journal-write":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise InjectedFault(f"fault injected at {point} pass {at} ({ENV})")

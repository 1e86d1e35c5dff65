"""Frames by kind: what a renderer (feedgen, Jinja) writes for one kind of input, as constant text and
slots, kept only once it gave that renderer's output byte for byte.

Feed entries (:mod:`syndicate.feeds`) and article pages (:mod:`syndicate.site_pages`) are the same
few kinds over and over in a full build; each module makes its own frames and says what a kind is.
This is where both keep them, by the one rule: a kind's frame is made the second time the kind
comes (an incremental publish, one article, makes none), and a kind whose frame failed its proof is
left to the renderer for good.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
F = TypeVar("F")


class Frames(Generic[K, F]):
    """Frames by kind (``None``: the renderer writes that kind), with the kinds seen once and no frame yet."""

    LIMIT = 1024  # kinds held; past it all are forgotten (a build meets a few dozen)

    def __init__(self) -> None:
        self.frames: dict[K, F | None] = {}
        self.seen: set[K] = set()

    def get(self, key: K) -> F | None:
        return self.frames.get(key)

    def offer(self, key: K, make: Callable[[], F | None], proves: Callable[[F], bool]) -> None:
        """After the renderer wrote an input of kind ``key``: the second time, ``make`` its frame and
        keep it if ``proves`` (it gives what the renderer gave for that input); nothing once tried."""
        if key in self.frames:
            return
        if key not in self.seen:
            self.seen.add(key)
            return
        frame = make()
        if len(self.frames) > self.LIMIT:
            self.clear()
        self.frames[key] = frame if frame is not None and proves(frame) else None

    def clear(self) -> None:
        self.frames.clear()
        self.seen.clear()

"""What every web handler shares: settings, the template environment, a store per thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import jinja2

from ..config import Settings
from ..render import make_environment
from ..store import Store, open_store


@dataclass
class WebContext:
    """Built once by ``create_app``; handlers reach the store only through it.

    SQLite connections must not be shared between threads, and Starlette runs
    sync handlers in a thread pool, so each thread gets its own store.
    """

    settings: Settings
    env: jinja2.Environment = field(init=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        self.env = make_environment(self.settings)

    def store(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.settings.db)
            self._local.store = store
        return store

"""The ``syndicate`` command: a click group whose commands stay thin.

Each command opens the store, calls one library function and prints the
result (``--json`` for scripts). Errors are one line on stderr and a non-zero
exit; a traceback only with ``--debug``. Command groups live one file per
area beside this one and register themselves on :data:`main` at import.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import Settings, load_settings
from ..errors import ConfigError, SyndicateError
from ..store import Store, open_store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command gets: settings read once, the store opened on demand."""

    config: str | None
    db: str | None
    debug: bool
    _settings: Settings | None = None
    _store: Store | None = None
    cleanup: list[Any] = field(default_factory=list)
    creates: bool = False  # init and demo may create the database; other commands need one

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, db=self.db)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            settings = self.settings
            unconfigured = settings.source == "defaults" and self.db is None
            if unconfigured and not self.creates and not Path(settings.db).exists():
                raise ConfigError(
                    f"no config file and no database {settings.db} here; run `syndicate init` to create them "
                    "(or pass --config / --db)"
                )
            self._store = open_store(settings.db)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class SyndicateGroup(click.Group):
    """Turns SyndicateError into ``error: message`` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyndicateError as exc:
            app = ctx.find_object(App)
            if app is not None and app.debug:
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        finally:
            app = ctx.find_object(App)
            if app is not None:
                app.close()


pass_app = click.make_pass_decorator(App)


def is_tty() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress(items: Iterable[T], length: int | None, label: str) -> Iterator[Iterable[T]]:
    """A progress bar on a terminal; silent under cron and in tests."""
    if is_tty():
        with click.progressbar(items, length=length, label=label, file=sys.stderr) as bar:
            yield bar
    else:
        yield items


@contextmanager
def step_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """On a terminal, a bar that a long job advances with ``advance(done, total)`` (the total may
    come with the first call); otherwise ``None``, and the command's summary line is all."""
    if not is_tty():
        yield None
        return
    with ExitStack() as stack:
        bars: list[Any] = []

        def advance(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(
                    click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_pos=True)
                ))
            bars[0].update(done - bars[0].pos)

        yield advance


def json_option(help: str = "Print JSON for scripts.") -> Callable[[F], F]:
    """The ``--json`` flag every listing and report takes (bound to ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@click.group(cls=SyndicateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="SYNDICATE_DB", help="SQLite database file [default: data/syndicate.db].")
@click.option("--config", "config", envvar="SYNDICATE_CONFIG", help="Config file [default: ./syndicate.toml].")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="syndicate")
@click.pass_context
def main(ctx: click.Context, db: str | None, config: str | None, debug: bool) -> None:
    """Feeds and email digests from one article store.

    \b
    Example:
        syndicate init
        syndicate article import data/articles
        syndicate article search "khoi nghiep"
    """
    ctx.obj = App(config=config, db=db, debug=debug)


@main.command()
@pass_app
def init(app: App) -> None:
    """Create the database and, if absent, a commented config with a secret key.

    Both are created readable by their owner only (0600): the config holds
    secret_key, the database every subscriber's address.

    \b
    Example:
        syndicate init
        syndicate --db /var/lib/syndicate/news.db --config /etc/syndicate.toml init
    """
    from ..config import config_path, is_private, write_default_config

    path, _ = config_path(app.config, os.environ)
    if write_default_config(path):
        click.echo(f"wrote {path} (with a new secret_key; only you can read it)")
    else:
        click.echo(f"kept {path} (already exists)")
        if not is_private(path):
            click.echo(f"warning: {path} can be read by other users and holds secret_key: run `chmod 600 {path}`",
                       err=True)
    app.creates = True
    store = app.store
    click.echo(f"database {store.path} ready ({store.count_articles():,} articles)")


def _register() -> None:
    import importlib

    for area in ("articles", "bounces", "campaigns", "check", "demo", "feeds", "send", "sources", "subscribers",
                 "suppression", "tokens", "webhooks"):
        importlib.import_module(f"{__name__}.{area}")  # each module adds its commands to `main`


_register()


def run() -> None:  # pragma: no cover - console entry convenience
    main()


__all__ = ["main", "App", "pass_app", "progress", "emit_json", "json_option", "Path"]

"""A full site build from one snapshot of the store, in one process or split across several.

The work comes in units: the subscription feeds and index pages of every scope,
each finished month (its archive documents for every scope holding it and its
articles' pages), and the pages of the month still running. The calling process
builds the subscription feeds; then each of the ``jobs`` processes takes the next
month left whenever it is free (:class:`Claims`), so all finish at about the
same time however the months differ in size.

One state of the store: the calling process opens a read snapshot and notes its
change counter; every worker opens its own connection and snapshot and goes on
only when it reads the same counter (else the build starts again), so the site
never mixes two states. Nothing is renamed into place until every unit of every
process has written its files (staged temp files, :class:`~syndicate.site_files.Writer`):
a failure anywhere removes them all, raises that failure, and leaves the
previous site as it was.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import itertools
import os
import pickle
import struct
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import jinja2

from .child import start_child
from .config import Settings
from .feed_build import (
    all_scopes,
    archive_months,
    build_current,
    list_scopes,
    month_documents,
    open_month,
    scoped_items,
)
from .feeds import FORMATS, SITE, EntryCache, FeedItem, Scope, feed_item, month_bounds
from .render import make_environment
from .site_files import BuildError, PublishReport, Writer
from .site_pages import PageCache, article_page_file, put_article_pages, render_article, render_index
from .store import Store, open_store

Progress = Callable[[int, int], None]  # (articles done, articles in all) as a full build goes

AUTO_PARALLEL = 5_000  # with ``jobs=None``, a store this size (public articles) or larger uses every core
ATTEMPTS = 3  # snapshots tried when the store keeps changing as the workers start


OPEN = ""  # the month of the MonthPlan that stands for the running month: its articles' pages only
PAGE_SHARE = 0.5  # a page alone, in a month article's worth of work (its item, template and file)
_CLAIMS = struct.Struct("=qq")  # the Claims file: the next unit at the front, one past the last at the back


@dataclass(frozen=True)
class MonthPlan:
    """One finished month: every scope holding it, with the scope's older and newer archive months
    (or, as month :data:`OPEN`, the pages of the running month's public articles)."""

    month: str
    scopes: tuple[tuple[Scope, tuple[str | None, str | None]], ...]


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process builds (picklable: it crosses to a fresh interpreter): ``units[first]``,
    then the units it takes through the :class:`Claims` file open as ``claims_fd``."""

    db: str
    settings: Settings
    out_dir: str
    now: datetime
    counter: int
    units: tuple[MonthPlan, ...]
    first: int
    claims_fd: int


class Claims:
    """Which units of a build are still to take, shared by its processes: a nameless temp file
    holding two indices into the units, taken under a POSIX record lock (one owner per process,
    unlike ``flock``, which the processes would share through the one open file).

    Each worker starts with a unit of its own (the largest: see :func:`claim_order`), so the
    calling process, though it starts first, never takes them all from a worker still starting;
    then the workers take from the front and the calling process from the back, whoever is free
    the next, until none is left."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def create(cls, first: int, end: int) -> Claims:
        """Claims of the units from ``first`` to ``end`` (excluded)."""
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())  # the file lives on, nameless, as long as a descriptor does
        os.pwrite(fd, _CLAIMS.pack(first, end), 0)
        return cls(fd)

    def take(self, front: bool) -> int | None:
        """The index of the next unit (from the front or the back), or None when all are taken."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            first: int
            end: int
            first, end = _CLAIMS.unpack(os.pread(self.fd, _CLAIMS.size, 0))
            if first >= end:
                return None
            if front:
                taken, first = first, first + 1
            else:
                end -= 1
                taken = end
            os.pwrite(self.fd, _CLAIMS.pack(first, end), 0)
            return taken
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Parts:
    """The reports of each unit, put together in the order one process builds them."""

    current: PublishReport
    months: dict[str, PublishReport] = field(default_factory=dict)

    def joined(self, out_dir: str, order: list[str]) -> PublishReport:
        report = PublishReport(out_dir)
        for part in [self.current, *(self.months[m] for m in order if m in self.months)]:
            report.written += part.written
            report.unchanged += part.unchanged
            report.removed += part.removed
        return report


class _SnapshotMoved(Exception):
    """A worker saw another state of the store than the caller's snapshot."""


class _Unchanged(Exception):
    """A build failed before anything moved into place (carries the failure)."""

    def __init__(self, error: BuildError) -> None:
        super().__init__(str(error))
        self.error = error


class _Aborted(Exception):
    """A worker told to stop: another process of the build failed."""


@contextmanager
def fewer_collections() -> Iterator[None]:
    """A build makes millions of short-lived objects and frees them by reference counting (no
    cycles to find): run the cyclic collector less often, over what existed before only once."""
    threshold = gc.get_threshold()
    gc.freeze()  # what the process held before the build is never scanned again during it
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc
        return trim
    except (OSError, AttributeError):  # pragma: no cover - another C library
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Hand the freed heap of a finished month back to the system (glibc keeps it otherwise, and
    each month's peak would start where the last one's fragments ended)."""
    if _TRIM is not None:
        _TRIM(0)


def index_path(scope: Scope) -> str:
    return scope.page_path() + "index.html"


def publish_scope_current(
    writer: Writer, store: Store, settings: Settings, env: jinja2.Environment,
    scope: Scope, categories: list[tuple[str, str, int]], lists: list[Scope], now: datetime,
) -> list[str]:
    """A scope's subscription feeds and its index page; the feed paths whose bytes changed."""
    docs, items = build_current(store, settings, scope, now)
    changed = writer.documents(docs)
    site = scope.kind == "site"
    writer.put(
        index_path(scope), render_index(env, settings, scope, items, categories if site else [], lists if site else [])
    )
    return changed


def build_month_unit(
    writer: Writer, store: Store, settings: Settings, env: jinja2.Environment, plan: MonthPlan, now: datetime
) -> int:
    """A finished month's archives (every scope holding it, three formats) and its articles' pages.

    One query reads the month; each article is cleaned once for every scope's archive and its own
    page, and all is dropped before the next month, so memory follows the largest month. Returns
    how many articles the month holds."""
    if plan.month == OPEN:
        current = store.public_from(open_month(settings, now)[1], now)
        put_article_pages(writer, env, settings, current, now)
        return len(current)
    bounds = month_bounds(plan.month, settings.tz)
    if bounds is None:
        return 0
    # One article at a time from the cursor: the month is held once, as its items (and page paths).
    items: list[FeedItem] = []
    pages: list[str | None] = []
    for article in store.each_public_between(bounds[0], bounds[1]):
        items.append(feed_item(article, settings))
        pages.append(article_page_file(article))  # all public: the month has ended
    # Each article's entry is serialised once per format and its bytes serve every scope (EntryCache);
    # one document's bytes at a time are held beside them.
    cache = EntryCache()
    held = [(scope, around, scoped_items(scope, items)) for scope, around in plan.scopes]
    for fmt in FORMATS:
        for scope, around, scoped in held:
            if scoped:
                writer.documents(month_documents(settings, scope, plan.month, scoped, around, (fmt,), cache))
        cache.forget(fmt)
    del cache, held
    page_cache = PageCache()
    for rel, item in zip(pages, items, strict=True):
        if rel is not None:
            writer.put(rel, render_article(env, settings, None, item, page_cache), durable=False, own_dir=True)
    count = len(items)
    del items, pages
    give_back_memory()
    return count


def _plans(store: Store, settings: Settings, scopes: list[Scope], now: datetime) -> list[MonthPlan]:
    """Every finished month of the site, with the scopes holding it (every scope's months are among the site's)."""
    neighbours: list[tuple[Scope, dict[str, tuple[str | None, str | None]]]] = []
    for scope in scopes:
        months = archive_months(store, settings, scope, now)
        neighbours.append((scope, {
            month: (months[i - 1] if i > 0 else None, months[i + 1] if i + 1 < len(months) else None)
            for i, month in enumerate(months)
        }))
    return [
        MonthPlan(month, tuple((scope, around[month]) for scope, around in neighbours if month in around))
        for month in archive_months(store, settings, SITE, now)
    ] + [MonthPlan(OPEN, ())]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def claim_order(
    store: Store, settings: Settings, plans: list[MonthPlan], workers: int, now: datetime
) -> list[MonthPlan]:
    """The units in the order :class:`Claims` hands them out.

    Largest first (by articles), dealt in turn to the front (``workers`` of every ``workers + 1``)
    and to the back (one): the workers start with the largest months (the first ``workers`` are
    theirs from the start) while the calling process builds the subscription feeds, and wherever
    the two ends meet, the last units taken are the smallest, so no process waits long for another."""
    sized = []
    for plan in plans:
        if plan.month == OPEN:
            start = open_month(settings, now)[1]
            sized.append((int(PAGE_SHARE * store.count_published_between(start, now + timedelta(microseconds=1))), plan))
            continue
        bounds = month_bounds(plan.month, settings.tz)
        sized.append((store.count_published_between(*bounds) if bounds else 0, plan))
    front: list[MonthPlan] = []
    back: list[MonthPlan] = []
    for i, (_count, plan) in enumerate(sorted(sized, key=lambda pair: -pair[0])):
        (back if i % (workers + 1) == workers else front).append(plan)
    return front + back[::-1]


def _take(claims: Claims | None, units: Sequence[MonthPlan], front: bool) -> Iterator[MonthPlan]:
    """The units this process builds: every one when it builds alone, else those it claims."""
    if claims is None:
        yield from units
        return
    while (index := claims.take(front)) is not None:
        yield units[index]


def build_site(
    store: Store, settings: Settings, root: Path, now: datetime, *, jobs: int | None = 1,
    progress: Progress | None = None,
) -> tuple[PublishReport, list[Scope]]:
    """Build every feed, archive and page under ``root`` from one snapshot; nothing moves until all is written.

    ``jobs``: processes to use (1: this one only; None: every core once the store holds
    :data:`AUTO_PARALLEL` public articles). Raises the first failure of any process, with the
    previous site untouched. Returns the report and the scopes built."""
    for _attempt in range(ATTEMPTS):
        try:
            with fewer_collections():
                return _build_once(store, settings, root, now, jobs, progress)
        except _SnapshotMoved:
            continue
        except _Unchanged as exc:
            raise BuildError(f"{exc.error}; nothing in {root}/ was changed") from exc.error
    raise BuildError(
        f"the store kept changing while the build of {root}/ started ({ATTEMPTS} tries); nothing was written, "
        "run it again"
    )


def _build_once(
    store: Store, settings: Settings, root: Path, now: datetime, jobs: int | None, progress: Progress | None
) -> tuple[PublishReport, list[Scope]]:
    writer = Writer(root, PublishReport(str(root)), staged=True)
    workers: list[_Worker] = []
    claims: Claims | None = None
    try:
        with store.read_snapshot() as counter:
            categories = store.public_categories(now)
            lists = list_scopes(store)
            scopes = all_scopes(store, now, categories)
            total = store.count_public(now) if progress is not None or jobs is None else 0
            plans = _plans(store, settings, scopes, now)
            if jobs is None:
                jobs = cores() if total >= AUTO_PARALLEL else 1
            jobs = max(1, min(jobs, len(plans))) if store.path != ":memory:" else 1
            units = plans
            if jobs > 1:
                units = claim_order(store, settings, plans, jobs - 1, now)
                claims = Claims.create(jobs - 1, len(units))
                for first in range(jobs - 1):
                    workers.append(_Worker(WorkerJob(store.path, settings, str(root), now, counter, tuple(units),
                                                     first, claims.fd)))
            env = make_environment(settings)
            parts = _Parts(PublishReport(str(root)))
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                if progress is not None:
                    progress(done, total)

            writer.report = parts.current
            for scope in scopes:
                publish_scope_current(writer, store, settings, env, scope, categories, lists, now)
            for plan in _take(claims, units, front=False):
                writer.report = parts.months[plan.month] = PublishReport(str(root))
                advance(build_month_unit(writer, store, settings, env, plan, now))
                for worker in workers:
                    worker.poll(advance)
        writer.settle()  # every file of this process on disk, or its failure, before any is renamed
        for worker in workers:
            parts.months.update(worker.wait_ready(advance))
    except BuildError as exc:
        _stop(workers, writer)
        raise _Unchanged(exc) from exc
    except BaseException:
        _stop(workers, writer)
        raise
    finally:
        if claims is not None:
            claims.close()
    try:
        for worker in workers:  # every file is written: now every process moves its own into place
            worker.start_commit()
        writer.commit()
        for worker in workers:
            worker.end_commit()
    except BaseException:
        _stop(workers, writer)
        raise
    for worker in workers:
        worker.close()
    return parts.joined(str(root), [plan.month for plan in plans]), scopes


def _stop(workers: list[_Worker], writer: Writer) -> None:
    """After a failure: every process removes its staged files; the workers are gone after."""
    for worker in workers:
        worker.abort()
    writer.abort()
    for worker in workers:
        worker.close()


# --- worker processes -----------------------------------------------------------------


class _Worker:
    """One worker process and the pipe to it: progress and its reports come back, ``commit`` or
    ``abort`` goes to it."""

    def __init__(self, job: WorkerJob) -> None:
        self.process, ours = start_child("syndicate.site_build", "worker_main", share_fds=[job.claims_fd])
        self.conn = Connection(ours.detach())
        self.conn.send(job)
        self.reports: dict[str, PublishReport] | None = None
        self.finished = False

    def _receive(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            self.finished = True
            raise BuildError(f"a build worker stopped without a word (exit code {self.process.wait()})") from None
        if message[0] == "error":
            self.finished = True
            error: BaseException = message[1]
            raise error
        if message[0] == "moved":
            self.finished = True
            raise _SnapshotMoved()
        return message

    def poll(self, advance: Callable[[int], None]) -> None:
        """Take the progress reported so far, without waiting."""
        while self.reports is None and self.conn.poll():
            message = self._receive()
            if message[0] == "progress":
                advance(message[1])
            else:
                self.reports = message[1]

    def wait_ready(self, advance: Callable[[int], None]) -> dict[str, PublishReport]:
        """Wait until every file of the worker is written (staged); its reports by month."""
        while self.reports is None:
            message = self._receive()
            if message[0] == "progress":
                advance(message[1])
            else:
                self.reports = message[1]
        return self.reports

    def start_commit(self) -> None:
        self.conn.send("commit")

    def end_commit(self) -> None:
        """Wait until the worker has moved its files into place (or raise its error)."""
        self._receive()  # ("done",) or its error
        self.finished = True

    def abort(self) -> None:
        if self.finished or self.process.poll() is not None:
            return
        try:
            self.conn.send("abort")
            while self.conn.recv()[0] != "aborted":  # drain progress until it has removed its temp files
                pass
        except (EOFError, OSError):
            pass
        self.finished = True

    def close(self) -> None:
        self.conn.close()
        self.process.wait()


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a BuildError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return BuildError(f"a build worker failed: {type(exc).__name__}: {exc}")


def worker_main(fd: int) -> None:
    """A worker process: build the job's months (staged), report, then commit or abort as told."""
    conn = Connection(fd)
    try:
        job: WorkerJob = conn.recv()
    except EOFError:
        conn.close()
        return
    writer = Writer(Path(job.out_dir), PublishReport(job.out_dir), staged=True)
    try:
        try:
            store = open_store(job.db, migrate=False)
            try:
                with store.read_snapshot() as counter:
                    if counter != job.counter:
                        conn.send(("moved",))
                        return
                    env = make_environment(job.settings)
                    reports: dict[str, PublishReport] = {}
                    gc.freeze()
                    gc.set_threshold(50_000, 20, 20)  # see fewer_collections(): this process ends with the build
                    mine = itertools.chain([job.units[job.first]], _take(Claims(job.claims_fd), job.units, front=True))
                    for plan in mine:  # one at a time: each unit is claimed when this process is free for it
                        if conn.poll():  # the only message before "ready" is "abort": another process failed
                            raise _Aborted()
                        writer.report = reports[plan.month] = PublishReport(job.out_dir)
                        conn.send(("progress", build_month_unit(writer, store, job.settings, env, plan, job.now)))
            finally:
                store.close()
            writer.settle()
            conn.send(("ready", reports))
            if conn.recv() != "commit":
                raise _Aborted()
            writer.commit()
            conn.send(("done",))
        except _Aborted:
            writer.abort()
            conn.send(("aborted",))
        except BaseException as exc:
            writer.abort()
            detail = traceback.format_exc()
            error = _portable(exc)
            error.__notes__ = [detail]  # the worker's traceback, for --debug
            conn.send(("error", error))
    finally:
        conn.close()

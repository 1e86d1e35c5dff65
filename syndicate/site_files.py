"""Bytes -> files under the site directory: atomic, only when changed, optionally staged.

Each file is written to a temp file in its target's directory (a name made from
the target and the process id, created with ``O_EXCL``), then renamed over the
target, so readers never see half a file; bytes equal to the target's are not
written at all, so unchanged feeds keep their mtime (and their ``ETag`` under a
static server).

A :class:`Writer` in *staged* mode keeps every temp file until :meth:`Writer.commit`
renames them all, or :meth:`Writer.abort` removes them and the folders it made: a
full build that fails half-way (in any of its processes) leaves the previous site
exactly as it was.
A staged file need only be on disk before its rename, so its fsync runs in a
thread (:class:`Syncer`) while the build goes on; :meth:`Writer.settle` waits for
them all and raises the first that failed, before anything is renamed.

An article page is alone in its folder, so a :class:`Writer` makes the folder first
when the page before was new: a folder it made holds no page to compare with, and the
page costs five syscalls (mkdir, open, write, close, rename). Each file is 0644 and
each folder made can be listed and entered by anyone (0755, plus what the umask allows):
a static server runs as another user. A chmod says so only when the umask (read once per
Writer) or a default ACL of the parent folder could have made it otherwise.
"""

from __future__ import annotations

import errno
import os
from array import array
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SyndicateError
from .feed_build import FeedDocument

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_MODE = 0o644  # every file of the site: a static server (another user) must read it
_FOLDER_MODE = 0o755  # and list and enter every folder

_pid = os.getpid()  # in every temp file's name; a syscall per call otherwise (glibc keeps no copy)


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _umask() -> int | None:
    """The process's umask, read without setting it (``os.umask`` can only swap it, and a thread
    creating a file meanwhile would get the swapped one); None where the kernel does not say."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _folder_mode(umask: int | None) -> int | None:
    """What to chmod a folder we made to, so a static server can list and enter it: None when the
    umask already allows that (or is unknown). Only the bits it needs are added (a deploy group's
    write bit under umask 002 stays)."""
    if umask is None or not umask & _FOLDER_MODE:
        return None
    return (0o777 & ~umask) | _FOLDER_MODE


def _make_folders(folder: str, umask: int | None, made: list[str] | None = None) -> bool:
    """``os.makedirs(folder, exist_ok=True)``, but every folder it makes lets a static server in
    whatever the umask (a default ACL of its parent decides instead, if there is one); True when
    it made ``folder`` itself. ``made``: each folder it makes is appended, parents first."""
    try:
        os.mkdir(folder)
    except FileNotFoundError:
        parent = os.path.dirname(folder)
        if not parent or parent == folder:
            raise
        _make_folders(parent, umask, made)
        try:
            os.mkdir(folder)
        except FileExistsError:
            return False
    except FileExistsError:  # there (or a file in the way: the file's open says so, by its own name)
        return False
    if made is not None:
        made.append(folder)
    mode = _folder_mode(umask)
    if mode is not None and not _default_acl(os.path.dirname(folder)):
        os.chmod(folder, mode)
    return True


def _default_acl(folder: str) -> bool:
    """True unless ``folder`` surely has no default ACL (one would mask a new file's mode, not the umask)."""
    getxattr = getattr(os, "getxattr", None)
    if getxattr is None:
        return True
    try:
        getxattr(folder, "system.posix_acl_default")
    except OSError as exc:
        return exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
    return True


class BuildError(SyndicateError, OSError):
    """A site build could not write (or finish) its files; the message names the file. An OSError
    too, so callers that catch a failed write (the cron tick's ``publish_due_note``) still do."""


@dataclass
class PublishReport:
    """What a publish run did; paths are relative to ``out_dir``."""

    out_dir: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pinged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a hub that did not take a ping

    def as_dict(self) -> dict[str, object]:
        return {
            "out_dir": self.out_dir,
            "written": self.written,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "pinged": self.pinged,
            "errors": self.errors,
            "warnings": self.warnings,
        }


_MISSING = -1  # what _size says of a file that is not there


def _size(target: str) -> int:
    try:
        return os.stat(target).st_size
    except (FileNotFoundError, NotADirectoryError):
        return _MISSING


def _same(target: str, data: bytes, size: int) -> bool:
    """True when ``target`` (of ``size`` bytes) holds exactly ``data``: read only when the sizes match."""
    if size != len(data):
        return False
    try:
        with open(target, "rb") as handle:
            return handle.read() == data
    except (FileNotFoundError, NotADirectoryError):
        return False


def _temp_of(target: str) -> str:
    """The temp file of ``target`` for this process. Deterministic: no random names and retries
    (tempfile.mkstemp), nothing to remember per staged file, and two builds running at once never
    share one."""
    folder, _, name = target.rpartition(os.sep)
    return f"{folder}{os.sep}.{name}.{_pid}.tmp"


def _write_temp(target: str, data: bytes, durable: bool, new_dir: bool = False, umask: int | None = None,
                syncer: Syncer | None = None, made: list[str] | None = None) -> str:
    """``data`` in a new temp file beside ``target`` (0644, fsynced when ``durable``); its path.

    ``new_dir``: the target is missing and alone in its folder (an article page), so the folder is
    most likely missing too: make it first rather than after a failed open. ``umask``: the
    process's, for the folders it makes (see :func:`_make_folders`)."""
    folder = os.path.dirname(target)
    tmp = _temp_of(target)
    if new_dir:
        _make_folders(folder, umask, made)
    try:
        fd = os.open(tmp, _OPEN_FLAGS, _MODE)
    except FileNotFoundError:  # the first file of its directory: make it (one syscall less for every other)
        _make_folders(folder, umask, made)
        fd = os.open(tmp, _OPEN_FLAGS, _MODE)
    except FileExistsError:  # left by a run of this pid that was killed: it is ours to replace
        os.unlink(tmp)
        fd = os.open(tmp, _OPEN_FLAGS, _MODE)
    _fill(fd, tmp, data, durable, chmod=True, syncer=syncer, target=target)  # whatever the umask
    return tmp


def _fill(fd: int, path: str, data: bytes, durable: bool, chmod: bool, syncer: Syncer | None = None,
          target: str = "") -> None:
    """Write ``data`` to the new file ``fd`` (at ``path``) and close it; on any failure the file is removed.
    ``chmod``: set 0644 (only when the umask or a default ACL could have given it another mode).
    ``durable`` with a ``syncer``: the syncer fsyncs and closes the file later (a failure names ``target``)."""
    try:
        if chmod:
            os.fchmod(fd, _MODE)
        done = os.write(fd, data)
        if done < len(data):  # a short write: the rest, without copying
            view = memoryview(data)[done:]
            while view:
                view = view[os.write(fd, view):]
        if durable:
            if syncer is not None:
                syncer.add(fd, target)
                return
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Syncer:
    """fsyncs and closes written files in a thread of its own (fsync waits for the disk, without the
    GIL, so the build goes on meanwhile); :meth:`settle` waits for every one and raises the first
    failure, naming its file. At most :attr:`LIMIT` files are open at once: one more waits for the
    oldest."""

    LIMIT = 64

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._open: deque[tuple[Future[None], str]] = deque()
        self._failed: tuple[str, OSError] | None = None

    def add(self, fd: int, path: str) -> None:
        """Take over ``fd`` (``path``: what a failure names): fsync it, then close it."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="syndicate-fsync")
        while len(self._open) >= self.LIMIT:
            self._wait_oldest()
        self._open.append((self._pool.submit(_sync_and_close, fd), path))

    def _wait_oldest(self) -> None:
        future, path = self._open.popleft()
        error = future.exception()
        if error is not None and self._failed is None:
            self._failed = (path, error if isinstance(error, OSError) else OSError(str(error)))

    def _drain(self) -> None:
        while self._open:
            self._wait_oldest()

    def settle(self) -> None:
        """Wait until every file is on disk and closed; raise the first fsync that failed (once)."""
        self._drain()
        if self._failed is not None:
            path, error = self._failed
            self._failed = None
            raise OSError(error.errno, error.strerror or str(error), path)

    def close(self) -> None:
        """Wait for every file (failures are dropped: call :meth:`settle` first to hear of them) and end the thread."""
        self._drain()
        self._failed = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _move(tmp: str, target: str) -> None:
    """Rename ``tmp`` over ``target``; if that fails, remove ``tmp`` and raise."""
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_if_changed(root: Path, rel: str, data: bytes, durable: bool = True) -> bool:
    """Atomically replace ``root/rel`` with ``data`` unless it already holds it.

    Returns True when the file was written. The temp file lives in the target's
    directory so ``os.replace`` is a same-filesystem rename. ``durable`` fsyncs
    before the rename (feeds); article pages skip it, since there can be one per
    article and the next build rewrites any page a crash left short.
    """
    target = os.path.join(root, rel.lstrip("/"))
    if _same(target, data, _size(target)):
        return False
    tmp = _write_temp(target, data, durable, umask=_umask())
    _move(tmp, target)
    return True


class Writer:
    """Writes a publish run's files under ``out_dir`` and keeps its report.

    ``staged``: nothing is renamed into place until :meth:`commit`; :meth:`abort` removes the
    temp files, leaving every target as it was."""

    def __init__(self, out_dir: Path, report: PublishReport, staged: bool = False) -> None:
        self.out_dir = out_dir
        self._root = str(out_dir)
        self._prefix = os.path.join(self._root, "")  # + a relative path: the same as os.path.join, cheaper
        self.report = report
        self.staged = staged
        # Staged paths (relative) in the order written: the strings the report holds too, so a
        # build of 100,000 files keeps no second copy of them (each temp file's name is derived).
        self.pending: list[str] = []
        self._staged: set[str] = set()
        # Article pages: try making the page's folder first (True) or look for the page first
        # (False). A build into an empty site makes every folder, and a made folder proves the page
        # new (no stat); a rebuild finds most pages there. Each page's outcome sets the next's guess.
        self._new_folders = True
        self._umask = _umask()
        # parent folder -> (its new folders' files need fchmod, the mode to chmod its new folders to)
        self._modes_under: dict[str, tuple[bool, int | None]] = {}
        self._syncer = Syncer() if staged else None  # a staged file's fsync need only end before commit
        # Staged: the folders this writer made, for abort to remove. A new page's folder is the folder
        # of pending[i] for each i in _page_folders (a full build makes 100,000: no second string each).
        self._page_folders = array("L")
        self._folders: list[str] = []

    def put(self, rel: str, data: bytes, durable: bool = True, own_dir: bool = False) -> bool:
        """Write ``rel`` unless it holds ``data``; True when written. ``own_dir``: the file is the only
        one in its folder (an article page)."""
        rel = rel.lstrip("/")
        target = self._prefix + rel
        try:
            if own_dir and self._new_folders and self._put_new(target, data, durable):
                if self.staged:
                    self._page_folders.append(len(self.pending))  # it made the folder: the page is new
                    self._stage(rel)
                self.report.written.append(rel)
                return True
            size = _size(target)
            if _same(target, data, size):
                self.report.unchanged.append(rel)
                return False
            new_dir = own_dir and size == _MISSING
            tmp = _write_temp(target, data, durable, new_dir=new_dir, umask=self._umask, syncer=self._syncer,
                              made=self._folders if self.staged else None)
            if own_dir:
                self._new_folders = new_dir  # a missing page: the next is likely missing too
            if self.staged:
                self._stage(rel)
            else:
                _move(tmp, target)
        except OSError as exc:
            raise BuildError(f"cannot write {os.path.join(self._root, rel)}: {exc.strerror or exc}") from exc
        self.report.written.append(rel)
        return True

    def _stage(self, rel: str) -> None:
        if rel not in self._staged:  # written twice in one run: the one temp file holds the last
            self._staged.add(rel)
            self.pending.append(rel)

    def _put_new(self, target: str, data: bytes, durable: bool) -> bool:
        """Make the folder of ``target`` (the only file in it) and write ``target``'s temp file
        there; False when the folder was there already (or in the way): nothing was written then.
        Renamed into place at once unless staged."""
        folder, _, name = target.rpartition(os.sep)
        parent = folder.rpartition(os.sep)[0]
        made_here = True
        try:
            os.mkdir(folder)
        except FileNotFoundError:  # the first page: its parent folders are missing too
            made_here = False
            try:
                made = _make_folders(folder, self._umask, self._folders if self.staged else None)  # with their modes
                if made and self.staged:  # the page's own folder is counted with the page
                    self._folders.pop()
            except OSError:
                made = False
            if not made:
                self._new_folders = False
                return False
        except OSError:  # there (a rebuild), or something is in the way: the usual path finds out
            self._new_folders = False
            return False
        modes = self._modes_under.get(parent)
        if modes is None:  # a new folder and its file get the mode asked & ~umask, or the parent's default ACL decides
            acl = _default_acl(parent)
            modes = self._modes_under[parent] = (
                self._umask is None or bool(self._umask & _MODE) or acl, None if acl else _folder_mode(self._umask)
            )
        chmod, folder_mode = modes
        if made_here and folder_mode is not None:
            os.chmod(folder, folder_mode)
        tmp = f"{folder}{os.sep}.{name}.{_pid}.tmp"
        _fill(os.open(tmp, _OPEN_FLAGS, _MODE), tmp, data, durable, chmod, self._syncer, target)
        if not self.staged:
            _move(tmp, target)
        return True

    def settle(self) -> None:
        """Wait until every staged file is on disk; raise (BuildError, naming the file) if one is not.
        A build calls it in each of its processes before any of them renames a file."""
        if self._syncer is None:
            return
        try:
            self._syncer.settle()
        except OSError as exc:
            raise BuildError(f"cannot write {exc.filename}: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        """Rename every staged file into place (in the order they were written), once all are on disk."""
        self.settle()
        prefix = self._prefix
        for done, rel in enumerate(self.pending):
            target = prefix + rel
            try:
                os.replace(_temp_of(target), target)
            except OSError as exc:
                del self.pending[:done]  # in place now; what is left stays staged (abort removes it)
                self._page_folders = array("L", (i - done for i in self._page_folders if i >= done))
                raise BuildError(f"cannot write {target}: {exc.strerror or exc}") from exc
        self._forget()

    def _forget(self) -> None:
        self.pending.clear()
        self._staged.clear()
        self._page_folders = array("L")
        self._folders.clear()

    def abort(self) -> None:
        """Remove every staged temp file: the targets stay as they were."""
        if self._syncer is not None:
            self._syncer.close()
        for rel in self.pending:
            _unlink(_temp_of(os.path.join(self._root, rel)))
        # then the folders it made, deepest first: each only if empty (another build's file keeps it)
        folders = [os.path.dirname(self._prefix + self.pending[i]) for i in self._page_folders]
        for folder in [*folders[::-1], *self._folders[::-1]]:
            try:
                os.rmdir(folder)
            except OSError:
                pass
        self._forget()

    def documents(self, docs: Iterable[FeedDocument]) -> list[str]:
        return [doc.path for doc in docs if self.put(doc.path, doc.body)]

    def remove(self, rel: str) -> None:
        target = self.out_dir / rel.lstrip("/")
        try:
            target.unlink()
            self.report.removed.append(rel.lstrip("/"))
        except FileNotFoundError:
            pass

    def exists(self, rel: str) -> bool:
        return (self.out_dir / rel.lstrip("/")).exists()


"""The site's file writes (syndicate/site_files.py): each file 0644 whatever the umask or a default ACL,
new article pages written without looking for them first, anything in the way a BuildError naming the file."""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syndicate.site_files import BuildError, PublishReport, Writer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def writer(root: Path, staged: bool) -> Writer:
    return Writer(root, PublishReport(str(root)), staged=staged)


@pytest.fixture
def umask_077() -> Iterator[None]:
    """A careful admin's umask: new files are the owner's alone unless we say otherwise."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def default_acl_without_others(folder: Path) -> None:
    """Give ``folder`` the default ACL ``u::rwx,g::r-x,o::---`` (what ``setfacl -d -m o::- folder`` leaves):
    a file made in a folder made under it gets its mode masked by the ACL, not by the umask."""
    entries = [(0x01, 0o7, 0xFFFFFFFF), (0x04, 0o5, 0xFFFFFFFF), (0x20, 0o0, 0xFFFFFFFF)]  # USER_OBJ, GROUP_OBJ, OTHER
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, uid) for tag, perm, uid in entries)
    try:
        os.setxattr(folder, "system.posix_acl_default", value)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"no POSIX ACLs under {folder}: {exc.strerror}")
        raise


@pytest.mark.parametrize("staged", [True, False])
@pytest.mark.usefixtures("umask_077")
def test_pages_and_feeds_are_0644_under_umask_077(tmp_path: Path, staged: bool) -> None:
    out = tmp_path / "site"
    files = writer(out, staged)
    assert files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)  # first page: makes articles/
    assert files.put("articles/b/index.html", b"<p>b</p>", durable=False, own_dir=True)  # a new folder under it
    assert files.put("rss.xml", b"<rss/>")
    files.commit()
    assert tree(out) == {"articles/a/index.html": b"<p>a</p>", "articles/b/index.html": b"<p>b</p>",
                         "rss.xml": b"<rss/>"}
    assert [mode(out / rel) for rel in tree(out)] == [0o644, 0o644, 0o644]


@pytest.mark.parametrize("staged", [True, False])
def test_a_default_acl_does_not_take_the_pages_read_bit_away(tmp_path: Path, staged: bool) -> None:
    out = tmp_path / "site"
    (out / "articles").mkdir(parents=True)
    default_acl_without_others(out / "articles")
    files = writer(out, staged)
    assert files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)
    files.commit()
    assert mode(out / "articles/a/index.html") == 0o644


@pytest.mark.parametrize("staged", [True, False])
def test_a_file_in_the_way_of_a_pages_folder_is_named(tmp_path: Path, staged: bool) -> None:
    out = tmp_path / "site"
    (out / "articles").mkdir(parents=True)
    (out / "articles/b").write_bytes(b"in the way")
    files = writer(out, staged)
    assert files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)
    with pytest.raises(BuildError) as failed:
        files.put("articles/b/index.html", b"<p>b</p>", durable=False, own_dir=True)
    assert str(failed.value) == f"cannot write {out}/articles/b/index.html: Not a directory"
    files.abort()
    assert tree(out) == ({"articles/b": b"in the way"} if staged else
                         {"articles/a/index.html": b"<p>a</p>", "articles/b": b"in the way"})


def test_a_file_in_the_way_of_the_articles_folder_is_named(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "articles").write_bytes(b"in the way")
    with pytest.raises(BuildError) as failed:
        writer(out, True).put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)
    assert str(failed.value) == f"cannot write {out}/articles/a/index.html: Not a directory"
    assert tree(out) == {"articles": b"in the way"}


def test_a_rebuild_mixes_new_changed_and_unchanged_pages(tmp_path: Path) -> None:
    """New pages (a folder to make) and pages already there take turns: each is seen for what it is,
    whatever the writer guessed from the page before."""
    out = tmp_path / "site"
    first = writer(out, True)
    for name in "ace":
        first.put(f"articles/{name}/index.html", name.encode(), durable=False, own_dir=True)
    first.commit()
    (out / "articles/e/index.html").unlink()  # its folder stays, empty (as an interrupted build may leave it)
    before = {rel: (out / rel).stat().st_ino for rel in ("articles/a/index.html", "articles/c/index.html")}
    second = writer(out, True)
    for name, body in [("a", b"a"), ("b", b"b"), ("c", b"c, changed"), ("d", b"d"), ("e", b"e"), ("f", b"f")]:
        second.put(f"articles/{name}/index.html", body, durable=False, own_dir=True)
    second.commit()
    assert second.report.unchanged == ["articles/a/index.html"]
    assert second.report.written == [f"articles/{n}/index.html" for n in "bcdef"]
    assert tree(out) == {"articles/a/index.html": b"a", "articles/b/index.html": b"b",
                         "articles/c/index.html": b"c, changed", "articles/d/index.html": b"d",
                         "articles/e/index.html": b"e", "articles/f/index.html": b"f"}
    assert (out / "articles/a/index.html").stat().st_ino == before["articles/a/index.html"]  # left alone
    assert (out / "articles/c/index.html").stat().st_ino != before["articles/c/index.html"]  # renamed over


def test_a_new_page_written_twice_in_one_staged_run_holds_the_last_bytes(tmp_path: Path) -> None:
    out = tmp_path / "site"
    files = writer(out, True)
    files.put("articles/a/index.html", b"first", durable=False, own_dir=True)
    files.put("articles/a/index.html", b"second", durable=False, own_dir=True)
    assert files.pending == ["articles/a/index.html"]
    assert tree(out) == {f"articles/a/.index.html.{os.getpid()}.tmp": b"second"}  # nothing in place before commit
    files.commit()
    assert tree(out) == {"articles/a/index.html": b"second"}


def test_abort_leaves_no_new_page_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "site"
    (out / "articles/old").mkdir(parents=True)
    (out / "articles/old/index.html").write_bytes(b"old")
    files = writer(out, True)
    for name in ("new", "old", "other"):
        files.put(f"articles/{name}/index.html", b"new bytes", durable=False, own_dir=True)
    files.abort()
    assert tree(out) == {"articles/old/index.html": b"old"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_names_its_temp_files_with_its_own_pid(tmp_path: Path) -> None:
    """Two processes staging the same page must never share a temp file, forked or spawned."""
    out = tmp_path / "site"
    reader, writer_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        code = 1
        try:
            files = writer(out, True)
            files.put("articles/a/index.html", b"child", durable=False, own_dir=True)
            os.write(writer_end, str(os.getpid()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writer_end)
    with os.fdopen(reader, "rb") as pipe:
        told = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and told == str(child)
    assert tree(out) == {f"articles/a/.index.html.{child}.tmp": b"child"}


def folders(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): mode(p) for p in [root, *sorted(root.rglob("*"))] if p.is_dir()}


@pytest.mark.parametrize("staged", [True, False])
@pytest.mark.usefixtures("umask_077")
def test_the_folders_made_under_umask_077_let_a_static_server_in(tmp_path: Path, staged: bool) -> None:
    """A 0644 page in a 0700 folder is no use to a web server running as another user."""
    out = tmp_path / "site"
    files = writer(out, staged)
    files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)  # makes site/ and articles/ too
    files.put("articles/b/index.html", b"<p>b</p>", durable=False, own_dir=True)
    files.put("category/kinh-te/feeds/rss/2024-01.xml", b"<rss/>")
    files.commit()
    files.put("articles/c/index.html", b"<p>c</p>", durable=False, own_dir=True)  # after a page already there
    files.commit()
    assert folders(out) == {
        ".": 0o755, "articles": 0o755, "articles/a": 0o755, "articles/b": 0o755, "articles/c": 0o755,
        "category": 0o755, "category/kinh-te": 0o755, "category/kinh-te/feeds": 0o755,
        "category/kinh-te/feeds/rss": 0o755,
    }


def test_folders_keep_what_a_group_writable_umask_gives(tmp_path: Path) -> None:
    """Only what a static server needs is added: a deploy group's write bit (umask 002) stays."""
    old = os.umask(0o002)
    try:
        files = writer(tmp_path / "site", True)
        files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)
        files.put("feeds/rss/2024-01.xml", b"<rss/>")
        files.commit()
    finally:
        os.umask(old)
    assert set(folders(tmp_path / "site").values()) == {0o775}


@pytest.mark.usefixtures("umask_077")
def test_write_if_changed_makes_its_folders_0755_under_umask_077(tmp_path: Path) -> None:
    from syndicate.site_files import write_if_changed

    assert write_if_changed(tmp_path / "site", "feeds/atom/2024-01.xml", b"<feed/>")
    assert folders(tmp_path / "site") == {".": 0o755, "feeds": 0o755, "feeds/atom": 0o755}
    assert mode(tmp_path / "site/feeds/atom/2024-01.xml") == 0o644


def _failing_fsync_for(name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os.fsync failing with EIO (a disk fault) for the temp file of ``name``; the threads that called it."""
    real = os.fsync
    threads: list[str] = []

    def fsync(fd: int) -> None:
        threads.append(threading.current_thread().name)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{name}."):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return threads


def test_a_staged_file_is_fsynced_in_a_thread_and_a_failure_is_named_before_any_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "atom.xml").write_bytes(b"<feed>old</feed>")
    threads = _failing_fsync_for("atom.xml", monkeypatch)
    files = writer(out, staged=True)
    assert files.put("rss.xml", b"<rss/>")
    assert files.put("atom.xml", b"<feed>new</feed>")  # written; its fsync fails later, in the thread
    assert files.put("articles/a/index.html", b"<p>a</p>", durable=False, own_dir=True)
    with pytest.raises(BuildError) as failed:
        files.settle()
    assert str(failed.value) == f"cannot write {out}/atom.xml: Input/output error"
    assert threads and all(t.startswith("syndicate-fsync") for t in threads)  # never the building thread
    files.abort()
    assert tree(out) == {"atom.xml": b"<feed>old</feed>"}  # nothing renamed, no temp file left


def test_a_build_whose_fsync_fails_in_the_caller_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's fsyncs end before any worker is told to rename (else the workers' files would be in
    place when the caller's failure is heard)."""
    from datetime import UTC, datetime

    from syndicate.config import Settings
    from syndicate.models import Article
    from syndicate.publish import publish_all
    from syndicate.store import open_store

    store = open_store(str(tmp_path / "s.db"))
    settings = Settings(db=str(tmp_path / "s.db"), base_url="https://news.example.org")
    now = datetime(2024, 5, 20, 12, tzinfo=UTC)
    store.upsert_articles([Article(guid=f"g{i}", title=f"Bài {i}", slug=f"bai-{i}", body_html="<p>Nội dung</p>",
                                   published=datetime(2024, 1 + i % 4, 2, 8, tzinfo=UTC)) for i in range(8)])
    out = tmp_path / "site"
    publish_all(store, settings, out, now=now, ping=False, jobs=1)
    store.upsert_articles([Article(guid="g9", title="Bài mới", slug="bai-9", body_html="<p>Mới</p>",
                                   published=datetime(2024, 2, 9, 8, tzinfo=UTC))])
    before = {rel: (data, (out / rel).stat().st_ino) for rel, data in tree(out).items()}
    _failing_fsync_for("atom.xml", monkeypatch)  # the site's subscription feed: the caller writes it (workers
    with pytest.raises(BuildError) as failed:  # are other interpreters: their fsync is the real one)
        publish_all(store, settings, out, now=now, ping=False, jobs=2)
    assert str(failed.value) == f"cannot write {out}/atom.xml: Input/output error; nothing in {out}/ was changed"
    assert {rel: (data, (out / rel).stat().st_ino) for rel, data in tree(out).items()} == before
    store.close()


def everything(root: Path) -> set[str]:
    """Every file and folder under root."""
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*")}


def test_abort_removes_the_folders_it_made_and_only_those(tmp_path: Path) -> None:
    out = tmp_path / "site"
    files = writer(out, staged=False)
    files.put("articles/old/index.html", b"<p>old</p>", durable=False, own_dir=True)
    files.put("feeds/rss/2024-01.xml", b"<rss/>")
    (out / "articles" / "kept-empty").mkdir()  # someone's empty folder: not the writer's to remove
    before = everything(out)
    staged = writer(out, staged=True)
    for i in range(3):
        assert staged.put(f"articles/new-{i}/index.html", b"<p>new</p>", durable=False, own_dir=True)
    assert staged.put("articles/old/index.html", b"<p>changed</p>", durable=False, own_dir=True)
    assert staged.put("feeds/atom/2024-01.xml", b"<feed/>")  # a new folder for a feed
    assert staged.put("category/y-te/feeds/json/2024-01.json", b"{}")  # three new folders at once
    (out / "articles" / "new-1" / "theirs.txt").write_bytes(b"another build's file")  # keeps its folder
    staged.abort()
    assert everything(out) == before | {"articles/new-1/", "articles/new-1/theirs.txt"}
    assert (out / "articles/old/index.html").read_bytes() == b"<p>old</p>"


def test_abort_after_a_commit_that_failed_part_way_removes_only_what_is_still_staged(tmp_path: Path) -> None:
    out = tmp_path / "site"
    staged = writer(out, staged=True)
    for i in range(4):
        assert staged.put(f"articles/a-{i}/index.html", b"<p>a</p>", durable=False, own_dir=True)
    os.unlink(out / "articles" / "a-2" / f".index.html.{os.getpid()}.tmp")  # the third rename fails
    with pytest.raises(BuildError, match="a-2/index.html"):
        staged.commit()
    staged.abort()
    assert everything(out) == {"articles/", "articles/a-0/", "articles/a-0/index.html",
                               "articles/a-1/", "articles/a-1/index.html"}

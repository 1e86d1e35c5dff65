"""What holds secrets is private to its owner: the config (secret_key) and the database with its -wal/-shm."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate.cli import main
from syndicate.models import NewsList
from syndicate.store import open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most distributions ship (022): files are world-readable unless we say otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_a_new_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "var" / "news.db"
    store = open_store(db)
    try:
        store.create_list(NewsList(slug="tin", name="Tin"))  # a write, so the WAL really holds data
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.close()


@pytest.mark.usefixtures("open_umask")
def test_an_existing_database_keeps_the_mode_its_admin_gave_it(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    open_store(db).close()
    db.chmod(0o640)  # e.g. readable by a backup group, on purpose
    open_store(db).close()
    assert mode(db) == 0o640


@pytest.mark.usefixtures("open_umask")
def test_init_writes_a_private_config_and_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("SYNDICATE_"):
            monkeypatch.delenv(key)
    result = CliRunner().invoke(main, ["--db", "data/news.db", "init"])
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "syndicate.toml") == 0o600
    assert mode(tmp_path / "data" / "news.db") == 0o600
    assert result.stdout == (
        "wrote syndicate.toml (with a new secret_key; only you can read it)\n"
        "database data/news.db ready (0 articles)\n"
    )


@pytest.mark.usefixtures("open_umask")
def test_init_warns_about_a_config_others_can_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("SYNDICATE_"):
            monkeypatch.delenv(key)
    cfg = tmp_path / "syndicate.toml"
    cfg.write_text('[site]\nsecret_key = "' + "k" * 40 + '"\n', encoding="utf-8")
    cfg.chmod(0o644)
    result = CliRunner().invoke(main, ["--db", "news.db", "init"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "kept syndicate.toml (already exists)\n"
        "database news.db ready (0 articles)\n"
    )
    assert result.stderr == (
        "warning: syndicate.toml can be read by other users and holds secret_key: run `chmod 600 syndicate.toml`\n"
    )
    assert mode(cfg) == 0o644  # told, not changed behind the admin's back

"""Shared fixtures: a real SQLite store under tmp_path, settings, a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate.config import Secret, Settings
from syndicate.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VI = ROOT / "data" / "articles" / "vi" / "hai-phong-khoi-nghiep.txt"  # shared/samples/news-page-vi.txt
DATA = ROOT / "data"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core, at most four, since the end-to-end tests
    start senders, servers and SMTP sinks of their own; ``pytest -n 0`` runs in one process."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db=str(tmp_path / "syndicate.db"),
        secret_key=Secret("test-secret-key-0123456789-abcdefghij"),
        base_url="https://news.example.org",
        mail_maildir=str(tmp_path / "maildir"),
        feeds_out=str(tmp_path / "site"),
        source="tests",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings.db)
    yield s
    s.close()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose database and config live under tmp_path."""
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("SYNDICATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SYNDICATE_DB", str(tmp_path / "syndicate.db"))
    monkeypatch.setenv("SYNDICATE_SECRET_KEY", "test-secret-key-0123456789-abcdefghij")
    return CliRunner()

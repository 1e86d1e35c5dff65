"""`syndicate demo`, the README's first command, on a copy of data/: every stage lands, reruns are idempotent."""

from __future__ import annotations

import email
import email.policy
import shutil
from pathlib import Path

import feedparser
from click.testing import CliRunner

from syndicate.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"


def test_demo_runs_the_whole_pipeline_and_reruns_cleanly(cli: CliRunner, tmp_path: Path) -> None:
    shutil.copytree(DATA, tmp_path / "data", ignore=shutil.ignore_patterns("syndicate.db*"))
    first = cli.invoke(main, ["demo"])
    assert first.exit_code == 0, first.output + first.stderr
    assert "articles  imported 19 files: 34 new, 0 updated, 0 unchanged" in first.output
    assert "0 errors" in first.output and first.stderr == ""
    # every reader's first digest carries what arrived before it and is public at the send (emma's weekly
    # W47 digest, planned late, holds the technology news of the 21st-24th: it arrived before it)
    assert "send      at 2026-11-24T16:00:00+00:00 via maildir: sent 8, failed 0, skipped 0" in first.output
    assert "; purged 1 never confirmed in time" in first.output  # the sample's pending reader joined 8 days back

    feed = feedparser.parse(str(tmp_path / "site" / "atom.xml"))
    assert not feed.bozo and len(feed.entries) == 34
    assert (tmp_path / "site" / "list" / "tin-sang" / "rss.xml").exists()

    messages = sorted((tmp_path / "maildir" / "new").iterdir())
    assert len(messages) == 8
    for path in messages:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    subjects = {str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"])
                for p in messages}
    assert "Tin sáng: Kỳ thủ 14 tuổi vô địch giải cờ vua trẻ" in subjects  # the lead headline

    again = cli.invoke(main, ["demo"])
    assert again.exit_code == 0, again.output
    assert "0 new, 0 updated, 34 unchanged" in again.output
    assert "sent 0, failed 0, skipped 0" in again.output
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 8

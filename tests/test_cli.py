"""The CLI spine: every command has help with an example; errors are one line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from syndicate.cli import main


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((prefix + (name,), cmd))
        if isinstance(cmd, click.Group):
            out += _walk(cmd, prefix + (name,))
    return out


def test_every_command_has_help_with_an_example(cli: CliRunner) -> None:
    commands = _walk(main)
    assert len(commands) >= 5
    for path, _cmd in commands:
        result = cli.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example:" in result.output, f"`syndicate {' '.join(path)} --help` has no example"


def test_error_is_one_line_and_nonzero(cli: CliRunner) -> None:
    result = cli.invoke(main, ["article", "show", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "error: no article with id, slug or guid 'nope' (see `syndicate article list`)\n"


def test_debug_shows_the_exception(cli: CliRunner) -> None:
    result = cli.invoke(main, ["--debug", "article", "show", "nope"])
    assert result.exit_code != 0
    assert result.exception is not None and "nope" in str(result.exception)


def test_bad_config_names_key_and_file(cli: CliRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "syndicate.toml").write_text('[site]\ntimezone = "Mars/Base"\n', encoding="utf-8")
    result = cli.invoke(main, ["article", "list"])
    assert result.exit_code == 78
    assert result.stderr == (
        "error: syndicate.toml: 'timezone' is 'Mars/Base', not an IANA time zone such as 'Asia/Ho_Chi_Minh'\n"
    )
    (tmp_path / "syndicate.toml").write_text('[smtp]\nport = "many"\n', encoding="utf-8")
    result = cli.invoke(main, ["article", "list"])
    assert "syndicate.toml: 'smtp_port' is 'many'" in result.stderr


def test_init_writes_config_once(cli: CliRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = cli.invoke(main, ["init"])
    assert first.exit_code == 0, first.output
    text = (tmp_path / "syndicate.toml").read_text(encoding="utf-8")
    assert 'secret_key = "' in text
    second = cli.invoke(main, ["init"])
    assert "kept syndicate.toml" in second.output
    assert (tmp_path / "syndicate.toml").read_text(encoding="utf-8") == text


def test_import_refreshes_published_feeds(cli: CliRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import feedparser

    first = tmp_path / "a.md"
    first.write_text("---\ntitle: Tin một\ndate: 2026-11-20T08:00:00+07:00\ncategory: Kinh tế\n---\nMột.\n",
                     encoding="utf-8")
    assert cli.invoke(main, ["article", "import", str(first)]).exit_code == 0
    assert not (tmp_path / "site").exists()  # nothing published until asked
    assert cli.invoke(main, ["feed", "build"]).exit_code == 0
    second = tmp_path / "b.md"
    second.write_text("---\ntitle: Tin hai\ndate: 2026-11-21T08:00:00+07:00\ncategory: Kinh tế\n---\nHai.\n",
                      encoding="utf-8")
    result = cli.invoke(main, ["article", "import", str(second)])
    assert result.exit_code == 0, result.output
    assert "files refreshed in site/" in result.output
    for rel in ("site/rss.xml", "site/category/kinh-te/atom.xml"):
        titles = [e.title for e in feedparser.parse(str(tmp_path / rel)).entries]
        assert titles == ["Tin hai", "Tin một"], rel
    again = cli.invoke(main, ["article", "import", str(second), "--no-publish"])
    assert "refreshed" not in again.output


def test_remove_drops_the_article_from_published_feeds_and_archives(cli: CliRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import feedparser

    for n, day in (("một", 20), ("hai", 21)):
        (tmp_path / f"{day}.md").write_text(
            f"---\ntitle: Tin {n}\ndate: 2026-11-{day}T08:00:00+07:00\ncategory: Kinh tế\n---\nNội dung.\n",
            encoding="utf-8")
    assert cli.invoke(main, ["article", "import", str(tmp_path / "20.md"), str(tmp_path / "21.md")]).exit_code == 0
    assert cli.invoke(main, ["feed", "build"]).exit_code == 0
    gone = cli.invoke(main, ["article", "remove", "tin-hai"])
    assert gone.exit_code == 0, gone.output
    assert "files refreshed in site/" in gone.output
    for rel in ("site/atom.xml", "site/category/kinh-te/rss.xml", "site/feeds/atom/2026-11.xml",
                "site/category/kinh-te/feeds/atom/2026-11.xml"):
        assert [e.title for e in feedparser.parse(str(tmp_path / rel)).entries] == ["Tin một"], rel


def test_a_command_where_nothing_is_set_up_says_so_and_creates_nothing(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNDICATE_DB")
    result = cli.invoke(main, ["article", "list"])
    assert result.exit_code == 78
    assert result.stderr == (
        "error: no config file and no database data/syndicate.db here; run `syndicate init` to create them "
        "(or pass --config / --db)\n"
    )
    assert not (tmp_path / "data").exists()
    assert cli.invoke(main, ["init"]).exit_code == 0
    assert cli.invoke(main, ["article", "list"]).exit_code == 0

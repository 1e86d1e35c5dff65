"""docs/cli.md holds every command's --help; this keeps it from drifting.

Regenerate after changing a command: ``UPDATE_DOCS=1 pytest tests/test_docs.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.testing import CliRunner

from syndicate.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


def render_cli_doc() -> str:
    runner = CliRunner()
    parts = [
        "# Command reference\n",
        "Generated from each command's `--help` by `UPDATE_DOCS=1 pytest tests/test_docs.py`;",
        "the test suite fails when this file and the commands disagree.\n",
    ]
    for path in _commands(main):
        result = runner.invoke(main, [*path, "--help"], prog_name="syndicate", terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        parts.append(f"## syndicate {' '.join(path)}".rstrip() + "\n")
        parts.append("```\n" + result.output.rstrip() + "\n```\n")
    return "\n".join(parts)


def test_cli_doc_is_current() -> None:
    text = render_cli_doc()
    if os.environ.get("UPDATE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, "docs/cli.md is stale: run UPDATE_DOCS=1 pytest tests/test_docs.py"

"""The README's "Following a site end to end, offline" runs as written: every `$` command of its
block, in order, in a copy of data/, with a real `python -m http.server` on 127.0.0.1 (a free port
in place of 8000), and every output line it shows is what the command printed (`…` stands for any
text). So the docs cannot drift from what syndicate does."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
HEADING = "### Following a site end to end, offline"
BIN = Path(sys.executable).parent


def readme_block() -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) for each `$` line of the section's code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(HEADING):]
    block = section.split("```", 2)[1]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines()[1:]:
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip():
            steps[-1][1].append(line)
    return steps


def matches(shown: str, printed: str) -> bool:
    pattern = ".+".join(re.escape(part) for part in shown.split("…"))
    return re.fullmatch(pattern, printed) is not None


def wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, "http.server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"http.server did not listen on {port}")


def test_the_readme_sources_walkthrough_runs_as_written(tmp_path: Path) -> None:
    steps = readme_block()
    assert [c.split()[:3] for c, _ in steps][:3] == [
        ["syndicate", "demo", ">"], ["python", "-m", "http.server"], ["export", "SYNDICATE_FETCH_ALLOW_PRIVATE=true"]]
    shutil.copytree(ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("syndicate.db*"))
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for command, shown in steps:
            command = command.replace("8000", port)
            shown = [line.replace("8000", port) for line in shown]
            if command.endswith("&"):
                server = subprocess.Popen(["/bin/sh", "-c", "exec " + command.rstrip("& ")], cwd=tmp_path, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                servers.append(server)
                wait_for_port(int(port), server)
                continue
            if command.startswith("export "):
                key, _, value = command.removeprefix("export ").partition("=")
                env[key] = value
                continue
            done = subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            assert done.stderr == "", command
            printed = done.stdout.splitlines()
            assert len(printed) == len(shown), f"{command}\nprinted:\n{done.stdout}"
            for want, got in zip(shown, printed, strict=True):
                assert matches(want, got), f"{command}\nREADME shows: {want}\nit printed:   {got}"
    finally:
        for server in servers:
            server.terminate()
            server.wait(120)
    # what the prose claims beyond the lines shown: the page's article is in the store, under its own date
    show = subprocess.run([str(BIN / "syndicate"), "article", "show", f"http://127.0.0.1:{port}/tin-tuc/khoi-nghiep.html"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr
    assert "Tìm kiếm cơ hội trong việc kết nối công nghệ" in show.stdout and "2024-10-10" in show.stdout

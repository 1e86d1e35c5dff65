"""The cron and systemd examples run as the README tells: their commands really work."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYNDICATE = str(Path(sys.executable).parent / "syndicate")


def _site(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "etc" / "syndicate.toml"
    config.parent.mkdir()
    config.write_text(
        '[site]\nsecret_key = "cron-test-secret-0123456789"\n'
        f'db = "{tmp_path / "var" / "syndicate.db"}"\n'
        f'[mail]\nmaildir = "{tmp_path / "var" / "maildir"}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    return config, env


def _crontab_lines() -> list[str]:
    return [ln for ln in (ROOT / "cron" / "crontab").read_text().splitlines()
            if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]


def _run_cron_line(line: str, tmp_path: Path, log_name: str) -> tuple[subprocess.CompletedProcess[str], str]:
    fields = line.split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    config, env = _site(tmp_path)
    log = tmp_path / log_name
    command = (fields[5].replace("/opt/syndicate/.venv/bin/syndicate", SYNDICATE)
               .replace("/etc/syndicate/syndicate.toml", str(config))
               .replace(f"/var/log/syndicate/{log_name}", str(log)))
    done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    return done, log.read_text()


def test_crontab_line_runs_send(tmp_path: Path) -> None:
    lines = _crontab_lines()
    assert len(lines) == 2
    done, log = _run_cron_line(next(ln for ln in lines if " send " in ln), tmp_path, "send.log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"sent 0, failed 0, skipped 0, retry later 0\n", log)
    assert done.stdout == ""  # nothing for cron to mail when all went well


def test_crontab_line_runs_fetch(tmp_path: Path) -> None:
    done, log = _run_cron_line(next(ln for ln in _crontab_lines() if " fetch " in ln), tmp_path, "fetch.log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert log == "fetched 0 sources: nothing was due\n"
    assert done.stdout == ""


def test_systemd_fetch_unit_runs_fetch(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(ROOT / "cron" / "syndicate-fetch.service")
    service = unit["Service"]
    assert service["Type"] == "oneshot" and service["SuccessExitStatus"] == "75"
    config, env = _site(tmp_path)
    key, _, value = service["Environment"].partition("=")
    env[key] = value.replace("/etc/syndicate/syndicate.toml", str(config))
    argv = shlex.split(service["ExecStart"])
    argv[0] = argv[0].replace("/opt/syndicate/.venv/bin/syndicate", SYNDICATE)
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "fetched 0 sources: nothing was due\n"


def test_systemd_service_runs_send(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(ROOT / "cron" / "syndicate-send.service")
    service = unit["Service"]
    assert service["Type"] == "oneshot" and service["SuccessExitStatus"] == "75"
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(ROOT / "cron" / "syndicate-send.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    config, env = _site(tmp_path)
    key, _, value = service["Environment"].partition("=")
    env[key] = value.replace("/etc/syndicate/syndicate.toml", str(config))
    argv = shlex.split(service["ExecStart"])
    argv[0] = argv[0].replace("/opt/syndicate/.venv/bin/syndicate", SYNDICATE)
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run(argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sent 0, failed 0, skipped 0, retry later 0\n"
    assert (tmp_path / "var" / "syndicate.db").exists()

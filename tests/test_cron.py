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
        '[site]\nsecret_key = "cron-test-secret-0123456789-abcdefghij"\n'
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
    assert fields[1:5] == ["*", "*", "*", "*"] and fields[0] in ("*/5", "*")
    config, env = _site(tmp_path)
    log = tmp_path / log_name
    command = (fields[5].replace("/opt/syndicate/.venv/bin/syndicate", SYNDICATE)
               .replace("/etc/syndicate/syndicate.toml", str(config))
               .replace(f"/var/log/syndicate/{log_name}", str(log)))
    done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    return done, log.read_text()


def test_crontab_line_runs_send(tmp_path: Path) -> None:
    lines = _crontab_lines()
    assert len(lines) == 3
    done, log = _run_cron_line(next(ln for ln in lines if " send " in ln), tmp_path, "send.log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"sent 0, failed 0, skipped 0, retry later 0\n", log)
    assert done.stdout == ""  # nothing for cron to mail when all went well


def test_crontab_line_runs_fetch(tmp_path: Path) -> None:
    done, log = _run_cron_line(next(ln for ln in _crontab_lines() if " fetch " in ln), tmp_path, "fetch.log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert log == "fetched 0 sources: nothing was due\n"
    assert done.stdout == ""


def test_crontab_line_runs_webhook_deliver(tmp_path: Path) -> None:
    line = next(ln for ln in _crontab_lines() if " webhook deliver " in ln)
    assert line.split()[0] == "*"  # every minute
    done, log = _run_cron_line(line, tmp_path, "webhooks.log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert log == "delivered 0, retry later 0, failed 0\n"
    assert done.stdout == ""


def test_systemd_webhooks_unit_runs_deliver(tmp_path: Path) -> None:
    service = _unit("syndicate-webhooks.service")
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(ROOT / "cron" / "syndicate-webhooks.timer")
    assert service["Type"] == "oneshot" and timer["Timer"]["OnUnitActiveSec"] == "1min"
    config, env = _site(tmp_path)
    done = subprocess.run(_argv(service, config, env), env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "delivered 0, retry later 0, failed 0\n"


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


def _unit(name: str) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(ROOT / "cron" / name)
    return unit["Service"]


def _argv(service: configparser.SectionProxy, config: Path, env: dict[str, str]) -> list[str]:
    key, _, value = service["Environment"].partition("=")
    env[key] = value.replace("/etc/syndicate/syndicate.toml", str(config))
    argv = shlex.split(service["ExecStart"])
    argv[0] = argv[0].replace("/opt/syndicate/.venv/bin/syndicate", SYNDICATE)
    return argv


def test_systemd_bounces_unit_processes_the_return_path_maildir(tmp_path: Path) -> None:
    service = _unit("syndicate-bounces.service")
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(ROOT / "cron" / "syndicate-bounces.timer")
    assert service["Type"] == "oneshot" and timer["Timer"]["OnUnitActiveSec"] == "10min"
    config, env = _site(tmp_path)
    argv = _argv(service, config, env)
    maildir = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    argv = [maildir.as_posix() if a == "/var/lib/syndicate/bounces" else a for a in argv]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 messages")


def test_systemd_serve_unit_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    from loopback import free_port

    service = _unit("syndicate-serve.service")
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    config, env = _site(tmp_path)
    port = free_port()
    argv = [a.replace("8080", str(port)) for a in _argv(service, config, env)]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/atom.xml", timeout=10) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.1)  # polling for the port to open, not waiting a fixed time
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    # uvicorn finishes open requests, then re-raises SIGTERM; systemd counts
    # death by SIGTERM as a clean stop of a service.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err

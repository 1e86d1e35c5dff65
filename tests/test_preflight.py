"""``syndicate check`` and ``syndicate dkim``: findings with fixes, keys that verify."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import dkim as dkimpy
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syndicate.cli import main
from syndicate.config import Secret, Settings, load_settings
from syndicate.mailer.dkim import DkimSigner, load_key
from syndicate.mailer.dkimkeys import dns_records, generate_key
from syndicate.mailer.message import Mail, render_mail
from syndicate.models import NewsList, utcnow
from syndicate.preflight import run_checks

SECRET = Secret("s" * 40)


def _codes(settings: Settings, lists: list[NewsList] | None = None) -> dict[str, str]:
    return {f.code: f.level for f in run_checks(settings, lists or [])}


def _ready(tmp_path: Path, **over: object) -> Settings:
    key = tmp_path / "dkim.pem"
    if not key.exists():
        key.write_bytes(generate_key("ed25519"))
        key.chmod(0o600)
    values: dict[str, object] = dict(
        secret_key=SECRET, base_url="https://news.example.org", mail_sender_address="news@example.org",
        mail_postal_address="12 Tran Phu, Hai Phong", mail_return_path_domain="bounce.example.org",
        dkim_domain="example.org", dkim_selector="s1", dkim_key_file=str(key),
    )
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


def test_a_ready_config_has_no_findings(tmp_path: Path) -> None:
    assert run_checks(_ready(tmp_path), [NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org")]) == []


def test_the_demo_defaults_name_localhost_postal_address_and_dkim() -> None:
    codes = _codes(Settings(secret_key=SECRET))
    assert codes["base-url-local"] == "error"
    assert codes["sender-local"] == "error"
    assert codes["postal-address"] == "warning"
    assert codes["dkim-missing"] == "warning"  # no SMTP: mail goes to a Maildir
    assert _codes(Settings(secret_key=SECRET, smtp_host="smtp.example.org"))["dkim-missing"] == "error"


def test_plain_http_public_base_url_is_a_warning(tmp_path: Path) -> None:
    assert _codes(_ready(tmp_path, base_url="http://news.example.org")) == {"base-url-http": "warning"}


def test_serve_port_must_match_a_local_base_url() -> None:
    found = run_checks(Settings(secret_key=SECRET, base_url="http://127.0.0.1:8080"), [], serve_port=9000)
    port = [f for f in found if f.code == "serve-port"]
    assert port and port[0].message == "serve listens on port 9000 but base_url http://127.0.0.1:8080 points at port 8080"
    assert not [f for f in run_checks(Settings(secret_key=SECRET), [], serve_port=8080) if f.code == "serve-port"]


def test_dkim_domain_must_align_with_every_from_domain(tmp_path: Path) -> None:
    lists = [NewsList(slug="tech", name="Tech", sender_address="tech@other.example.net")]
    found = [f for f in run_checks(_ready(tmp_path), lists) if f.code == "dkim-alignment"]
    assert [f.message for f in found] == [
        "list 'tech' sends from tech@other.example.net but DKIM signs d=example.org: DMARC alignment fails"
    ]


def test_dkim_key_unreadable_garbage_or_short(tmp_path: Path) -> None:
    assert _codes(_ready(tmp_path, dkim_key_file=str(tmp_path / "absent.pem")))["dkim-unreadable"] == "error"
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    assert _codes(_ready(tmp_path, dkim_key_file=str(bad)))["dkim-unreadable"] == "error"
    short = tmp_path / "short.pem"
    short.write_bytes(rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    short.chmod(0o600)
    assert _codes(_ready(tmp_path, dkim_key_file=str(short))) == {"dkim-short": "warning"}
    assert _codes(_ready(tmp_path, dkim_selector=""))["dkim-incomplete"] == "error"


def test_short_secret_and_readable_files(tmp_path: Path) -> None:
    assert _codes(_ready(tmp_path, secret_key=Secret("short")))["secret-short"] == "error"
    cfg = tmp_path / "syndicate.toml"
    cfg.write_text("")
    cfg.chmod(0o644)
    found = run_checks(_ready(tmp_path), [], config_file=cfg)
    assert [f.fix for f in found] == [f"chmod 600 {cfg}"]


def test_a_broken_template_or_missing_language_is_found(tmp_path: Path) -> None:
    mine = tmp_path / "mytemplates" / "email"
    mine.mkdir(parents=True)
    (mine / "welcome.html").write_text("{% if %}")
    found = run_checks(_ready(tmp_path, mail_templates_dir=str(mine.parent)), [NewsList(slug="fr", name="Fr", language="fr")])
    by_code = {(f.code, f.message.split(":")[0]) for f in found}
    assert ("templates", "template email/welcome.html does not compile") in by_code
    assert any(f.code == "language" and "'fr'" in f.message for f in found)


def _run(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(main, list(args))
    return result.exit_code, result.output


def test_check_command_exit_code_and_json(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATE_SECRET_KEY", "k" * 40)
    assert _run(cli, "init")[0] == 0
    code, out = _run(cli, "check")
    assert code == 1
    assert "error: base_url is http://127.0.0.1:8080: every email and feed links to a local address" in out
    assert out.rstrip().splitlines()[-1].startswith("2 errors, ")
    code, out = _run(cli, "check", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert {"base-url-local", "postal-address", "dkim-missing"} <= {f["code"] for f in doc["findings"]}


def test_dkim_keygen_writes_a_private_key_and_the_config(cli: CliRunner, tmp_path: Path) -> None:
    _run(cli, "init")
    code, out = _run(cli, "dkim", "keygen", "--domain", "example.org", "--selector", "news2026")
    assert code == 0, out
    key = tmp_path / "dkim-rsa.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    s = load_settings(str(tmp_path / "syndicate.toml"), env={})
    assert (s.dkim_key_file, s.dkim_domain, s.dkim_selector) == ("dkim-rsa.pem", "example.org", "news2026")
    code, out = _run(cli, "dkim", "keygen")
    assert code == 78 and "already exists" in out
    code, out = _run(cli, "dkim", "dns", "--json")
    records = json.loads(out)
    assert [r["name"] for r in records] == ["news2026._domainkey.example.org", "example.org", "_dmarc.example.org"]
    assert records[0]["value"].startswith("v=DKIM1; k=rsa; p=")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_the_published_record_verifies_what_the_sender_signs(kind: str) -> None:
    pem = generate_key(kind)
    record = dns_records("example.org", "s1", pem)[0]
    signer = DkimSigner("example.org", "s1", load_key(pem))
    mail = Mail(from_name="Tin", from_addr="news@example.org", to_name="Lan", to_addr="lan@example.net",
                subject="Bản tin sáng", text="Xin chào\n", html="<p>Xin chào</p>", message_id="<1@example.org>",
                date=utcnow())
    raw = render_mail(mail, signer)
    txt = record.value.encode()
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt)


def test_zone_line_splits_long_values() -> None:
    record = dns_records("example.org", "s1", generate_key("rsa"))[0]
    line = record.zone_line()
    parts = line.split(" TXT ", 1)[1]
    assert parts.count('" "') == 1 and all(len(p) <= 257 for p in parts.split(" "))
    assert os.linesep not in line


def test_the_postal_address_is_in_the_footer_of_every_email(tmp_path: Path) -> None:
    from syndicate.digest import render_notice
    from syndicate.render import make_environment

    s = Settings(secret_key=SECRET, mail_postal_address="12 Trần Phú, Hải Phòng")
    nl = NewsList(slug="tin", name="Tin", language="vi")
    env = make_environment(s)
    for kind in ("confirm", "welcome"):
        content = render_notice(s, env, kind, nl, "Lan", "https://x/confirm/t", "https://x/unsubscribe/t")
        assert "12 Trần Phú, Hải Phòng" in content.html and content.text.rstrip().endswith("12 Trần Phú, Hải Phòng")
    for name in ("email/_frame.html", "email/digest.txt"):  # the frame digests and campaigns extend
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        assert "site.mail_postal_address" in source
    bare = Settings(secret_key=SECRET)
    plain = render_notice(bare, make_environment(bare), "confirm", nl, "Lan", "https://x/c", "https://x/u")
    assert "Hải Phòng" not in plain.text


def test_init_writes_a_commented_feedback_id_that_works_when_uncommented(tmp_path: Path) -> None:
    from syndicate.config import write_default_config

    cfg = tmp_path / "syndicate.toml"
    assert write_default_config(cfg)
    text = cfg.read_text()
    assert '# feedback_id = "syndicate"' in text
    assert load_settings(str(cfg), env={}).mail_feedback_id == ""
    cfg.write_text(text.replace('# feedback_id = "syndicate"', 'feedback_id = "syndicate"'))
    assert load_settings(str(cfg), env={}).mail_feedback_id == "syndicate"


def test_each_list_is_checked_against_the_key_for_its_from_domain(tmp_path: Path) -> None:
    from syndicate.config import DkimKey

    other = tmp_path / "other.pem"
    other.write_bytes(generate_key("ed25519"))
    other.chmod(0o600)
    lists = [NewsList(slug="tech", name="Tech", sender_address="tech@other.example.net"),
             NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org"),
             NewsList(slug="lost", name="Lost", sender_address="x@nowhere.example")]
    keys = (DkimKey("other.example.net", "o1", str(other), where="[[dkim.keys]] 1"),)
    found = [f for f in run_checks(_ready(tmp_path, dkim_keys=keys), lists) if f.code.startswith("dkim")]
    assert [f.message for f in found] == [
        "list 'lost' sends from x@nowhere.example but DKIM signs d=example.org: DMARC alignment fails"]
    assert found[0].fix.startswith("add a key for the From domain (`syndicate dkim keygen --domain nowhere.example`")
    broken = keys + (DkimKey("example.org", "e1", str(tmp_path / "absent.pem"), where="[[dkim.keys]] 2"),)
    found = [f for f in run_checks(_ready(tmp_path, dkim_keys=broken), lists[:2]) if f.code.startswith("dkim")]
    assert [(f.code, f.message) for f in found] == [
        ("dkim-unreadable", f"[[dkim.keys]] 2 key_file {tmp_path / 'absent.pem'}: No such file or directory")]


def test_dkim_keys_config_errors_name_the_entry(tmp_path: Path) -> None:
    from syndicate.errors import ConfigError

    cfg = tmp_path / "s.toml"
    cfg.write_text('[[dkim.keys]]\ndomain = "example.org"\nselector = "s1"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), env={})
    assert str(info.value) == f"{cfg}: [[dkim.keys]] 1: 'key_file' must be a non-empty string"
    cfg.write_text('[dkim]\ndomain = "example.org"\nselector = "s1"\nkey_file = "a.pem"\n'
                   '[[dkim.keys]]\ndomain = "Example.org"\nselector = "s1"\nkey_file = "b.pem"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), env={})
    assert str(info.value) == (f"{cfg}: [[dkim.keys]] 1 uses selector 's1' for Example.org like [dkim]: "
                               "each key needs its own selector")
    cfg.write_text('[[dkim.keys]]\ndomain = "example.org"\nselector = "s1"\nkey_file = "a.pem"\nalgo = "rsa"\n')
    with pytest.raises(ConfigError, match="unknown key 'algo'"):
        load_settings(str(cfg), env={})
    env = {"SYNDICATE_DKIM_KEYS": '[{domain = "example.net", selector = "s2", key_file = "c.pem"}]'}
    cfg.write_text("")
    assert [(k.domain, k.where) for k in load_settings(str(cfg), env=env).dkim_keys] == [("example.net", "[[dkim.keys]] 1")]


def test_keygen_adds_ed25519_beside_rsa_and_a_key_per_domain_and_dns_lists_them_all(
        cli: CliRunner, tmp_path: Path) -> None:
    _run(cli, "init")
    cfg = tmp_path / "syndicate.toml"
    assert _run(cli, "dkim", "keygen", "--domain", "example.org")[0] == 0
    code, out = _run(cli, "dkim", "keygen", "--type", "ed25519")
    assert code == 0, out
    assert out.splitlines()[:2] == [
        "wrote dkim-ed25519.pem (Ed25519, mode 0600) for syndicate-ed25519._domainkey.example.org",
        f"added [[dkim.keys]] domain = 'example.org', selector = 'syndicate-ed25519', key_file = 'dkim-ed25519.pem' to {cfg.name}",
    ]
    code, out = _run(cli, "dkim", "keygen", "--type", "ed25519", "--domain", "other.example.net")
    assert code == 0, out
    assert _run(cli, "dkim", "keygen", "--type", "ed25519")[0] == 78  # that one exists: --force to replace it
    s = load_settings(str(cfg), env={})
    assert [(k.domain, k.selector, k.key_file) for k in s.dkim_key_configs()] == [
        ("example.org", "syndicate", "dkim-rsa.pem"),
        ("example.org", "syndicate-ed25519", "dkim-ed25519.pem"),
        ("other.example.net", "syndicate", "dkim-syndicate.other.example.net.pem"),
    ]
    for k in s.dkim_key_configs():
        assert stat.S_IMODE((tmp_path / k.key_file).stat().st_mode) == 0o600
    code, out = _run(cli, "dkim", "dns", "--json")
    records = json.loads(out)
    assert [(r["name"], r["purpose"]) for r in records] == [
        ("syndicate._domainkey.example.org", "DKIM"), ("syndicate-ed25519._domainkey.example.org", "DKIM"),
        ("syndicate._domainkey.other.example.net", "DKIM"),
        ("example.org", "SPF"), ("_dmarc.example.org", "DMARC"),
        ("other.example.net", "SPF"), ("_dmarc.other.example.net", "DMARC"),
    ]
    assert [r["value"].split(";")[1] for r in records[:3]] == [" k=rsa", " k=ed25519", " k=ed25519"]
    # the published records verify what each key signs
    from syndicate.mailer import DkimKeyring

    ring = DkimKeyring.from_settings(s)
    assert ring is not None
    txt = {(r["name"] + ".").encode(): r["value"].encode() for r in records[:3]}
    for from_addr, count in (("news@example.org", 2), ("tin@other.example.net", 1)):
        mail = Mail(from_name="Tin", from_addr=from_addr, to_name="Lan", to_addr="lan@example.net",
                    subject="Bản tin sáng", text="Xin chào\n", html="<p>Xin chào</p>", message_id="<1@example.org>",
                    date=utcnow())
        raw = render_mail(mail, ring)
        assert raw.count(b"DKIM-Signature:") == count
        d = dkimpy.DKIM(raw)
        assert all(d.verify(idx=i, dnsfunc=lambda name, timeout=5: txt[name]) for i in range(count))


def test_keygen_without_a_config_prints_the_variable_that_configures_the_key(
        cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dkim-rsa.pem").write_bytes(generate_key("rsa"))
    monkeypatch.setenv("SYNDICATE_DKIM_KEY_FILE", "dkim-rsa.pem")
    monkeypatch.setenv("SYNDICATE_DKIM_DOMAIN", "example.org")
    monkeypatch.setenv("SYNDICATE_DKIM_SELECTOR", "s1")
    code, out = _run(cli, "dkim", "keygen", "--type", "ed25519")
    assert code == 0, out
    hint = out.splitlines()[1]
    assert hint == ("no config file syndicate.toml: set SYNDICATE_DKIM_KEYS='[{domain = \"example.org\", "
                    "selector = \"syndicate-ed25519\", key_file = \"dkim-ed25519.pem\"}]' (or add a [[dkim.keys]] table to a config)")
    monkeypatch.setenv("SYNDICATE_DKIM_KEYS", hint.split("SYNDICATE_DKIM_KEYS='")[1].split("'")[0])
    code, out = _run(cli, "dkim", "dns", "--json")
    assert code == 0, out
    assert [r["name"] for r in json.loads(out) if r["purpose"] == "DKIM"] == [
        "s1._domainkey.example.org", "syndicate-ed25519._domainkey.example.org"]


def test_a_subject_template_naming_an_unknown_placeholder_is_found_before_a_send(tmp_path: Path) -> None:
    lists = [NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org")]
    found = run_checks(_ready(tmp_path, mail_subject="{list}: {headline}"), lists)
    assert [(f.level, f.code, f.message) for f in found] == [(
        "error", "subject",
        "list 'tin': defaults: [mail] subject '{list}: {headline}': {headline} is not a placeholder; "
        "use {list}, {lead}, {date}, {count}",
    )]
    assert run_checks(_ready(tmp_path, mail_subject="{list} · {date}"), lists) == []

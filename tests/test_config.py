"""Settings: defaults, then the TOML file, then SYNDICATE_* env; errors name key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndicate.config import Secret, Settings, load_settings, write_default_config
from syndicate.errors import ConfigError


def test_defaults_then_file_then_env(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[site]\ntitle = "Tin Hải Phòng"\n[smtp]\nhost = "mail.example.org"\nport = 587\n', encoding="utf-8")
    s = load_settings(str(cfg), env={"SYNDICATE_SMTP_PORT": "2525"})
    assert s.title == "Tin Hải Phòng"
    assert s.smtp_host == "mail.example.org"
    assert s.smtp_port == 2525
    assert s.transport == "smtp"
    assert load_settings(env={}).transport == "maildir"


def test_db_flag_beats_env(tmp_path: Path) -> None:
    s = load_settings(env={"SYNDICATE_DB": "a.db"}, db="b.db")
    assert s.db == "b.db"
    assert load_settings(env={"SYNDICATE_DB": "a.db"}).db == "a.db"


def test_secrets_never_print(tmp_path: Path) -> None:
    s = load_settings(env={"SYNDICATE_SECRET_KEY": "hunter2-is-a-long-enough-secret-now", "SYNDICATE_SMTP_PASSWORD": "pw"})
    assert "hunter2-is-a-long-enough-secret-now" not in repr(s) and "pw'" not in repr(s)
    assert s.secret_key.get() == "hunter2-is-a-long-enough-secret-now"
    assert str(Secret("x")) == "Secret('********')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[smtp]\nport = "x"\n', "'smtp_port' is 'x'"),
        ('[smtp]\nsecurity = "ssl"\n', "'smtp_security' is 'ssl'; choose one of none, starttls, tls"),
        ('[site]\ncolour = "red"\n', "unknown key 'colour' in [site]"),
        ('title = "x"\n', "top-level key 'title' must be inside a [section]"),
        ("[site\n", "not valid TOML"),
        ('[site]\nbase_url = "example.org"\n', "'base_url' is 'example.org'; it must start with http:// or https://"),
    ],
)
def test_invalid_config_names_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), env={})
    assert str(cfg) in str(info.value)
    assert message in str(info.value)


def test_bad_env_value_names_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable SYNDICATE_FEEDS_ITEMS: 'feeds_items' is 'lots'"):
        load_settings(env={"SYNDICATE_FEEDS_ITEMS": "lots"})


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "missing.toml"), env={})


def test_written_default_config_loads_with_a_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "syndicate.toml"
    assert write_default_config(cfg) is True
    assert write_default_config(cfg) is False
    s = load_settings(str(cfg), env={})
    assert len(s.require_secret()) >= 32
    other = tmp_path / "other.toml"
    write_default_config(other)
    assert load_settings(str(other), env={}).secret_key != s.secret_key


def test_missing_secret_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="run `syndicate init` or set SYNDICATE_SECRET_KEY"):
        Settings().require_secret()


# --- secrets and file permissions -----------------------------------------------------------------

SHORT_KEY_HELP = (
    "it must be at least 32 bytes. Make one with "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` "
    "(`syndicate init` writes one into a new config; a new key makes the links already emailed invalid)"
)


def test_short_secret_key_in_the_file_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    cfg = tmp_path / "syndicate.toml"
    cfg.write_text('[site]\nsecret_key = "hunter2"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), env={})
    assert str(info.value) == f"{cfg}: 'secret_key' is 7 bytes long; {SHORT_KEY_HELP}"
    assert "hunter2" not in str(info.value)


def test_short_secret_key_in_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SYNDICATE_SECRET_KEY": "ĐàNẵng-0123456789-abcdefghi"})  # 27 chars, 31 bytes
    assert str(info.value) == f"environment variable SYNDICATE_SECRET_KEY: 'secret_key' is 31 bytes long; {SHORT_KEY_HELP}"
    exactly = "x" * 32
    assert load_settings(env={"SYNDICATE_SECRET_KEY": exactly}).require_secret() == exactly


def test_no_secret_key_still_loads_for_commands_that_sign_nothing() -> None:
    assert not load_settings(env={}).secret_key


def test_written_config_is_private_to_its_owner(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "syndicate.toml"
    assert write_default_config(cfg)
    assert cfg.stat().st_mode & 0o777 == 0o600
    assert len(load_settings(str(cfg), env={}).require_secret().encode()) >= 32

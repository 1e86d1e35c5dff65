"""Settings: embedded defaults, then ``syndicate.toml``, then ``SYNDICATE_*`` env.

Read once with :func:`load_settings` and passed in; never a global. The TOML
file groups keys in sections; a key ``host`` in ``[smtp]`` is the field
``smtp_host`` and the environment variable ``SYNDICATE_SMTP_HOST``. Keys in
``[site]`` carry no prefix (``[site] title`` is ``title``, ``SYNDICATE_TITLE``).
Secrets are wrapped in :class:`Secret` so they never print.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

DEFAULT_DB = "data/syndicate.db"
DEFAULT_CONFIG = "syndicate.toml"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class Secret:
    """A string that never shows itself in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Every setting syndicate reads. Field names are ``<section>_<key>``."""

    # [site]
    title: str = "syndicate"
    subtitle: str = "News and digests"
    base_url: str = "http://127.0.0.1:8080"
    language: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    db: str = DEFAULT_DB
    # [feeds]
    feeds_items: int = 50
    feeds_out: str = "site"
    feeds_hub_url: str = ""
    feeds_ttl: int = 60
    # [mail]
    mail_sender_name: str = "syndicate"
    mail_sender_address: str = "news@localhost"
    mail_return_path_domain: str = ""
    mail_feedback_id: str = ""
    mail_maildir: str = "maildir"
    mail_templates_dir: str = ""
    mail_pending_max_age_days: int = 7
    # [smtp]
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    smtp_security: str = "none"  # none | starttls | tls
    smtp_ca_file: str = ""  # PEM bundle to trust instead of the system's (a private relay)
    smtp_timeout: float = 30.0
    smtp_pool_size: int = 4
    smtp_rate: float = 0.0  # messages per second, 0 = unlimited
    smtp_max_attempts: int = 0  # 0 = no cap: retries are bounded by time ([send] queue_lifetime_hours)
    # [send]
    send_grace_seconds: float = 20.0  # on SIGTERM, how long messages already on the wire may finish
    send_max_retry_minutes: float = 60.0  # the longest wait between two tries of a deferred message
    send_queue_lifetime_hours: float = 72.0  # give up this long after planning (a newer digest supersedes sooner)
    send_fsync: bool = True  # journal lines on disk before DATA / before the store records them; off: benchmarks only
    # [dkim]
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: str = ""
    # where this came from, for error messages
    source: str = field(default="defaults", compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def transport(self) -> str:
        """``smtp`` when an SMTP host is set, else ``maildir``."""
        return "smtp" if self.smtp_host else "maildir"

    def require_secret(self) -> str:
        if not self.secret_key:
            raise ConfigError(
                f"no secret_key in {self.source}: run `syndicate init` or set SYNDICATE_SECRET_KEY"
            )
        return self.secret_key.get()

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "source"}
_UNPREFIXED_SECTION = "site"
_CHOICES = {"smtp_security": ("none", "starttls", "tls")}


def _coerce(name: str, raw: object, where: str) -> object:
    """Turn a TOML or env value into the field's type, or raise ConfigError."""
    kind = str(_FIELDS[name].type)
    try:
        if kind == "Secret":
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return Secret(raw)
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(str(raw))
        if kind == "float":
            return float(str(raw))
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return text in ("true", "1", "yes")
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        value = raw
    except ValueError as exc:
        raise ConfigError(f"{where}: {name!r} is {raw!r}: {exc}") from None
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{where}: {name!r} is {value!r}; choose one of {', '.join(_CHOICES[name])}")
    return value


def _flatten(doc: Mapping[str, object], path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for section, body in doc.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: top-level key {section!r} must be inside a [section] such as [site]")
        for key, value in body.items():
            name = key if section == _UNPREFIXED_SECTION else f"{section}_{key}"
            if name not in _FIELDS:
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]")
            out[name] = value
    return out


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Return the config file path and whether the user named it explicitly."""
    if explicit:
        return Path(explicit), True
    if env.get("SYNDICATE_CONFIG"):
        return Path(env["SYNDICATE_CONFIG"]), True
    return Path(DEFAULT_CONFIG), False


def load_settings(
    config: str | None = None,
    *,
    db: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings: defaults, then the TOML file, then ``SYNDICATE_*`` env.

    Example:
        >>> load_settings(env={"SYNDICATE_TITLE": "Tin tức"}).title
        'Tin tức'
    """
    env = os.environ if env is None else env
    path, explicit = config_path(config, env)
    values: dict[str, object] = {}
    source = "defaults"
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for name, raw in _flatten(doc, path).items():
            values[name] = _coerce(name, raw, str(path))
        source = str(path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist (run `syndicate init` to create it)")
    for name in _FIELDS:
        key = f"SYNDICATE_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key], f"environment variable {key}")
    if db:
        values["db"] = db
    settings = Settings(**values, source=source)  # type: ignore[arg-type]
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: 'timezone' is {settings.timezone!r}, not an IANA time zone such as 'Asia/Ho_Chi_Minh'") from None
    if not settings.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: 'base_url' is {settings.base_url!r}; it must start with http:// or https://")
    return settings


CONFIG_TEMPLATE = """\
# syndicate configuration. Every key may also be set by environment variable:
# [smtp] host is SYNDICATE_SMTP_HOST, [site] title is SYNDICATE_TITLE.

[site]
title = "syndicate"
subtitle = "News and digests"
# Absolute URL the feeds, emails and pages link to.
base_url = "http://127.0.0.1:8080"
language = "vi"
timezone = "Asia/Ho_Chi_Minh"
# Signs confirm/unsubscribe links. Keep it secret; changing it breaks old links.
secret_key = "{secret}"

[feeds]
# items = 50
# out = "site"
# hub_url = "https://pubsubhubbub.appspot.com/"

[mail]
sender_name = "syndicate"
sender_address = "news@localhost"
# maildir = "maildir"          # used when no [smtp] host is set
# return_path_domain = ""      # VERP bounces go to bounce+<id>@this domain
# templates_dir = ""           # your own copies of templates/email/*

[smtp]
# host = "smtp.example.org"
# port = 587
# security = "starttls"        # none | starttls | tls
# ca_file = ""                 # PEM CA bundle for a relay with a private certificate
# username = ""
# password = ""
# pool_size = 4
# rate = 0                     # messages per second, 0 = unlimited

[send]
# grace_seconds = 20           # on SIGTERM, time for messages on the wire to finish
# max_retry_minutes = 60       # longest wait between two tries of a deferred message
# queue_lifetime_hours = 72    # then a deferred message fails (the next period's digest supersedes it sooner)

[dkim]
# domain = "example.org"
# selector = "syndicate"
# key_file = "dkim.pem"
"""


def write_default_config(path: Path) -> bool:
    """Create a commented config with a fresh secret key; False if it exists."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG_TEMPLATE.format(secret=secrets.token_urlsafe(32)), encoding="utf-8")
    return True

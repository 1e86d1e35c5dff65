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
MIN_SECRET_BYTES = 32  # HMAC-SHA256 keys shorter than its block of entropy make links guessable offline
PRIVATE_FILE_MODE = 0o600  # the config holds secret_key; the database holds every address


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
class DkimKey:
    """One DKIM key: the domain it signs for (``d=``), its selector (``s=``) and its private key file.

    ``where`` names it in error messages: ``[dkim]`` for the single key, or
    ``[[dkim.keys]] 2`` for the second entry of the list.
    """

    domain: str
    selector: str
    key_file: str
    where: str = field(default="[dkim]", compare=False)


@dataclass(frozen=True)
class Settings:
    """Every setting syndicate reads. Field names are ``<section>_<key>``."""

    # [site]
    title: str = "syndicate"
    subtitle: str = "News and digests"
    base_url: str = "http://127.0.0.1:8080"
    language: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"
    icon: str = ""  # a square icon (favicon) URL for feeds: Atom icon, JSON favicon, RSS image if no logo
    logo: str = ""  # a wider logo URL for feeds: RSS image, Atom logo, JSON icon
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    db: str = DEFAULT_DB
    # [feeds]
    feeds_items: int = 50
    feeds_out: str = "site"
    feeds_hub_url: str = ""
    feeds_hub_timeout: float = 5.0  # seconds for one round of WebSub pings (every changed feed at once)
    feeds_ttl: int = 60
    # [mail]
    mail_sender_name: str = "syndicate"
    mail_sender_address: str = "news@localhost"
    mail_return_path_domain: str = ""
    mail_feedback_id: str = ""
    mail_postal_address: str = ""  # CAN-SPAM: a postal address in every bulk email
    mail_subject: str = ""  # digest subject: {list} {lead} {date} {count}; "" = the language's in strings.toml
    mail_logo_url: str = ""  # masthead image of every email: an absolute URL, or a path under base_url
    mail_logo_width: int = 200  # its width in CSS pixels (Outlook needs it; phones shrink it to fit)
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
    send_loop: str = "auto"  # the drain's event loop: auto (uvloop when installed) | uvloop | asyncio
    send_fsync: bool = True  # journal lines on disk before DATA / before the store records them; off: benchmarks only
    # [serve]: `syndicate serve` (its options override these)
    serve_access_log: str = "clf"  # clf (Common Log Format) | json | off
    serve_proxy_headers: bool = False  # believe X-Forwarded-For/-Proto, but only from forwarded_allow_ips
    serve_forwarded_allow_ips: str = "127.0.0.1"  # comma-separated addresses or networks of trusted proxies
    # [dkim]
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: str = ""
    #: more keys, ``[[dkim.keys]]`` tables: a second algorithm for the same
    #: domain (RSA and Ed25519, RFC 8463) or a key for a list's own From domain
    dkim_keys: tuple[DkimKey, ...] = ()
    # [ingest] and [fetch]: article imports and the safe fetcher (owned by ingest/ and fetcher.py)
    ingest_max_article_mb: float = 2.0  # HTML of one article; a bigger one is refused
    fetch_timeout: float = 30.0  # TOTAL seconds per request: connect, redirects and the whole body
    fetch_max_mb: float = 20.0  # body size cap (after gzip is undone)
    fetch_max_redirects: int = 5
    fetch_redirects: str = "same-host"  # same-host (scheme, host and port) | any
    fetch_allow_private: bool = False  # loopback, private and link-local addresses (tests set it)
    fetch_user_agent: str = ""  # default: syndicate/<version> (+<base_url>)
    # [webhooks]: delivery of events (owned by webhooks.py); addresses follow [fetch] allow_private
    webhooks_timeout: float = 10.0  # total seconds per POST
    webhooks_concurrency: int = 4  # POSTs at once (one endpoint's events go one after another)
    webhooks_retry_base_seconds: float = 30.0  # first wait after a failure; doubles each time
    webhooks_max_retry_minutes: float = 60.0  # the longest wait between two tries
    webhooks_lifetime_hours: float = 72.0  # give up on an event this long after it happened
    webhooks_serve_interval: float = 5.0  # `syndicate serve` runs a delivery pass this often; 0 = never
    webhooks_keep_days: float = 30.0  # finished events and the attempts log are forgotten after this
    # [api]: the admin HTTP API under /api/v1 (owned by syndicate/api/)
    api_rate: float = 10.0  # requests per second per token, sustained; 0 = unlimited
    api_burst: int = 60  # requests a token may make at once before the rate applies
    api_max_body_kb: int = 4096  # a bigger request body gets 413 (an article's HTML may be [ingest] max_article_mb)
    api_send_at_once: bool = True  # send API signups' confirmation emails from serve at once; false: `send` does
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

    def dkim_key_configs(self) -> tuple[DkimKey, ...]:
        """Every configured DKIM key: ``[dkim]`` first (when its key_file is set), then ``[[dkim.keys]]``."""
        first = (DkimKey(self.dkim_domain, self.dkim_selector, self.dkim_key_file),) if self.dkim_key_file else ()
        return first + self.dkim_keys

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "source"}
_UNPREFIXED_SECTION = "site"
_CHOICES = {"smtp_security": ("none", "starttls", "tls"), "fetch_redirects": ("same-host", "any"),
            "serve_access_log": ("clf", "json", "off"), "send_loop": ("auto", "uvloop", "asyncio")}
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _coerce(name: str, raw: object, where: str) -> object:
    """Turn a TOML or env value into the field's type, or raise ConfigError."""
    kind = str(_FIELDS[name].type)
    if name == "dkim_keys":
        return _dkim_keys(raw, where)
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
            if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
                return _BOOLS[raw.strip().lower()]
            raise ValueError("expected true or false")
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        value = raw
    except ValueError as exc:
        raise ConfigError(f"{where}: {name!r} is {raw!r}: {exc}") from None
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{where}: {name!r} is {value!r}; choose one of {', '.join(_CHOICES[name])}")
    return value


_DKIM_KEY_FIELDS = ("domain", "selector", "key_file")


def _dkim_keys(raw: object, where: str) -> tuple[DkimKey, ...]:
    """``[[dkim.keys]]`` tables (or, from the environment, the same as a TOML inline array)."""
    if isinstance(raw, str):
        try:
            raw = tomllib.loads("keys = " + raw)["keys"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: 'dkim_keys' is not a TOML array of tables such as "
                              f"[{{domain = \"example.org\", selector = \"s1\", key_file = \"dkim.pem\"}}]: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: [dkim] keys must be [[dkim.keys]] tables, each with domain, selector and key_file")
    keys: list[DkimKey] = []
    for i, entry in enumerate(raw, 1):
        label = f"[[dkim.keys]] {i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {label} must be a table with domain, selector and key_file")
        unknown = sorted(set(entry) - set(_DKIM_KEY_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: {label}: unknown key {unknown[0]!r} (expected domain, selector and key_file)")
        values = []
        for key in _DKIM_KEY_FIELDS:
            value = entry.get(key, "")
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {label}: {key!r} must be a non-empty string")
            values.append(value.strip())
        keys.append(DkimKey(values[0], values[1], values[2], where=label))
    return tuple(keys)


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
    origins: dict[str, str] = {}  # where each value was read, for error messages
    source = "defaults"
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for name, raw in _flatten(doc, path).items():
            values[name] = _coerce(name, raw, str(path))
            origins[name] = str(path)
        source = str(path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist (run `syndicate init` to create it)")
    for name in _FIELDS:
        key = f"SYNDICATE_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key], f"environment variable {key}")
            origins[name] = f"environment variable {key}"
    if db:
        values["db"] = db
    settings = Settings(**values, source=source)  # type: ignore[arg-type]
    _check_secret(settings.secret_key, origins.get("secret_key", source))
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: 'timezone' is {settings.timezone!r}, not an IANA time zone such as 'Asia/Ho_Chi_Minh'") from None
    if not settings.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: 'base_url' is {settings.base_url!r}; it must start with http:// or https://")
    _check_dkim_keys(settings, origins.get("dkim_keys", source))
    return settings


def _check_dkim_keys(settings: Settings, where: str) -> None:
    """Two keys with one domain and selector would publish two records at one DNS name."""
    seen: dict[tuple[str, str], str] = {}
    for key in settings.dkim_key_configs():
        name = (key.domain.lower().rstrip("."), key.selector.lower())
        if name in seen and key.domain and key.selector:
            raise ConfigError(f"{where}: {key.where} uses selector {key.selector!r} for {key.domain} like {seen[name]}: "
                              "each key needs its own selector")
        seen[name] = key.where


def _check_secret(secret: Secret, where: str) -> None:
    """Refuse a set but short secret_key (it signs every link); an empty one is caught where it is needed."""
    size = len(secret.get().encode("utf-8"))
    if 0 < size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where}: 'secret_key' is {size} bytes long; it must be at least {MIN_SECRET_BYTES} bytes. "
            "Make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` "
            "(`syndicate init` writes one into a new config; a new key makes the links already emailed invalid)"
        )


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
# hub_timeout = 5              # seconds a publish waits for the hub's answers (a slow hub is a warning)

[mail]
sender_name = "syndicate"
sender_address = "news@localhost"
# maildir = "maildir"          # used when no [smtp] host is set
# return_path_domain = ""      # VERP bounces go to bounce+<id>@this domain
# postal_address = ""          # shown in every email's footer (CAN-SPAM requires one)
# subject = "{{list}}: {{lead}}"   # digest subject; {{list}} {{lead}} (first headline) {{date}} {{count}}
# logo_url = ""                # masthead image, e.g. "https://news.example.org/logo.png"
# logo_width = 200             # the logo's width in pixels
# feedback_id = "syndicate"    # Gmail's Feedback-ID header, <list>:<kind>:<this>, for Postmaster Tools
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

[ingest]
# max_article_mb = 2           # one article's HTML; a bigger one is refused

[fetch]
# timeout = 30                 # total seconds per URL: connect, redirects and body
# max_mb = 20                  # body size cap
# max_redirects = 5
# redirects = "same-host"      # same-host | any
# allow_private = false        # fetch from loopback/private/link-local addresses
# user_agent = ""              # default: syndicate/<version> (+base_url)

[webhooks]
# timeout = 10                 # total seconds per POST
# concurrency = 4              # POSTs at once; one endpoint's events go one after another
# retry_base_seconds = 30      # first wait after a failed POST, doubling each time
# max_retry_minutes = 60       # longest wait between two tries
# lifetime_hours = 72          # then an event that never got a 2xx is given up
# serve_interval = 5           # seconds between delivery passes inside `syndicate serve` (0 = off: cron only)
# keep_days = 30               # delivered events and the attempts log are kept this long

[api]
# rate = 10                    # requests per second per token (0 = unlimited); over it: 429 with Retry-After
# burst = 60                   # requests a token may make at once
# max_body_kb = 4096           # a bigger request body gets 413
# send_at_once = true          # confirmation emails of API signups leave at once; false: the next `syndicate send`

[send]
# grace_seconds = 20           # on SIGTERM, time for messages on the wire to finish
# max_retry_minutes = 60       # longest wait between two tries of a deferred message
# queue_lifetime_hours = 72    # then a deferred message fails (the next period's digest supersedes it sooner)
# loop = "auto"                # event loop of the drain: auto (uvloop when installed) | uvloop | asyncio

[dkim]
# domain = "example.org"
# selector = "syndicate"
# key_file = "dkim.pem"
# More keys, each signing too: Ed25519 beside RSA (RFC 8463), or a list's own From domain.
# `syndicate dkim keygen --type ed25519` adds one.
# [[dkim.keys]]
# domain = "example.org"
# selector = "syndicate-ed25519"
# key_file = "dkim-ed25519.pem"
"""


def write_default_config(path: Path) -> bool:
    """Create a commented config with a fresh secret key, readable by its owner only; False if it exists.

    The file is created 0600 in one step (never world-readable, not even for a moment).
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = CONFIG_TEMPLATE.format(secret=secrets.token_urlsafe(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return True


def is_private(path: Path) -> bool:
    """True when no one but the owner may read or write ``path`` (or it does not exist)."""
    try:
        return path.stat().st_mode & 0o077 == 0
    except FileNotFoundError:
        return True


def add_config_table(path: Path, name: str, values: Mapping[str, str]) -> None:
    """Append a ``[[name]]`` table with ``key = "value"`` lines to the TOML file at ``path``.

    Rewritten atomically with its mode kept, and only when the result parses.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "s.toml"
        >>> _ = p.write_text('[dkim]\\nselector = "s1"\\n')
        >>> add_config_table(p, "dkim.keys", {"domain": "example.org", "selector": "s2", "key_file": "k.pem"})
        >>> print(p.read_text(), end="")
        [dkim]
        selector = "s1"
        <BLANKLINE>
        [[dkim.keys]]
        domain = "example.org"
        selector = "s2"
        key_file = "k.pem"
    """
    import json

    text = path.read_text(encoding="utf-8").rstrip("\n")
    lines = [text, "", f"[[{name}]]"] if text else [f"[[{name}]]"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]
    _write_toml(path, "\n".join(lines) + "\n")


def _write_toml(path: Path, out: str) -> None:
    tomllib.loads(out)  # never write a file that no longer parses
    tmp = path.with_name(path.name + ".tmp")
    mode = path.stat().st_mode & 0o777
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, out.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def set_config_keys(path: Path, section: str, values: Mapping[str, str]) -> None:
    """Set ``key = "value"`` lines in ``[section]`` of the TOML file at ``path``.

    A commented-out ``# key = ...`` line is replaced in place, a missing key is
    added at the end of its section, a missing section at the end of the file.
    The file is rewritten atomically with its mode kept; comments stay.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "s.toml"
        >>> _ = p.write_text('[dkim]\\n# selector = "x"\\n')
        >>> set_config_keys(p, "dkim", {"selector": "s1", "domain": "example.org"})
        >>> print(p.read_text(), end="")
        [dkim]
        selector = "s1"
        domain = "example.org"
    """
    import json
    import re

    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")
    start = next((i for i, ln in enumerate(lines) if (m := header.match(ln)) and m.group(1).strip() == section), None)
    if start is None:
        lines += ["", f"[{section}]"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for key, value in values.items():
        line = f"{key} = {json.dumps(value, ensure_ascii=False)}"
        pattern = re.compile(rf"^\s*#?\s*{re.escape(key)}\s*=")
        hit = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if hit is not None:
            lines[hit] = line
        else:
            insert = end
            while insert > start + 1 and not lines[insert - 1].strip():
                insert -= 1
            lines.insert(insert, line)
            end += 1
    _write_toml(path, "\n".join(lines) + "\n")

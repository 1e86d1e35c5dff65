"""``syndicate check``: what stands between this installation and a real domain.

:func:`run_checks` looks at the settings, the files they name and the lists
in the store, and returns one :class:`Finding` per problem, each with the fix.
An ``error`` means mail would go out wrong (links to localhost, a DKIM key
that cannot sign, a From domain DKIM does not align with); a ``warning`` is
worth fixing before bulk sending. It reads and never writes.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .config import MIN_SECRET_BYTES, Settings
from .errors import ConfigError, SyndicateError
from .mailer.dkim import aligned
from .models import NewsList

__all__ = ["Finding", "aligned", "run_checks", "MIN_SECRET", "MIN_RSA_BITS"]

MIN_SECRET = MIN_SECRET_BYTES
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must reject smaller keys
GOOD_RSA_BITS = 2048


@dataclass(frozen=True)
class Finding:
    """One thing ``check`` found: how bad, a stable code, what is wrong, how to fix it."""

    level: str  # "error" | "warning"
    code: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.level}: {self.message} (fix: {self.fix})"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _is_local_host(host: str) -> bool:
    """Example:
    >>> _is_local_host("127.0.0.1"), _is_local_host("localhost"), _is_local_host("news.example.org")
    (True, True, False)
    """
    host = host.strip("[]").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _mode_findings(path: Path, what: str) -> Iterable[Finding]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        yield Finding("warning", "file-mode", f"{what} {path} is mode {mode:04o}: others can read it",
                      f"chmod 600 {path}")


def _url_findings(settings: Settings, serve_port: int | None) -> Iterable[Finding]:
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    if _is_local_host(host):
        yield Finding("error", "base-url-local",
                      f"base_url is {settings.base_url}: every email and feed links to a local address no reader can open",
                      "set [site] base_url to the public https:// address, e.g. https://news.example.org")
    elif parts.scheme != "https":
        yield Finding("warning", "base-url-http", f"base_url is {settings.base_url}: links and unsubscribe go over plain http",
                      "serve the site over https and set base_url to https://...")
    if serve_port is not None and _is_local_host(host):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if port != serve_port:
            yield Finding("error", "serve-port",
                          f"serve listens on port {serve_port} but base_url {settings.base_url} points at port {port}",
                          f"run `syndicate serve --port {port}` or change base_url")


def _secret_findings(settings: Settings) -> Iterable[Finding]:
    if len(settings.secret_key.get().encode("utf-8")) < MIN_SECRET:
        yield Finding("error", "secret-short", f"secret_key is shorter than {MIN_SECRET} bytes: links could be forged",
                      "set [site] secret_key to the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def _dkim_findings(settings: Settings, lists: list[NewsList]) -> Iterable[Finding]:
    """Each configured key (present, readable, long enough, private), then each From domain against its keys."""
    from .mailer.dkim import DkimKeyring, DkimSigner, load_key
    from .mailer.dkimkeys import key_bits

    configs = settings.dkim_key_configs()
    if not configs:
        yield Finding("error" if settings.smtp_host else "warning", "dkim-missing",
                      "no DKIM key: Gmail and Yahoo reject or junk unsigned bulk mail",
                      "run `syndicate dkim keygen`, then publish what `syndicate dkim dns` prints")
        return
    usable: list[DkimSigner] = []
    for config in configs:
        path = Path(config.key_file)
        try:
            key = load_key(path.read_bytes(), f"{config.where} key_file {path}")
        except OSError as exc:
            yield Finding("error", "dkim-unreadable", f"{config.where} key_file {path}: {exc.strerror}",
                          "run `syndicate dkim keygen` or point key_file at the key")
            continue
        except ConfigError as exc:
            yield Finding("error", "dkim-unreadable", str(exc), "run `syndicate dkim keygen --force` to make a new key")
            continue
        bits = key_bits(key)
        if bits == 256:  # Ed25519: fixed size, always fine
            pass
        elif bits < MIN_RSA_BITS:
            yield Finding("error", "dkim-short", f"DKIM key {path} is RSA-{bits}: verifiers ignore keys under {MIN_RSA_BITS} bits",
                          "run `syndicate dkim keygen --force` (RSA-2048)")
        elif bits < GOOD_RSA_BITS:
            yield Finding("warning", "dkim-short", f"DKIM key {path} is RSA-{bits}; 2048 bits is the norm",
                          "run `syndicate dkim keygen --force` (RSA-2048)")
        yield from _mode_findings(path, "DKIM key")
        if not config.domain or not config.selector:
            yield Finding("error", "dkim-incomplete", f"{config.where} key_file is set but domain or selector is not",
                          f"set {config.where} domain and selector (syndicate dkim keygen writes them)")
            continue
        usable.append(DkimSigner(config.domain, config.selector, key))
    if not usable:
        return
    ring = DkimKeyring(usable)
    senders = {("", settings.mail_sender_address)}
    senders |= {(nl.slug, nl.sender_address) for nl in lists if nl.sender_address}
    for slug, address in sorted(senders):
        domain = _domain(address)
        try:
            domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
        except UnicodeError:
            pass  # not a usable address: the sender checks say so
        signers = ring.signers_for(domain)
        if not any(aligned(domain, s.domain) for s in signers):
            who = f"list {slug!r} sends from" if slug else "[mail] sender_address is"
            yield Finding("error", "dkim-alignment",
                          f"{who} {address} but DKIM signs d={signers[0].domain}: DMARC alignment fails",
                          f"add a key for the From domain (`syndicate dkim keygen --domain {domain}`, then "
                          f"`syndicate dkim dns`) or send from an address at {signers[0].domain}")


def _mail_findings(settings: Settings) -> Iterable[Finding]:
    sender = settings.mail_sender_address
    if _is_local_host(_domain(sender)):
        yield Finding("error", "sender-local", f"[mail] sender_address is {sender}: no one can reply to it and receivers reject it",
                      "set [mail] sender_address to an address at your domain, e.g. news@example.org")
    if not settings.mail_postal_address.strip():
        yield Finding("warning", "postal-address", "no postal address: CAN-SPAM requires one in every bulk email",
                      "set [mail] postal_address, e.g. \"12 Tran Phu, Hai Phong, Viet Nam\"")
    if not settings.mail_return_path_domain:
        yield Finding("warning", "return-path", "no return-path domain: bounces go to the sender address and are not matched",
                      "set [mail] return_path_domain; `syndicate bounces process` then matches each bounce to its delivery")
    if settings.smtp_host and settings.smtp_security == "none" and not _is_local_host(settings.smtp_host):
        yield Finding("warning", "smtp-plain", f"SMTP to {settings.smtp_host} is not encrypted",
                      "set [smtp] security = \"starttls\" (port 587) or \"tls\" (port 465)")


def _template_findings(settings: Settings, lists: list[NewsList]) -> Iterable[Finding]:
    import jinja2

    from .digest import render_notice
    from .render import check_subject, load_strings, make_environment

    env = make_environment(settings)
    try:
        catalogue = load_strings(env, "email/strings.toml")
    except SyndicateError as exc:
        yield Finding("error", "templates", str(exc), "fix the TOML in your templates directory")
        return
    for name in sorted(n for n in env.list_templates() if n.startswith(("email/", "web/")) and n.endswith((".html", ".txt"))):
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            yield Finding("error", "templates", f"template {name} does not compile: {exc}", "fix the template")
    for nl in lists:
        lang = (nl.language or settings.language or "en").split("-")[0].lower()
        if lang not in catalogue:
            yield Finding("warning", "language", f"list {nl.slug!r} is in {lang!r} but email/strings.toml has no [{lang}] table: it gets English",
                          f"copy the [en] table of templates/email/strings.toml to [{lang}] and translate it")
        words = catalogue.get(lang) or catalogue.get("en") or {}
        template, where = ((settings.mail_subject, f"{settings.source}: [mail] subject") if settings.mail_subject
                           else (str(words.get("subject") or "{list}: {lead}"), f"email/strings.toml [{lang}] subject"))
        try:
            check_subject(template, where)
        except SyndicateError as exc:
            yield Finding("error", "subject", f"list {nl.slug!r}: {exc}",
                          "name only {list}, {lead}, {date} and {count} in the subject template")
        for kind in ("confirm", "welcome"):
            try:
                render_notice(settings, env, kind, nl, "Test", settings.base_url + "/confirm/x", settings.base_url + "/unsubscribe/x")
            except (jinja2.TemplateError, KeyError, SyndicateError) as exc:
                yield Finding("error", "templates", f"the {kind} email for list {nl.slug!r} does not render: {exc!r}",
                              "fix the template or the strings for that language")


def run_checks(settings: Settings, lists: list[NewsList], *, config_file: Path | None = None,
               db_file: Path | None = None, serve_port: int | None = None) -> list[Finding]:
    """Every finding for these settings and lists, errors first.

    Example:
        >>> from syndicate.config import Settings, Secret
        >>> codes = [f.code for f in run_checks(Settings(secret_key=Secret("x" * 40)), [])]
        >>> "base-url-local" in codes and "sender-local" in codes and "dkim-missing" in codes
        True
    """
    found: list[Finding] = []
    found += _url_findings(settings, serve_port)
    found += _secret_findings(settings)
    found += _mail_findings(settings)
    found += _dkim_findings(settings, lists)
    if config_file is not None:
        found += _mode_findings(config_file, "config file (it holds secret_key)")
    if db_file is not None:
        found += _mode_findings(db_file, "database (it holds addresses)")
    found += _template_findings(settings, lists)
    return sorted(found, key=lambda f: f.level != "error")

"""The one Jinja2 environment: autoescape, filters, locale-aware dates.

Templates are looked up first in the admin's directory (``[mail]
templates_dir``), then in the project's ``templates/``. Email templates live
under ``email/``, web pages under ``web/``.
"""

from __future__ import annotations

import string
import tomllib
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import babel.dates
import babel.numbers
import jinja2
from babel import Locale, UnknownLocaleError

from .config import PACKAGE_ROOT, Settings
from .errors import ConfigError

# Today's Vietnamese and English dates, kept as Babel patterns: Babel's own
# short Vietnamese date has a two-digit year (24/11/26) and a bare "en" means
# US order (November 24, 2026). Every other locale gets CLDR's long and full
# forms: "24 novembre 2026", "2026年11月24日火曜日".
_KEPT_PATTERNS = {"vi": ("dd/MM/y", "EEEE, dd/MM/y"), "en": ("d MMMM y", "EEEE, d MMMM y")}


@lru_cache(maxsize=64)
def babel_locale(language: str) -> Locale:
    """The Babel locale for a list's language (``vi``, ``vi-VN``, ``pt_BR``); English when unknown.

    Example:
        >>> str(babel_locale("pt-BR")), str(babel_locale("klingon")), str(babel_locale(""))
        ('pt_BR', 'en', 'en')
    """
    try:
        return Locale.parse((language or "").strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en")


def _patterns(locale: Locale) -> tuple[str, str]:
    if locale.language == "vi":
        return _KEPT_PATTERNS["vi"]
    if str(locale) == "en":
        return _KEPT_PATTERNS["en"]
    return locale.date_formats["long"].pattern, locale.date_formats["full"].pattern


def format_date(value: date | datetime, language: str = "vi", with_weekday: bool = False) -> str:
    """A date as a reader of ``language`` writes it (Babel, any CLDR locale).

    Example:
        >>> from datetime import datetime
        >>> format_date(datetime(2026, 11, 24), "vi", with_weekday=True)
        'Thứ Ba, 24/11/2026'
        >>> format_date(datetime(2026, 11, 24), "en"), format_date(datetime(2026, 11, 24), "en-US")
        ('24 November 2026', 'November 24, 2026')
        >>> format_date(datetime(2026, 12, 2), "fr", with_weekday=True), format_date(datetime(2026, 12, 2), "ja")
        ('mercredi 2 décembre 2026', '2026年12月2日')
    """
    locale = babel_locale(language)
    day = value.date() if isinstance(value, datetime) else value
    plain, full = _patterns(locale)
    return babel.dates.format_date(day, full if with_weekday else plain, locale=locale)


def weekday_name(weekday: int, language: str = "vi") -> str:
    """A weekday (0 = Monday) in ``language``, as it reads inside a sentence.

    Example:
        >>> weekday_name(0, "vi"), weekday_name(6, "en"), weekday_name(2, "fr"), weekday_name(4, "ja")
        ('Thứ Hai', 'Sunday', 'mercredi', '金曜日')
    """
    return str(babel.dates.get_day_names("wide", "format", babel_locale(language))[weekday % 7])


def text_direction(language: str) -> str:
    """``rtl`` for a right-to-left language (Arabic, Hebrew, Persian), else ``ltr``: the emails' ``dir``.

    Example:
        >>> text_direction("ar"), text_direction("he-IL"), text_direction("vi")
        ('rtl', 'rtl', 'ltr')
    """
    return "rtl" if babel_locale(language).character_order == "right-to-left" else "ltr"


def format_number(value: int | float, language: str = "vi") -> str:
    """Group thousands the local way (Babel).

    Example:
        >>> format_number(1234567, "vi"), format_number(1234567, "en"), format_number(1234567, "fr")
        ('1.234.567', '1,234,567', '1\u202f234\u202f567')
    """
    return str(babel.numbers.format_decimal(value, locale=babel_locale(language)))


#: What a digest subject template may name.
SUBJECT_FIELDS = ("list", "lead", "date", "count")


def check_subject(template: str, where: str) -> None:
    """Raise ConfigError unless ``template`` names only :data:`SUBJECT_FIELDS`.

    Example:
        >>> check_subject("{list}: {lead}", "[mail] subject")
        >>> check_subject("{list}: {headline}", "syndicate.toml [mail] subject")
        Traceback (most recent call last):
        ...
        syndicate.errors.ConfigError: syndicate.toml [mail] subject '{list}: {headline}': ...
    """
    fields = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
    try:
        named = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where} {template!r}: {exc} (write {{{{ and }}}} for a literal brace)") from None
    for name in named:
        if name not in SUBJECT_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            raise ConfigError(f"{where} {template!r}: {shown} is not a placeholder; use {fields}")


def digest_subject(settings: Settings, words: dict[str, Any], *, list: str, lead: str, date: str,
                   count: str) -> str:
    """A digest's subject: ``[mail] subject`` if set, else the language's ``subject`` in
    ``email/strings.toml`` (so a list keeps its own language), on one line.

    Example:
        >>> digest_subject(Settings(), {"subject": "{list}: {lead}"}, list="Tin sáng",
        ...                lead="Hải Phòng  khởi nghiệp", date="Thứ Ba, 24/11/2026", count="3")
        'Tin sáng: Hải Phòng khởi nghiệp'
        >>> digest_subject(Settings(mail_subject="{list} · {date}"), {}, list="S", lead="x", date="24/11", count="1")
        'S · 24/11'
    """
    if settings.mail_subject:
        template, where = settings.mail_subject, f"{settings.source}: [mail] subject"
    else:
        template, where = str(words.get("subject") or "{list}: {lead}"), "templates email/strings.toml: subject"
    check_subject(template, where)
    return " ".join(template.format(list=list, lead=lead, date=date, count=count).split())


def logo_url(settings: Settings) -> str:
    """``[mail] logo_url`` as an absolute URL (a path is taken under ``base_url``); "" when unset.

    Example:
        >>> logo_url(Settings(base_url="https://news.example.org/", mail_logo_url="/static/logo.png"))
        'https://news.example.org/static/logo.png'
        >>> logo_url(Settings(mail_logo_url="https://cdn.example.org/l.png")), logo_url(Settings())
        ('https://cdn.example.org/l.png', '')
    """
    url = settings.mail_logo_url.strip()
    if not url or url.startswith(("https://", "http://")):
        return url
    return settings.base_url.rstrip("/") + "/" + url.lstrip("/")


def _template_file(env: jinja2.Environment, name: str) -> Path | None:
    """Where a FileSystemLoader would find ``name`` (the first search path that has it), without reading it."""
    loader = env.loader
    if not isinstance(loader, jinja2.FileSystemLoader):
        return None
    for base in loader.searchpath:
        path = Path(base) / name
        if path.is_file():
            return path
    return None


# Parsed catalogues by (file, mtime, size): a message no longer parses the TOML, an admin's edit is still seen.
_STRINGS: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}


def load_strings(env: jinja2.Environment, name: str) -> dict[str, dict[str, Any]]:
    """A catalogue of words (``email/strings.toml``, ``web/strings.toml``): one
    TOML table per language, found like a template, so an admin's copy wins.

    Parsed once per (file, modification time): callers must not change what it returns."""
    path = _template_file(env, name)
    key = None
    if path is not None:
        try:
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is not None and key in _STRINGS:
            return _STRINGS[key]
    assert env.loader is not None
    source = env.loader.get_source(env, name)[0]
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"templates {name}: not valid TOML: {exc}") from None
    tables = {lang: words for lang, words in data.items() if isinstance(words, dict)}
    if not tables:
        raise ConfigError(f"templates {name}: no [language] table in it")
    if key is not None:
        if len(_STRINGS) > 32:
            _STRINGS.clear()
        _STRINGS[key] = tables
    return tables


def pick_language(catalogue: dict[str, dict[str, Any]], language: str) -> dict[str, Any]:
    """The words for ``language`` (``vi-VN`` uses ``vi``), else English, else the first.

    Example:
        >>> pick_language({"vi": {"hi": "Chào"}, "en": {"hi": "Hi"}}, "vi-VN"), pick_language({"en": {}}, "fr")
        ({'hi': 'Chào'}, {})
    """
    base = (language or "").split("-")[0].lower()
    return catalogue.get(base) or catalogue.get("en") or next(iter(catalogue.values()))


def template_dirs(settings: Settings) -> list[Path]:
    dirs = []
    if settings.mail_templates_dir:
        dirs.append(Path(settings.mail_templates_dir))
    dirs.append(Path.cwd() / "templates")
    dirs.append(PACKAGE_ROOT / "templates")
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def make_environment(settings: Settings) -> jinja2.Environment:
    """Build the environment once per process and pass it around."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(settings)]),
        autoescape=jinja2.select_autoescape(["html", "xml", "htm"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["date"] = format_date
    env.filters["number"] = format_number
    env.filters["direction"] = text_direction
    env.globals["site"] = settings
    env.globals["logo"] = logo_url(settings)
    return env

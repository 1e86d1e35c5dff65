"""The one Jinja2 environment: autoescape, filters, locale-aware dates.

Templates are looked up first in the admin's directory (``[mail]
templates_dir``), then in the project's ``templates/``. Email templates live
under ``email/``, web pages under ``web/``.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from .config import PACKAGE_ROOT, Settings
from .errors import ConfigError

WEEKDAYS = {
    "vi": ["Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"],
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}
_VI_WEEKDAYS = WEEKDAYS["vi"]
_EN_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
]
_EN_WEEKDAYS = WEEKDAYS["en"]


def format_date(value: datetime, language: str = "vi", with_weekday: bool = False) -> str:
    """A date as a reader of ``language`` writes it.

    Example:
        >>> from datetime import datetime
        >>> format_date(datetime(2026, 11, 24), "vi", with_weekday=True)
        'Thứ Ba, 24/11/2026'
        >>> format_date(datetime(2026, 11, 24), "en")
        '24 November 2026'
    """
    if language.startswith("vi"):
        text = f"{value.day:02d}/{value.month:02d}/{value.year}"
        return f"{_VI_WEEKDAYS[value.weekday()]}, {text}" if with_weekday else text
    text = f"{value.day} {_EN_MONTHS[value.month - 1]} {value.year}"
    return f"{_EN_WEEKDAYS[value.weekday()]}, {text}" if with_weekday else text


def format_number(value: int | float, language: str = "vi") -> str:
    """Group thousands the local way.

    Example:
        >>> format_number(1234567, "vi"), format_number(1234567, "en")
        ('1.234.567', '1,234,567')
    """
    text = f"{value:,}"
    return text.replace(",", ".") if language.startswith("vi") else text


def load_strings(env: jinja2.Environment, name: str) -> dict[str, dict[str, Any]]:
    """A catalogue of words (``email/strings.toml``, ``web/strings.toml``): one
    TOML table per language, found like a template, so an admin's copy wins."""
    assert env.loader is not None
    source = env.loader.get_source(env, name)[0]
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"templates {name}: not valid TOML: {exc}") from None
    tables = {lang: words for lang, words in data.items() if isinstance(words, dict)}
    if not tables:
        raise ConfigError(f"templates {name}: no [language] table in it")
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
    env.globals["site"] = settings
    return env

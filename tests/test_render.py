"""Dates, numbers and weekdays in a list's language (Babel), and the digest subject template."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from syndicate.config import Settings
from syndicate.digest import period_label, render_notice
from syndicate.errors import ConfigError
from syndicate.models import NewsList
from syndicate.render import digest_subject, format_date, format_number, make_environment, weekday_name

DAY = datetime(2026, 12, 2, 7, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(("language", "plain", "full"), [
    # today's outputs, kept
    ("vi", "02/12/2026", "Thứ Tư, 02/12/2026"),
    ("vi-VN", "02/12/2026", "Thứ Tư, 02/12/2026"),
    ("en", "2 December 2026", "Wednesday, 2 December 2026"),
    # every other locale through CLDR, with no code for it
    ("fr", "2 décembre 2026", "mercredi 2 décembre 2026"),
    ("ja", "2026年12月2日", "2026年12月2日水曜日"),
    ("de", "2. Dezember 2026", "Mittwoch, 2. Dezember 2026"),
    ("en-US", "December 2, 2026", "Wednesday, December 2, 2026"),
    ("en-GB", "2 December 2026", "Wednesday, 2 December 2026"),
    ("pt_BR", "2 de dezembro de 2026", "quarta-feira, 2 de dezembro de 2026"),
])
def test_dates_in_the_lists_language(language: str, plain: str, full: str) -> None:
    assert format_date(DAY, language) == plain
    assert format_date(DAY, language, with_weekday=True) == full
    assert format_date(DAY.date(), language) == plain  # a date works as well as a datetime


def test_an_unknown_or_empty_language_falls_back_to_english() -> None:
    assert format_date(DAY, "klingon") == format_date(DAY, "") == "2 December 2026"
    assert format_number(1234567, "xx-YY") == "1,234,567"


@pytest.mark.parametrize(("language", "text"), [
    ("vi", "1.234.567"), ("en", "1,234,567"), ("fr", "1\u202f234\u202f567"), ("de", "1.234.567"), ("ja", "1,234,567"),
])
def test_numbers_group_thousands_the_local_way(language: str, text: str) -> None:
    assert format_number(1234567, language) == text


def test_period_label_of_a_french_list_is_french() -> None:
    # the issue: a fr list fell back to "Wednesday, 2 December 2026"
    assert period_label("2026-12-02", "fr") == "mercredi 2 décembre 2026"
    assert period_label("2026-12-02", "vi") == "Thứ Tư, 02/12/2026"


def test_weekday_names_come_from_babel() -> None:
    assert [weekday_name(d, "vi") for d in range(7)] == [
        "Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"]
    assert weekday_name(0, "en") == "Monday" and weekday_name(7, "en") == "Monday"
    assert weekday_name(3, "fr") == "jeudi" and weekday_name(6, "ja") == "日曜日"


def test_welcome_email_names_the_weekday_in_the_lists_language(settings: Settings) -> None:
    env = make_environment(settings)
    vi = render_notice(settings, env, "welcome", NewsList(slug="t", name="Tin", language="vi"), "Lan",
                       "https://x/p", "https://x/u", cadence="weekly", weekday=2, send_hour=7)
    assert "Bạn sẽ nhận bản tin vào Thứ Tư hằng tuần lúc 07:00." in vi.text
    # no French words in strings.toml: the sentence falls back to English, the weekday does not
    fr = render_notice(settings, env, "welcome", NewsList(slug="f", name="Matin", language="fr"), "",
                       "https://x/p", "https://x/u", cadence="weekly", weekday=4, send_hour=8)
    assert "every vendredi at 08:00" in fr.text


WORDS = {"subject": "{list}: {lead}"}
VALUES = dict(list="Tin sáng", lead="Hải Phòng khởi nghiệp", date="Thứ Ba, 24/11/2026", count="1.234")


def test_subject_is_the_lists_name_and_the_lead_headline_by_default() -> None:
    assert digest_subject(Settings(), WORDS, **VALUES) == "Tin sáng: Hải Phòng khởi nghiệp"
    assert digest_subject(Settings(), {}, **VALUES) == "Tin sáng: Hải Phòng khởi nghiệp"  # an old strings.toml


def test_subject_template_from_config_names_any_field() -> None:
    s = Settings(mail_subject="{list} · {date} · {count} tin · {lead}")
    assert digest_subject(s, WORDS, **VALUES) == "Tin sáng · Thứ Ba, 24/11/2026 · 1.234 tin · Hải Phòng khởi nghiệp"
    assert digest_subject(Settings(mail_subject="{{{list}}}"), WORDS, **VALUES) == "{Tin sáng}"


def test_subject_is_one_line_whatever_the_headline_holds() -> None:
    assert digest_subject(Settings(), WORDS, **{**VALUES, "lead": " Hải\r\nPhòng\t khởi  nghiệp "}) == (
        "Tin sáng: Hải Phòng khởi nghiệp")


@pytest.mark.parametrize(("template", "message"), [
    ("{list}: {headline}", "syndicate.toml: [mail] subject '{list}: {headline}': {headline} is not a placeholder; "
                           "use {list}, {lead}, {date}, {count}"),
    ("{list}: {}", "syndicate.toml: [mail] subject '{list}: {}': {} is not a placeholder; "
                   "use {list}, {lead}, {date}, {count}"),
    ("{list.name}", "syndicate.toml: [mail] subject '{list.name}': {list.name} is not a placeholder; "
                    "use {list}, {lead}, {date}, {count}"),
    ("{list}: {lead", "syndicate.toml: [mail] subject '{list}: {lead': expected '}' before end of string "
                      "(write {{ and }} for a literal brace)"),
    ("{list}} {lead}", "syndicate.toml: [mail] subject '{list}} {lead}': Single '}' encountered in format string "
                       "(write {{ and }} for a literal brace)"),
])
def test_a_bad_subject_template_is_a_clear_config_error(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        digest_subject(Settings(mail_subject=template, source="syndicate.toml"), WORDS, **VALUES)
    assert str(err.value) == message


def test_dates_before_1900_and_far_ahead_still_format() -> None:
    assert format_date(date(1899, 1, 1), "vi") == "01/01/1899"
    assert format_date(date(9999, 12, 31), "fr", with_weekday=True) == "vendredi 31 décembre 9999"

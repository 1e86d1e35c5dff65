"""A notice rendered once per frame and spliced per person is byte for byte the full render."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.config import Secret, Settings
from syndicate.models import NewsList
from syndicate.render import load_strings, make_environment
from syndicate.sender.notice_mail import NoticeBuilder
from syndicate.store import open_store

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "60"))

names = st.one_of(
    st.sampled_from(["", " ", "Nguyễn Thị Ánh", "<b>Ann</b> & co", 'Đặng "Bé" O\'Neil', "a\xa0b", "Lan  \t Anh",
                     "&amp; &#34; &lt;", "{name}", "SYNxNOTICExNAMEx7f3a"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    st.text(alphabet="ạắầẩễệịọốồổỗợụứừửữỳ<>&\"' \xa0", max_size=20),
)
urls = st.one_of(
    st.sampled_from(["https://news.example.org/confirm/abc.def", "https://x.example/a?b=1&c=\"2\"<3>'",
                     "https://x.example/\xa0&amp;"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30).map(lambda s: "https://x/" + s),
)
LISTS = [
    NewsList(slug="tin-sang", name="Tin sáng", id=1, language="vi"),
    NewsList(slug="morning", name="Morning <News> & \"Co\"", id=2, language="en", cadence="weekly", weekday=4),
]


@pytest.fixture(params=["plain", "postal-and-logo"])
def builder(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeBuilder:
    extra = {"mail_postal_address": "12 Lê Lợi & <Hà Nội>", "mail_logo_url": "/logo.png?a=1&b=2"} \
        if request.param == "postal-and-logo" else {}
    s = Settings(db=str(tmp_path / "s.db"), secret_key=Secret("test-secret-key-0123456789-abcdefghij"),
                 base_url="https://news.example.org", source="tests", **extra)  # type: ignore[arg-type]
    open_store(s.db).close()
    return NoticeBuilder(None, s)  # type: ignore[arg-type]  # content() never reads the store


@hsettings(deadline=None, max_examples=EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["confirm", "welcome"]), nl=st.sampled_from(LISTS), name=names, action=urls,
       unsub=urls, hour=st.integers(0, 23))
def test_a_spliced_notice_equals_a_fresh_full_render(builder: NoticeBuilder, kind: str, nl: NewsList, name: str,
                                                     action: str, unsub: str, hour: int) -> None:
    schedule = (nl.cadence, nl.weekday, hour)
    assert builder.content(kind, nl, name, action, unsub, schedule) == \
        builder.render(kind, nl, name, action, unsub, schedule)


def test_the_frame_is_split_and_reused_so_most_notices_skip_the_render(builder: NoticeBuilder) -> None:
    nl = LISTS[0]
    frame = builder.frame("confirm", nl, True, ("daily", 0, 7))
    assert frame.html_parts is not None and frame.text_parts is not None  # the shipped templates splice
    assert True in frame.html_attr and False in frame.html_attr  # the link is in an href and in the text
    assert builder.frame("confirm", nl, True, ("daily", 0, 7)) is frame
    assert builder.frame("confirm", nl, False, ("daily", 0, 7)) is not frame


def test_an_admin_template_that_filters_a_slot_gets_full_renders_and_edits_are_seen(tmp_path: Path) -> None:
    own = tmp_path / "tpl" / "email"
    own.mkdir(parents=True)
    (own / "confirm.txt").write_text("{{ greeting | upper }}\n{{ action_url }}\n", encoding="utf-8")
    s = Settings(db=str(tmp_path / "s.db"), secret_key=Secret("test-secret-key-0123456789-abcdefghij"),
                 base_url="https://news.example.org", source="tests", mail_templates_dir=str(tmp_path / "tpl"))
    b = NoticeBuilder(None, s)  # type: ignore[arg-type]
    nl, schedule = LISTS[0], ("daily", 0, 7)
    assert b.frame("confirm", nl, True, schedule).text_parts is None  # the probe caught the filter
    assert b.content("confirm", nl, "Ánh", "https://a/c", "https://a/u", schedule).text == "XIN CHÀO ÁNH,\nhttps://a/c\n"
    (own / "confirm.txt").write_text("Hi {{ greeting }} {{ action_url }}\n", encoding="utf-8")
    os.utime(own / "confirm.txt", ns=(1, 1))  # a different mtime even on a coarse clock
    assert b.content("confirm", nl, "Ánh", "https://a/c", "https://a/u", schedule).text == \
        "Hi Xin chào Ánh, https://a/c\n"


def test_the_strings_catalogue_is_parsed_once_per_file_version(tmp_path: Path) -> None:
    own = tmp_path / "tpl" / "email"
    own.mkdir(parents=True)
    (own / "strings.toml").write_text('[en]\nhello = "Hi,"\n', encoding="utf-8")
    env = make_environment(Settings(mail_templates_dir=str(tmp_path / "tpl")))
    first = load_strings(env, "email/strings.toml")
    assert load_strings(env, "email/strings.toml") is first
    (own / "strings.toml").write_text('[en]\nhello = "Hey there,"\n', encoding="utf-8")
    os.utime(own / "strings.toml", ns=(2, 2))
    assert load_strings(env, "email/strings.toml") == {"en": {"hello": "Hey there,"}}

"""The static article pages (syndicate/site_pages.py): a page made from its frame is Jinja's page byte for
byte, over generated articles; an admin's own template is always run by Jinja."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.config import Settings
from syndicate.feeds import feed_item
from syndicate.models import Article
from syndicate.render import make_environment
from syndicate.site_pages import PageCache, render_article

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "60"))
SETTINGS = Settings(base_url="https://news.example.org", title="Tin <Hải Phòng> & \"bạn\"", language="vi")
# Text that needs escaping, Vietnamese, the private-use characters the frame's probes are made of
TEXT = st.lists(st.sampled_from(list("aăâbđ ếỗ<>&\"'\ue000\ue0011 ") + ["Hải Phòng", "Kinh tế"]),
                max_size=8).map("".join)


@st.composite
def articles(draw: st.DrawFn) -> list[Article]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        out.append(Article(
            guid=f"g{i}", slug=f"bai-{i}", title=draw(TEXT), summary=draw(TEXT), author=draw(TEXT),
            source=draw(st.sampled_from(["", "haiphong.gov.vn", "Báo <HP>"])),
            category=draw(st.sampled_from(["", "Kinh tế", "Xã hội", "Y <tế>"])),
            language=draw(st.sampled_from(["", "vi", "en"])),
            body_html=draw(st.sampled_from(["", "<p>Nội dung &amp; <b>thêm</b></p>", "<p>\ue000 2 \ue001</p>"])),
            body_text=draw(TEXT), url=draw(st.sampled_from(["", "https://baohaiphong.vn/a/1.html"])),
            published=datetime(2026, 3, 1, 8, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 2000))),
        ))
    return out


@hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(articles())
def test_pages_from_frames_are_jinjas_pages(batch: list[Article]) -> None:
    env = make_environment(SETTINGS)
    shared = PageCache()  # what a build uses for every page: frames made on the way
    for article in batch * 3:  # by the third time round, every kind of page has its frame
        item = feed_item(article, SETTINGS)
        by_jinja = render_article(env, SETTINGS, None, item, PageCache())  # a new cache: Jinja renders
        assert render_article(env, SETTINGS, None, item, shared) == by_jinja


def test_frames_are_made_and_used(tmp_path: Path) -> None:
    env = make_environment(SETTINGS)
    cache = PageCache()
    items = [feed_item(Article(guid=f"g{i}", slug=f"bai-{i}", title=f"Bài {i}", category="Kinh tế", author="An",
                               body_html="<p>x</p>", published=datetime(2026, 3, 1, tzinfo=UTC)), SETTINGS)
             for i in range(3)]
    pages = [render_article(env, SETTINGS, None, items[0], cache)]
    assert cache.lookup(env, items[0])[1] is None  # one page of a kind (a publish of one article): no frame
    pages += [render_article(env, SETTINGS, None, item, cache) for item in items[1:]]
    key, frame = cache.lookup(env, items[0])
    assert key is not None and frame is not None  # one kind of page, one frame
    assert [frame.splice(item, "vi", cache.date(item.published, "vi")).encode() for item in items] == pages


def test_an_admins_own_article_template_is_always_run_by_jinja(tmp_path: Path) -> None:
    own = tmp_path / "templates" / "web"
    own.mkdir(parents=True)
    (own / "site-article.html").write_text("<h1>{{ item.title }}</h1>{{ item.summary | upper }}|"
                                           "{{ item.published.year }}\n", encoding="utf-8")
    settings = Settings(base_url="https://news.example.org", mail_templates_dir=str(tmp_path / "templates"))
    env = make_environment(settings)
    cache = PageCache()
    pages = [render_article(env, settings, None, feed_item(Article(
        guid=f"g{i}", slug=f"bai-{i}", title=f"Bài {i}", summary=f"tóm tắt {i}",
        published=datetime(2024 + i, 3, 1, tzinfo=UTC)), settings), cache) for i in range(3)]
    assert pages == [f"<h1>Bài {i}</h1>TÓM TẮT {i}|{2024 + i}\n".encode() for i in range(3)]
    assert cache.lookup(env, feed_item(Article(guid="x", slug="x", title="x", published=datetime(2024, 1, 1, tzinfo=UTC)),
                                       settings)) == (None, None)

"""What a digest, a confirmation and a welcome email look like, checked on the bytes we send.

The rules: fluid up to 600px (nothing fixed wider than a 390px phone without a
max-width), a bulletproof "read more" button per article (a table cell with a
background colour), a hidden preheader with filler, the logo when configured,
and WCAG AA contrast (4.5:1) for every piece of text and every link in the
light scheme and in the dark one. Contrast is computed here from the CSS the
email carries: its inline styles (light) and its ``prefers-color-scheme: dark``
rules, with the WCAG relative-luminance formula. When Chromium is installed,
the emails and the archive page are also laid out at 390px and nothing may reach past
the right edge.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from syndicate.config import PACKAGE_ROOT, Settings
from syndicate.digest import DigestRenderer, personalise, render_notice
from syndicate.models import Article, NewsList
from syndicate.render import make_environment
from syndicate.store import Store
from syndicate.store.arrival import DigestWindow
from syndicate.web.context import WebContext
from syndicate.web.pages import routes

START = datetime(2026, 11, 23, 0, tzinfo=UTC)
END = START + timedelta(days=1)
PHONE = 390
FILLER = "\u200c\u00a0"  # &zwnj;&nbsp;


# -- a small DOM and a small cascade ------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def ancestors(self) -> list[Node]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def walk(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out += c.walk()
        return out

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def describe(self) -> str:
        return self.tag + "".join("." + c for c in self.classes)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(source: str) -> Node:
    b = _Builder()
    b.feed(source)
    b.close()
    return b.root


def declarations(style: str) -> dict[str, str]:
    out = {}
    for part in style.split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


@dataclass(frozen=True)
class Rule:
    selector: list[str]  # descendant chain, e.g. [".em-footer", "a"]
    specificity: tuple[int, int]
    decls: dict[str, str]


def dark_rules(html: str) -> list[Rule]:
    """The rules inside ``@media (prefers-color-scheme: dark)`` of the email's <style>."""
    m = re.search(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{(.*?)\}\s*\}", html, re.S)
    assert m, "no dark-scheme rules in the email"
    rules = []
    for sel_text, body in re.findall(r"([^{}]+)\{([^{}]*)\}", m.group(1) + "}"):
        decls = declarations(body)
        for sel in sel_text.split(","):
            chain = sel.split()
            spec = (sum(p.count(".") for p in chain), sum(1 for p in chain if not p.startswith(".")))
            rules.append(Rule(chain, spec, decls))
    return rules


def _simple_match(node: Node, part: str) -> bool:
    if part.startswith("."):
        return part[1:] in node.classes
    return node.tag == part


def matches(node: Node, chain: list[str]) -> bool:
    if not _simple_match(node, chain[-1]):
        return False
    rest, up = chain[:-1], node.parent
    while rest and up is not None:
        if _simple_match(up, rest[-1]):
            rest = rest[:-1]
        up = up.parent
    return not rest


def computed(node: Node, rules: list[Rule] | None) -> dict[str, str]:
    """The node's own declarations: inline style, then (dark scheme) the matching !important rules."""
    style = declarations(node.attrs.get("style", ""))
    if "bgcolor" in node.attrs and "background-color" not in style:
        style["background-color"] = node.attrs["bgcolor"]
    if rules is not None:
        for rule in sorted((r for r in rules if matches(node, r.selector)), key=lambda r: r.specificity):
            for k, v in rule.decls.items():
                if v.endswith("!important"):
                    style[k] = v.removesuffix("!important").strip()
    return style


def hidden(node: Node) -> bool:
    return any(declarations(n.attrs.get("style", "")).get("display") == "none" for n in node.ancestors())


# -- WCAG ---------------------------------------------------------------------------------


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of a #rgb or #rrggbb colour."""
    h = colour.strip().lstrip("#").lower()
    assert re.fullmatch(r"[0-9a-f]{3}|[0-9a-f]{6}", h), f"write colours as hex in emails, not {colour!r}"
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_wcag_formula_matches_known_ratios() -> None:
    assert round(contrast("#000", "#fff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-below-AA grey
    assert 2.4 < contrast("#b3121f", "#1c1c1c") < 2.5  # the red on dark


def contrast_failures(html: str, scheme: str) -> list[str]:
    """Every visible text run and link whose colour is under 4.5:1 against what is behind it."""
    rules = dark_rules(html) if scheme == "dark" else None
    root = parse_html(html)
    body = next(n for n in root.walk() if n.tag == "body")
    failures = []

    def resolve(node: Node, prop: str) -> str | None:
        for n in node.ancestors():
            value = computed(n, rules).get(prop)
            if value:
                return value
            if prop == "color" and n.tag == "a":
                return None  # a link never inherits: the client's blue would show
        return None

    for node in body.walk():
        text = "".join(c for c in node.children if isinstance(c, str)).strip()
        if node.tag == "a":
            text = node.text().strip()  # a link's colour counts even when its words sit in a <strong>
        if not text or hidden(node):
            continue
        what = f"{scheme}: <{node.describe()}> {text[:40]!r}"
        fg, bg = resolve(node, "color"), resolve(node, "background-color")
        if fg is None or bg is None:
            failures.append(f"{what}: {'colour' if fg is None else 'background'} not set")
            continue
        ratio = contrast(fg, bg)
        if ratio < 4.5:
            failures.append(f"{what}: {fg} on {bg} is {ratio:.2f}:1")
    return failures


# -- the emails under test ------------------------------------------------------------


@pytest.fixture
def design(settings: Settings) -> Settings:
    return settings.with_(mail_postal_address="12 Lê Lợi, Quận 1, TP. Hồ Chí Minh",
                          mail_logo_url="/static/logo.png", mail_logo_width=480)


def make_digest(store: Store, settings: Settings, n: int = 4, language: str = "vi") -> tuple[NewsList, str, str]:
    slug = f"tin-{language}-{len(store.all_lists())}"
    nl = store.create_list(NewsList(slug=slug, name="Tin sáng Sài Gòn", language=language))
    store.upsert_articles([
        Article(guid=f"g{i}", slug=f"bai-{i}", title=f"Bài {i}: Hải Phòng khởi nghiệp sáng tạo",
                published=START + timedelta(hours=i), summary="Thành phố hỗ trợ doanh nghiệp khởi nghiệp.",
                category="Kinh tế", author="Minh Anh" if i == 1 else "",
                image="https://news.example.org/media/anh.jpg" if i == 2 else "")
        for i in range(1, n + 1)
    ])
    window = DigestWindow(0, store.digest_high_water(END), START, END)  # everything that arrived, by arrival
    r = DigestRenderer(store, settings, max_articles=3).render(nl, "2026-11-24", (), window, END)
    p = personalise(r, "Lan", "https://news.example.org/u/1", "https://news.example.org/p/1")
    return nl, p.subject, p.html


def notices(settings: Settings) -> dict[str, str]:
    env = make_environment(settings)
    nl = NewsList(slug="tin", name="Tin sáng Sài Gòn", id=1)
    return {kind: render_notice(settings, env, kind, nl, "Lan", "https://news.example.org/confirm/" + "x" * 120,
                                "https://news.example.org/u/1", cadence="weekly", weekday=2).html
            for kind in ("confirm", "welcome")}


def all_emails(store: Store, settings: Settings) -> dict[str, str]:
    return {"digest": make_digest(store, settings)[2], **notices(settings)}


# -- the rules --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_and_link_meets_wcag_aa_in_both_schemes(store: Store, design: Settings, scheme: str) -> None:
    for name, html in all_emails(store, design).items():
        assert contrast_failures(html, scheme) == [], name


def test_the_contrast_check_catches_the_old_red_on_dark() -> None:
    html = ('<html><head><style>@media (prefers-color-scheme: dark) { .c { background-color: #1c1c1c !important; } }'
            '</style></head><body style="background-color: #ffffff"><table><tr><td class="c" '
            'style="background-color: #ffffff; color: #b3121f">Tin sáng <a href="x">link</a></td></tr></table>'
            "</body></html>")
    assert contrast_failures(html, "light") == ["light: <a> 'link': colour not set"]
    assert contrast_failures(html, "dark") == [
        "dark: <td.c> 'Tin sáng': #b3121f on #1c1c1c is 2.45:1", "dark: <a> 'link': colour not set"]


def test_nothing_is_wider_than_a_phone_without_a_max_width(store: Store, design: Settings) -> None:
    for name, html in all_emails(store, design).items():
        root = parse_html(html)  # [if mso] ghost tables are comments: only Outlook on Windows reads them
        for node in root.walk():
            style = declarations(node.attrs.get("style", ""))
            widths = [node.attrs.get("width", ""), style.get("width", "").removesuffix("px")]
            fixed = [int(w) for w in widths if w.isdigit()]
            if any(w > PHONE for w in fixed):
                assert "max-width" in style and style.get("width", "").endswith("%"), (name, node.describe(), style)
        assert '<!--[if mso]><table role="presentation" width="600"' in html, name  # Outlook keeps 600px


def test_each_article_has_a_bulletproof_read_more_button(store: Store, design: Settings) -> None:
    _, _, html = make_digest(store, design)
    root = parse_html(html)
    cells = [n for n in root.walk() if n.tag == "td" and "em-button-cell" in n.classes]
    links = [next(c for c in cell.walk() if c.tag == "a") for cell in cells]
    # the digest shows 3 of 4 articles, newest first; every one gets its button
    assert [a.attrs["href"] for a in links] == [f"https://news.example.org/articles/bai-{i}/" for i in (4, 3, 2)]
    for cell, link in zip(cells, links, strict=True):
        style = declarations(cell.attrs["style"])
        assert cell.attrs["bgcolor"] == style["background-color"] == "#b3121f" and "padding" in style
        assert "padding" not in declarations(link.attrs["style"])  # Outlook drops padding on a link
        assert link.text() == "Đọc tiếp" and link.attrs["aria-label"].startswith("Đọc tiếp: Bài ")
        assert cell.parent and cell.parent.parent and cell.parent.parent.tag in ("table", "tbody")
    confirm = parse_html(notices(design)["confirm"])
    [cell] = [n for n in confirm.walk() if n.tag == "td" and "em-button-cell" in n.classes]
    assert cell.attrs["bgcolor"] == "#b3121f" and cell.text() == "Xác nhận đăng ký"


def test_preheader_is_hidden_everywhere_and_padded(store: Store, design: Settings) -> None:
    emails = all_emails(store, design)
    expected = {
        "digest": "Bài 3: Hải Phòng khởi nghiệp sáng tạo · Bài 2: Hải Phòng khởi nghiệp sáng tạo",  # the lead is the subject
        "confirm": "Vui lòng xác nhận bạn muốn nhận bản tin Tin sáng Sài Gòn.",
        "welcome": "Cảm ơn bạn đã đăng ký Tin sáng Sài Gòn. Bạn sẽ nhận bản tin vào Thứ Tư hằng tuần lúc 07:00.",
    }
    for name, html in emails.items():
        body = next(n for n in parse_html(html).walk() if n.tag == "body")
        first = next(c for c in body.children if isinstance(c, Node))  # the first thing a client reads
        style = declarations(first.attrs["style"])
        assert style["display"] == "none" and style["mso-hide"] == "all" and style["max-height"] == "0", name
        text = first.text()
        assert text.startswith(expected[name] + FILLER) and text.count(FILLER) >= 80, name


def test_a_single_article_digest_previews_its_summary(store: Store, design: Settings) -> None:
    _, subject, html = make_digest(store, design, n=1)
    assert subject == "Tin sáng Sài Gòn: Bài 1: Hải Phòng khởi nghiệp sáng tạo"
    body = next(n for n in parse_html(html).walk() if n.tag == "body")
    first = next(c for c in body.children if isinstance(c, Node))
    assert first.text().startswith("Thành phố hỗ trợ doanh nghiệp khởi nghiệp." + FILLER)


def test_the_logo_is_absolute_sized_for_outlook_and_fluid_on_phones(store: Store, design: Settings) -> None:
    for name, html in all_emails(store, design).items():
        [logo] = [n for n in parse_html(html).walk() if n.tag == "img" and "em-logo" in n.classes]
        style = declarations(logo.attrs["style"])
        assert logo.attrs["src"] == "https://news.example.org/static/logo.png", name
        assert logo.attrs["width"] == "480" and style["max-width"] == "480px" and style["width"] == "100%", name
        assert logo.attrs["alt"] == "Tin sáng Sài Gòn" and style["height"] == "auto", name


def test_no_logo_when_none_is_configured(store: Store, settings: Settings) -> None:
    for name, html in all_emails(store, settings).items():
        images = [n for n in parse_html(html).walk() if n.tag == "img"]
        assert all("em-thumb" in n.classes for n in images) and len(images) == (name == "digest"), name


def test_the_postal_address_is_in_every_footer(store: Store, design: Settings) -> None:
    for name, html in all_emails(store, design).items():
        assert "12 Lê Lợi, Quận 1, TP. Hồ Chí Minh" in html, name


def test_subject_is_the_lead_headline_and_the_template_is_configurable(store: Store, design: Settings) -> None:
    _, subject, html = make_digest(store, design)
    assert subject == "Tin sáng Sài Gòn: Bài 4: Hải Phòng khởi nghiệp sáng tạo"
    assert f"<title>{subject}</title>" in html
    _, subject, _ = make_digest(store, design.with_(mail_subject="{list} · {date} · {count} tin"), language="en")
    assert subject == "Tin sáng Sài Gòn · Tuesday, 24 November 2026 · 4 tin"


def test_a_right_to_left_list_gets_dir_rtl_and_its_own_dates(store: Store, design: Settings) -> None:
    _, _, html = make_digest(store, design, language="ar")
    assert '<html lang="ar" dir="rtl"' in html and "الثلاثاء، 24 نوفمبر 2026" in html
    _, _, html = make_digest(store, design)
    assert '<html lang="vi" dir="ltr"' in html
    assert '<html lang="vi" dir="ltr"' in notices(design)["confirm"]


def test_email_classes_never_collide_with_the_sites_stylesheet() -> None:
    """The archive page shows a digest's body inside the site's page: a shared class name
    (.wrap, .masthead, .footer were) restyles the email there."""
    css = (PACKAGE_ROOT / "templates" / "web" / "site.css").read_text(encoding="utf-8")
    site_classes = set(re.findall(r"\.([a-zA-Z][\w-]*)", re.sub(r"/\*.*?\*/", "", css, flags=re.S)))
    for path in sorted((PACKAGE_ROOT / "templates" / "email").glob("*.html")):
        used = {c for attr in re.findall(r'class="([^"]*)"', path.read_text(encoding="utf-8")) for c in attr.split()}
        assert used and not used & site_classes, (path.name, used & site_classes)


def test_no_colour_is_written_inline_in_the_templates() -> None:
    """Colours live in each template's <style> so the dark scheme can override them all."""
    for path in sorted((PACKAGE_ROOT / "templates" / "email").glob("*.html")):
        for style in re.findall(r'style="([^"]*)"', path.read_text(encoding="utf-8")):
            assert "color" not in style, (path.name, style)


# -- the archive page, and real layout in Chromium ------------------------------------------------


def archive_page(store: Store, settings: Settings) -> str:
    nl, _, _ = make_digest(store, settings)
    assert nl.id is not None

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=Starlette(routes=routes(WebContext(settings))))
        async with httpx.AsyncClient(transport=transport, base_url="https://news.example.org") as client:
            return await client.get(f"/archive/{nl.slug}/2026-11-24")

    r = asyncio.run(get())
    assert r.status_code == 200
    return r.text


def test_archive_page_shows_the_digest_fluid(store: Store, design: Settings) -> None:
    page = archive_page(store, design)
    root = parse_html(page)
    [digest] = [n for n in root.walk() if "digest" in n.classes]
    column = next(n for n in digest.walk() if "em-column" in n.classes)
    style = declarations(column.attrs["style"])
    assert style["width"] == "100%" and style["max-width"] == "600px"
    css = (PACKAGE_ROOT / "templates" / "web" / "site.css").read_text(encoding="utf-8")
    rule = re.search(r"\.digest \{([^}]*)\}", css)
    assert rule and "overflow: hidden" in rule.group(1) and "padding: 0" in rule.group(1)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Headless Chromium will not open a window narrower than 500px, so the page is
# laid out in a 390px-wide root and the right edge of every element is measured.
MEASURE = ("<script>document.documentElement.style.width = '%dpx';"
           "let right = 0; for (const e of document.body.querySelectorAll('*')) {"
           " right = Math.max(right, Math.ceil(e.getBoundingClientRect().right)); }"
           "document.title = 'right-edge=' + right;</script>")


def right_edge(path: Path, width: int, tmp: Path) -> int:
    """How far right (px) anything on the page reaches when it is laid out ``width`` px wide."""
    html = path.read_text(encoding="utf-8")
    html = re.sub(r"<title>.*?</title>", "", html, flags=re.S).replace("</body>", MEASURE % width + "</body>")
    page = tmp / ("measured-" + path.name)
    page.write_text(html, encoding="utf-8")
    assert CHROMIUM
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
         "--window-size=1280,900", "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    m = re.search(r"right-edge=(\d+)", out)
    assert m, out[:500]
    return int(m.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_nothing_scrolls_sideways_on_a_390px_phone(store: Store, design: Settings, tmp_path: Path) -> None:
    pages = {**all_emails(store, design.with_(mail_logo_url="")), "archive.html": ""}
    css = PACKAGE_ROOT / "templates" / "web" / "site.css"
    pages["archive.html"] = re.sub(r'href="[^"]*site\.css[^"]*"', f'href="{css.as_uri()}"',
                                   archive_page(store, design.with_(mail_logo_url="")))
    for name, html in pages.items():
        path = tmp_path / (name if name.endswith(".html") else name + ".html")
        path.write_text(html, encoding="utf-8")
        edge = right_edge(path, PHONE, tmp_path)
        assert edge <= PHONE, f"{name}: reaches {edge}px on a {PHONE}px phone"


def test_the_articles_source_is_in_the_digest_as_in_every_feed(store: Store, settings: Settings) -> None:
    nl = store.create_list(NewsList(slug="nguon", name="Nguồn", language="vi"))
    store.upsert_articles([Article(guid="s1", slug="s1", title="Tin có nguồn", published=START + timedelta(hours=1),
                                   summary="Tóm tắt.", source="haiphong.gov.vn")])
    window = DigestWindow(0, store.digest_high_water(END), START, END)
    r = DigestRenderer(store, settings).render(nl, "2026-11-24", (), window, END)
    assert "· haiphong.gov.vn" in r.html and "· haiphong.gov.vn" in r.text

"""Text hygiene: hostile HTML removed, NFC, XML-safe, slugs and folding for Vietnamese."""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from syndicate.sanitize import clean_html, clean_text, fold, html_to_text, one_line, slugify, squeeze, xml_safe


def test_hostile_html_is_removed() -> None:
    dirty = (
        '<p style="position:fixed" onclick="steal()">Xin chào<script>alert(1)</script></p>'
        '<a href="javascript:alert(1)">x</a><img src="x.png" onerror="boom()" alt="ảnh">'
        "<iframe src='https://evil.example'></iframe><style>body{display:none}</style>"
    )
    out = clean_html(dirty)
    for bad in ("script", "onclick", "style", "javascript:", "onerror", "iframe", "alert"):
        assert bad not in out
    assert "Xin chào" in out and 'alt="ảnh"' in out


def test_nfc_and_control_characters() -> None:
    decomposed = unicodedata.normalize("NFD", "Hải Phòng")
    assert clean_text(decomposed + "\x00\x1b\x0b") == "Hải Phòng"
    assert clean_text("a\r\nb\rc") == "a\nb\nc"
    assert one_line("  Tin\n  mới\t nhất ") == "Tin mới nhất"


@given(st.text())
def test_xml_safe_output_always_parses(text: str) -> None:
    ET.fromstring(f"<t>{xml_safe(text).replace('&', '&amp;').replace('<', '&lt;')}</t>")


def test_fold_and_slugify_vietnamese() -> None:
    assert fold("Khởi nghiệp ĐỔI MỚI") == "khoi nghiep doi moi"
    assert slugify("Tìm kiếm cơ hội: kết nối công nghệ!") == "tim-kiem-co-hoi-ket-noi-cong-nghe"
    assert slugify("???") == "untitled"
    assert len(slugify("từ " * 100)) <= 80


def test_html_to_text_keeps_paragraphs() -> None:
    assert html_to_text("<p>Một &amp; hai</p><p>Ba<br>bốn</p>") == "Một & hai\n\nBa\n\nbốn"


def test_no_break_spaces_are_text_as_written() -> None:
    assert one_line("KH&CN\xa0trân  trọng\n") == "KH&CN\xa0trân trọng"
    assert html_to_text("<p>KH&amp;CN\xa0trân</p><p>10&nbsp;km \u202f%</p>") == "KH&CN\xa0trân\n\n10\xa0km \u202f%"
    assert clean_html("<p>KH&amp;CN\xa0trân</p>") == "<p>KH&amp;CN\xa0trân</p>"


@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\u2028\u2029\x1c\x85\xa0\u2009\u202f\u3000aệ")))
def test_squeeze_folds_layout_whitespace_only(text: str) -> None:
    import re

    assert squeeze(text) == re.sub("[ \t\n\r\x0b\x0c\u2028\u2029]+", " ", text).strip()

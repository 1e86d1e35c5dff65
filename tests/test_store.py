"""The article store: upsert by guid, updated-only-on-change, search, indexes, migrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from syndicate.errors import NotFound, StoreError
from syndicate.models import Article, RelatedLink
from syndicate.sanitize import slugify
from syndicate.store import Store, open_store
from syndicate.store.migrations import articles as article_migrations

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def make(guid: str, title: str, *, category: str = "Công nghệ", body: str = "Nội dung", days: int = 0) -> Article:
    return Article(
        guid=guid,
        title=title,
        slug=slugify(title),
        published=T0 + timedelta(days=days),
        body_html=f"<p>{body}</p>",
        body_text=body,
        category=category,
        tags=["a", "b"],
        related=[RelatedLink(title="Tin khác", date="2026-11-01")],
    )


def test_upsert_inserts_then_leaves_unchanged_then_updates(store: Store) -> None:
    first = store.upsert_articles([make("g1", "Khởi nghiệp"), make("g2", "Kinh tế biển", category="Kinh tế")],
                                  now=T0 + timedelta(hours=1))
    assert (first.inserted, first.updated, first.unchanged) == (["g1", "g2"], [], [])
    assert first.changed_categories == {"cong-nghe", "kinh-te"}
    stored = store.get_article("g1")
    assert stored.updated == T0 and stored.related == [RelatedLink(title="Tin khác", date="2026-11-01")]

    same = store.upsert_articles([make("g1", "Khởi nghiệp")], now=T0 + timedelta(days=2))
    assert (same.inserted, same.updated, same.unchanged, same.changed_categories) == ([], [], ["g1"], set())
    assert store.get_article("g1").updated == T0

    later = T0 + timedelta(days=3)
    edited = store.upsert_articles([make("g1", "Khởi nghiệp", body="Nội dung mới", category="Kinh tế")], now=later)
    assert edited.updated == ["g1"] and edited.changed_categories == {"cong-nghe", "kinh-te"}
    after = store.get_article("g1")
    assert (after.id, after.guid, after.slug) == (stored.id, "g1", stored.slug)
    assert after.updated == later and after.body_text == "Nội dung mới" and after.category_slug == "kinh-te"
    assert store.count_articles() == 2
    assert [a.guid for a in store.search_articles("noi dung moi")] == ["g1"]


def test_slugs_stay_unique_and_lookup_by_any_key(store: Store) -> None:
    store.upsert_articles([make("a", "Cùng tên"), make("b", "Cùng tên"), make("c", "Cùng tên")])
    slugs = [store.get_article(g).slug for g in ("a", "b", "c")]
    assert slugs == ["cung-ten", "cung-ten-2", "cung-ten-3"]
    one = store.get_article("cung-ten-2")
    assert store.get_article(str(one.id)).guid == "b" and store.get_article(one.id or 0).guid == "b"
    with pytest.raises(NotFound, match=r"no article with id, slug or guid 'zzz' \(see `syndicate article list`\)"):
        store.get_article("zzz")


def test_vietnamese_search_with_and_without_diacritics(store: Store) -> None:
    store.upsert_articles([
        make("seed", "Hệ sinh thái khởi nghiệp đổi mới sáng tạo tại Hải Phòng", body="Đoàn công tác làm việc."),
        make("other", "Giá điện mùa đông", body="Khởi công trung tâm dữ liệu", category="Kinh tế"),
        make("en", "Startup week", body="Founders met investors", category="Technology"),
    ])
    for query in ("khởi nghiệp", "khoi nghiep", "KHỞI NGHIỆP", "Hai Phong", "đổi mới", "doi moi"):
        assert [a.guid for a in store.search_articles(query)] == ["seed"], query
    assert {a.guid for a in store.search_articles("khoi")} == {"seed", "other"}  # "khởi công" folds to "khoi cong"
    assert [a.guid for a in store.search_articles("du lieu")] == ["other"]
    assert {a.guid for a in store.search_articles("cong")} == {"seed", "other"}
    assert store.search_articles('"; DROP TABLE articles; --') == []
    assert store.search_articles("   ") == []
    store.remove_article("seed")
    assert store.search_articles("khoi nghiep") == []
    assert store.count_articles() == 2


def test_newest_and_since_queries_use_indexes(store: Store) -> None:
    store.upsert_articles([make(f"g{i}", f"Bài {i}", category="Kinh tế" if i % 2 else "Thể thao", days=i)
                           for i in range(10)])
    assert [a.guid for a in store.newest_articles(3)] == ["g9", "g8", "g7"]
    assert [a.guid for a in store.newest_articles(2, "the-thao")] == ["g8", "g6"]
    since = store.articles_since(T0 + timedelta(days=6), T0 + timedelta(days=8), ["kinh-te"])
    assert [a.guid for a in since] == ["g7"]
    assert store.count_articles_since(T0 + timedelta(days=6)) == 3
    assert store.categories() == [("kinh-te", "Kinh tế", 5), ("the-thao", "Thể thao", 5)]
    assert store.latest_change("kinh-te") == T0 + timedelta(days=9)

    def plan(sql: str, params: list[object]) -> str:
        return " ".join(str(r[3]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    assert "articles_category" in plan(
        "SELECT id FROM articles WHERE category_slug = ? ORDER BY published DESC, id DESC LIMIT 5", ["kinh-te"])
    newest = plan("SELECT id FROM articles ORDER BY published DESC, id DESC LIMIT 5", [])
    assert "articles_published" in newest and "TEMP B-TREE" not in newest
    assert "articles_published" in plan("SELECT id FROM articles WHERE published > ? LIMIT 5", ["2026"])


def test_upsert_batch_is_atomic(store: Store) -> None:
    store.upsert_articles([make("keep", "Giữ lại")])

    class Boom(Exception):
        pass

    def articles() -> object:
        yield make("new1", "Mới một")
        raise Boom("crash in the middle of a batch")

    with pytest.raises(Boom):
        store.upsert_articles(articles())  # type: ignore[arg-type]
    assert store.count_articles() == 1 and store.search_articles("moi mot") == []
    assert store.get_article("keep").title == "Giữ lại"


def test_migration_from_an_older_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    article_migrations.apply(db, stop_before="m002_search_and_categories")
    assert "articles_fts" not in db.table_names()
    db.execute(
        "INSERT INTO articles (guid, slug, title, summary, body_text, category, published, updated, "
        "content_hash, imported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ["old-1", "khoi-nghiep", "Khởi nghiệp đổi mới", "Tóm tắt", "Thân bài cũ", "Công nghệ",
         "2026-10-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00", "x", "2026-10-01T00:00:00+00:00"],
    )
    db.conn.commit()
    db.close()

    store = open_store(path)
    try:
        a = store.get_article("old-1")
        assert (a.category_slug, a.related, a.image_alt) == ("cong-nghe", [], "")
        assert [x.guid for x in store.search_articles("khoi nghiep")] == ["old-1"]
        assert [x.guid for x in store.newest_articles(5, "cong-nghe")] == ["old-1"]
        applied = {m.name for m in article_migrations.applied(store.db)}
        assert {"m001_articles", "m002_search_and_categories", "m003_meta"} <= applied
        result = store.upsert_articles([make("old-1", "Khởi nghiệp đổi mới", body="Thân bài mới")])
        assert result.updated == ["old-1"] and store.count_articles() == 1
    finally:
        store.close()
    again = open_store(path)  # re-opening is a no-op
    assert again.count_articles() == 1
    again.close()


def test_open_store_refuses_a_non_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not sqlite, just text " * 100)
    with pytest.raises(StoreError, match=rf"^(database|cannot open database) {path}"):
        open_store(path)



def test_search_ranks_the_phrase_in_the_title_first(store: Store) -> None:
    from datetime import UTC, datetime

    from syndicate.models import Article

    when = datetime(2026, 11, 20, tzinfo=UTC)
    store.upsert_articles([
        Article(guid="a", slug="a", title="Khởi công nhà máy", published=when,
                body_text="Nhà máy mới hỗ trợ khởi nghiệp trẻ."),
        Article(guid="b", slug="b", title="Hệ sinh thái khởi nghiệp", published=when, body_text="Đổi mới."),
        Article(guid="c", slug="c", title="Nghiệp đoàn khởi động", published=when, body_text="Tin khác."),
    ])
    for query in ("khoi nghiep", "Khởi nghiệp", "KHỞI NGHIỆP"):
        assert [a.guid for a in store.search_articles(query)] == ["b", "a", "c"]
    for hostile in ('"', "title", "a OR b", "NEAR(x)", "*", "khởi\"", "-"):
        store.search_articles(hostile)  # FTS syntax in input is text, never an error

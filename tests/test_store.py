"""The article store: upsert by guid, updated-only-on-change, search, indexes, migrations."""

from __future__ import annotations

import sqlite3
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


# -- the embargo and arrival order ------------------------------------------------------------


def dated(guid: str, when: datetime, category: str = "Công nghệ") -> Article:
    return Article(guid=guid, title=f"Tin {guid}", slug=guid, published=when, category=category, body_text="x")


def test_no_published_articles_query_shows_a_future_dated_article(store: Store) -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    store.upsert_articles([dated("past", now - timedelta(hours=1)),
                           dated("later-today", now + timedelta(hours=3)),  # the "later today"
                           dated("next-year", datetime(2027, 1, 5, tzinfo=UTC), category="Thể thao")], now=now)
    assert [a.guid for a in store.newest_articles(10, now=now)] == ["past"]
    assert [a.guid for a in store.newest_articles(10, "cong-nghe", now=now)] == ["past"]
    assert [a.guid for a in store.newest_in_categories(10, ["cong-nghe", "the-thao"], now=now)] == ["past"]
    assert store.categories(now=now) == [("cong-nghe", "Công nghệ", 1)]  # no Thể thao until January
    assert store.category_name("the-thao", now=now) is None
    assert store.article_months(now=now) == ["2026-11"] and store.article_months_in(None, now=now) == ["2026-11"]
    assert store.article_months_in(["cong-nghe", "the-thao"], now=now) == ["2026-11"]
    assert store.article_months("the-thao", now=now) == []  # no next-year archive month
    assert [a.guid for a in store.articles_in_month("2026-11", now=now)] == ["past"]
    assert [a.guid for a in store.articles_in_month_in("2027-01", ["cong-nghe", "the-thao"], now=now)] == []
    assert store.adjacent_months("2026-11", now=now) == (None, None)
    assert store.adjacent_months_in("2026-10", ["cong-nghe", "the-thao"], now=now) == (None, "2026-11")
    assert [a.guid for a in store.articles_since(now - timedelta(days=1), now=now)] == ["past"]
    assert store.count_articles_since(now - timedelta(days=1), now + timedelta(days=400), now=now) == 1
    assert store.latest_change(now=now) == now - timedelta(hours=1)
    with pytest.raises(NotFound):
        store.public_article("later-today", now=now)
    assert store.public_article("past", now=now).guid == "past"
    # admin look-ups see everything, and say what is scheduled
    assert store.get_article("next-year").guid == "next-year"
    assert [a.guid for a in store.newest_articles(10, include_scheduled=True)] == ["next-year", "later-today", "past"]
    assert [a.guid for a in store.scheduled_articles(now)] == ["later-today", "next-year"]
    assert store.next_release(now) == now + timedelta(hours=3)
    # once its time has come, the same queries show it, with no write needed
    later = now + timedelta(hours=3)
    assert [a.guid for a in store.newest_articles(10, now=later)] == ["later-today", "past"]
    assert store.public_article("later-today", now=later).guid == "later-today"


def test_release_gives_each_due_article_one_arrival_number_once(store: Store) -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    result = store.upsert_articles([dated("a", now - timedelta(days=400)), dated("b", now + timedelta(hours=1)),
                                    dated("c", now + timedelta(hours=2)), dated("d", now)], now=now)
    assert result.inserted == ["a", "b", "c", "d"] and result.released == []
    seq = {g: store.arrival_seq(store.get_article(g).id or 0) for g in "abcd"}
    assert seq == {"a": 1, "b": None, "c": None, "d": 2}  # old dates arrive at once; future ones wait
    assert store.digest_high_water(now) == 2
    assert store.release_due_articles(now + timedelta(minutes=59)) == []
    assert [a.guid for a in store.release_due_articles(now + timedelta(hours=1))] == ["b"]
    assert store.release_due_articles(now + timedelta(hours=1)) == []  # once
    # an import after c came due releases it first (its category's feeds changed too)
    result = store.upsert_articles([dated("e", now, category="Kinh tế")], now=now + timedelta(hours=3))
    assert result.released == ["c"] and result.changed_categories == {"cong-nghe", "kinh-te"}
    assert [store.arrival_seq(store.get_article(g).id or 0) for g in "bce"] == [3, 4, 5]
    # a removed article's number is never handed out again (a rowid may be)
    store.remove_article("e")
    store.upsert_articles([dated("f", now)], now=now + timedelta(hours=3))
    assert store.arrival_seq(store.get_article("f").id or 0) == 6


def test_edits_keep_the_arrival_number_and_a_move_into_the_future_withdraws(store: Store) -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    store.upsert_articles([dated("a", now - timedelta(hours=1)), dated("z", now + timedelta(days=1))], now=now)
    edited = dated("a", now - timedelta(hours=1))
    edited.body_text = "sửa"
    assert store.upsert_articles([edited], now=now).updated == ["a"]
    assert store.arrival_seq(store.get_article("a").id or 0) == 1  # not a new arrival: not sent again
    moved = dated("a", now + timedelta(hours=5))
    store.upsert_articles([moved], now=now)
    assert store.arrival_seq(store.get_article("a").id or 0) is None
    assert store.newest_articles(10, now=now) == []
    early = dated("z", now - timedelta(minutes=5))  # an embargoed one edited to a time already past
    store.upsert_articles([early], now=now)
    assert store.arrival_seq(store.get_article("z").id or 0) == 2
    assert [a.guid for a in store.release_due_articles(now + timedelta(hours=5))] == ["a"]
    assert store.arrival_seq(store.get_article("a").id or 0) == 3


def test_high_water_stops_before_an_article_released_by_a_later_clock(store: Store) -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    store.upsert_articles([dated("a", now - timedelta(hours=1))], now=now)
    store.upsert_articles([dated("future", now + timedelta(days=2))], now=now + timedelta(days=3))  # send --at
    store.upsert_articles([dated("b", now)], now=now)
    assert store.digest_high_water(now) == 1  # "future" (2) is not public at `now`: neither it nor b is skipped
    assert store.digest_high_water(now + timedelta(days=2)) == 3


def test_migration_numbers_existing_articles_and_covers_what_was_sent(tmp_path: Path) -> None:
    from syndicate.store.outbox import migrations as outbox_migrations
    from syndicate.store.subscribers import migrations as subscriber_migrations

    path = tmp_path / "before.db"
    db = sqlite_utils.Database(path)
    article_migrations.apply(db, stop_before="m004_arrival_sequence")
    subscriber_migrations.apply(db, stop_before="m002_consent_records")  # the 0.1.0 schema
    outbox_migrations.apply(db, stop_before="m003_arrival_window")
    rows = [  # guid, published, imported
        ("sent", "2026-11-22T10:00:00+00:00", "2026-11-22T11:00:00+00:00"),
        ("late", "2026-11-23T23:00:00+00:00", "2026-11-24T01:00:00+00:00"),  # imported after the last send
        ("next", "2026-11-24T03:00:00+00:00", "2026-11-24T03:00:00+00:00"),  # after a's last window
        ("backdated", "2026-11-01T00:00:00+00:00", "2026-11-23T12:00:00+00:00"),
        ("future", "2099-01-01T00:00:00+00:00", "2026-11-20T00:00:00+00:00"),
    ]
    for guid, published, imported in rows:
        db.execute(
            "INSERT INTO articles (guid, slug, title, published, updated, content_hash, imported) "
            "VALUES (?, ?, ?, ?, ?, 'x', ?)", [guid, guid, guid, published, published, imported])
    db.execute("INSERT INTO lists (slug, name, created) VALUES ('tin', 'Tin', '2026-11-01T00:00:00+00:00')")
    db.execute("INSERT INTO subscribers (email, created) VALUES ('a@example.org', '2026-11-01T00:00:00+00:00')")
    db.execute("INSERT INTO subscribers (email, created) VALUES ('b@example.org', '2026-11-01T00:00:00+00:00')")
    db.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, created, last_period, last_sent_at) "
               "VALUES (1, 1, 'active', '2026-11-01T00:00:00+00:00', '2026-11-24', '2026-11-24T00:00:00+00:00')")
    db.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, created) "
               "VALUES (2, 1, 'active', '2026-11-01T00:00:00+00:00')")
    db.conn.commit()
    db.close()
    with open_store(path) as store:
        seqs = {g: store.arrival_seq(store.get_article(g).id or 0) for g, _p, _i in rows}
        assert seqs == {"backdated": 1, "sent": 2, "late": 3, "next": 4, "future": None}  # by published
        assert store.get_list("tin").max_age_days == 7
        marks = [c.last_seq for c in store.due_subscriptions()]  # type: ignore[attr-defined]
        assert marks == [3, None]  # a: covered what the old rule sent or never would; b never had a digest
        new = store.upsert_articles([dated("new", datetime(2026, 11, 24, 3, tzinfo=UTC))])
        assert new.inserted == ["new"] and store.arrival_seq(store.get_article("new").id or 0) == 5


def test_a_failed_commit_is_rolled_back_so_the_next_transaction_starts_clean(tmp_path: Path) -> None:
    from syndicate.store import open_store as _open

    store = _open(tmp_path / "c.db")
    try:
        store.conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        store.conn.execute("CREATE TABLE c (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError):
            with store.transaction() as conn:
                conn.execute("INSERT INTO c (pid) VALUES (99)")  # refused only at COMMIT
        assert not store.conn.in_transaction
        with store.transaction() as conn:
            conn.execute("INSERT INTO p (id) VALUES (1)")
        assert store.scalar("SELECT count(*) FROM c") == 0 and store.scalar("SELECT count(*) FROM p") == 1
    finally:
        store.close()

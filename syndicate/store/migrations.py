"""Schema history. Every set is applied in order when a store is opened.

Never edit a migration that has shipped: add a new one. Each area keeps its
own set (articles here; the others beside their queries in
subscribers.py and outbox.py) so the article, subscriber and outbox schemas evolve independently;
``ALL`` lists them in the order they must run (later sets reference earlier
tables).
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

articles = Migrations("syndicate.articles")


@articles()
def m001_articles(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE articles (
            id INTEGER PRIMARY KEY,
            guid TEXT NOT NULL UNIQUE,
            slug TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            body_html TEXT NOT NULL DEFAULT '',
            body_text TEXT NOT NULL DEFAULT '',
            author TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            image TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT '',
            published TEXT NOT NULL,
            updated TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            imported TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX articles_published ON articles (published DESC, id DESC)")


@articles()
def m002_search_and_categories(db: Database) -> None:
    """Accent-blind full-text search, category slugs, related links, image alt."""
    db.execute("ALTER TABLE articles ADD COLUMN category_slug TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE articles ADD COLUMN related TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE articles ADD COLUMN image_alt TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE articles ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX articles_category ON articles (category_slug, published DESC, id DESC)")
    db.execute("CREATE INDEX articles_updated ON articles (updated)")
    # Folded copies (lower case, no diacritics) so `khoi nghiep` finds `khởi nghiệp`.
    db.execute(
        "CREATE VIRTUAL TABLE articles_fts USING fts5("
        "title, summary, body, tokenize = 'unicode61 remove_diacritics 2')"
    )
    from ..sanitize import fold, slugify

    rows = db.execute("SELECT id, title, summary, body_text, category FROM articles").fetchall()
    for id_, title, summary, body, category in rows:
        db.execute(
            "UPDATE articles SET category_slug = ? WHERE id = ?",
            [slugify(category) if category else "", id_],
        )
        db.execute(
            "INSERT INTO articles_fts (rowid, title, summary, body) VALUES (?, ?, ?, ?)",
            [id_, fold(title), fold(summary), fold(body)],
        )


@articles()
def m003_meta(db: Database) -> None:
    """Key/value facts about the store (feed build stamps, locks)."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@articles()
def m004_arrival_sequence(db: Database) -> None:
    """Arrival order: a sequence number given when an article becomes public in the store.

    ``seq`` is NULL while an article is embargoed (``published`` in the
    future) and is given, from the one-row ``arrival`` counter, when it comes
    due; digests select by it (see ``store/articles.py``). The counter only
    grows, so a number is never handed out twice, even after a removal
    (rowids may be reused; this is not). Articles already stored are numbered
    in ``published`` order, the order the old rule sent them in, so that
    what a subscription's earlier digests covered is a prefix (see the
    subscribers migration ``m100_digest_arrival``).
    """
    from ..models import to_iso, utcnow

    db.execute("ALTER TABLE articles ADD COLUMN seq INTEGER")
    db.execute("CREATE TABLE arrival (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL)")
    now = to_iso(utcnow())
    rows = db.execute(
        "SELECT id FROM articles WHERE published <= ? ORDER BY published, id", [now]
    ).fetchall()
    db.conn.executemany("UPDATE articles SET seq = ? WHERE id = ?", [(n, r[0]) for n, r in enumerate(rows, 1)])
    db.execute("INSERT INTO arrival (id, last_seq) VALUES (1, ?)", [len(rows)])
    db.execute("CREATE UNIQUE INDEX articles_seq ON articles (seq)")
    db.execute("CREATE INDEX articles_embargoed ON articles (published) WHERE seq IS NULL")


def _all() -> list[Migrations]:
    from .campaigns import migrations as campaigns
    from .changes import migrations as changes
    from .outbox import migrations as outbox
    from .sources import migrations as sources
    from .subscribers import migrations as subscribers
    from .tokens import migrations as tokens
    from .webhooks import migrations as webhooks

    return [articles, subscribers, outbox, changes, sources, campaigns, tokens, webhooks]


ALL: list[Migrations] = _all()

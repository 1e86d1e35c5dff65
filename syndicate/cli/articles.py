"""``syndicate article ...``: list, show, search and remove stored articles."""

from __future__ import annotations

import click

from ..models import Article, to_iso
from . import App, emit_json, json_option, main, pass_app, progress


def article_dict(a: Article, full: bool = False) -> dict[str, object]:
    out: dict[str, object] = {
        "id": a.id,
        "guid": a.guid,
        "slug": a.slug,
        "title": a.title,
        "category": a.category,
        "author": a.author,
        "published": to_iso(a.published),
        "updated": to_iso(a.changed),
        "url": a.url,
    }
    if full:
        out.update(
            summary=a.summary, tags=a.tags, image=a.image, source=a.source, language=a.language,
            body_text=a.body_text, body_html=a.body_html, origin=a.origin,
            related=[r.__dict__ for r in a.related],
        )
    return out


def _table(articles: list[Article]) -> None:
    for a in articles:
        click.echo(f"{a.id:>7}  {a.published:%Y-%m-%d}  {a.category[:14]:<14}  {a.title[:80]}")


@main.group()
def article() -> None:
    """Import, list, show, search and remove articles.

    \b
    Example:
        syndicate article import data/articles
        syndicate article list --limit 5
    """


@article.command("import")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json", "jsonl", "feed"]),
    help="Read every named file as this format [default: by extension; unknown extensions are refused].",
)
@click.option("--published", help="Date for articles that give none (a new text page otherwise takes its file's mtime).")
@click.option("--dry-run", is_flag=True, help="Show what would be new, updated or unchanged; write nothing.")
@json_option("Print the report as JSON for scripts.")
@click.option("--no-publish", is_flag=True, help="Do not refresh the published feeds afterwards.")
@pass_app
@click.pass_context
def import_(ctx: click.Context, app: App, paths: tuple[str, ...], fmt: str | None, published: str | None,
            dry_run: bool, as_json: bool, no_publish: bool) -> None:
    """Import articles from files, directories (recursively) or feed URLs.

    Formats, by extension: plain-text news pages (.txt), Markdown with front
    matter (.md), JSON (.json), JSON Lines (.jsonl), RSS/Atom (.xml, .rss,
    .atom, http(s)://). Any other file is refused unless --format names its
    format. A bad file is one `error:` line; the others still land; the exit
    code is 1 when anything failed. Re-importing identical content changes
    nothing, and a page's file date never replaces a stored article's date.
    Once `syndicate feed build` has published the feeds, each import
    refreshes only the feeds holding a changed article (and pings the WebSub
    hub when one is configured).

    \b
    Example:
        syndicate article import data/articles
        syndicate article import --dry-run data/articles
        syndicate article import news.jsonl --json
        syndicate article import page.txt --published 2026-11-20T08:00:00+07:00
        syndicate article import https://example.org/feed.xml
    """
    from ..fetcher import FetchPolicy
    from ..ingest import ItemChange, collect_sources, import_paths, parse_published

    settings = app.settings
    when = parse_published(published, settings.tz)
    sources = collect_sources(paths)
    items: list[ItemChange] = []

    def on_item(change: ItemChange) -> None:
        if as_json:
            items.append(change)
        else:
            click.echo(change.line())

    with progress(sources, len(sources), "importing") as bar:
        report = import_paths(
            app.store, bar, fmt=fmt, published=when, default_tz=settings.tz,
            max_article_bytes=int(settings.ingest_max_article_mb * 1_000_000), fetch=FetchPolicy.from_settings(settings),
            dry_run=dry_run, on_item=on_item if dry_run else None, debug=app.debug,
        )
    published_note = ""
    if report.changed_guids and not no_publish and not dry_run:
        from ..publish import refresh_published

        refreshed = refresh_published(app.store, settings, report.changed_categories, guids=report.changed_guids)
        if refreshed is not None:
            published_note = f"feeds: {len(refreshed.written)} files refreshed in {settings.feeds_out}/"
            report.errors += refreshed.errors
            report.warnings += refreshed.warnings  # a hub that missed a ping never fails an import
    if as_json:
        extra: dict[str, object] = {"items": [c.as_dict() for c in items]} if dry_run else {}
        emit_json({**report.as_dict(), "feeds": published_note, **extra})
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
        if published_note:
            click.echo(published_note)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        ctx.exit(1)


@article.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@click.option("--category", help="Only this category (name or slug).")
@json_option()
@pass_app
def list_(app: App, limit: int, category: str | None, as_json: bool) -> None:
    """List the newest articles, scheduled ones (future-dated, not public yet) included.

    \b
    Example:
        syndicate article list --limit 5 --category "Công nghệ"
    """
    from ..sanitize import slugify

    articles = app.store.newest_articles(limit, slugify(category) if category else None, include_scheduled=True)
    if as_json:
        emit_json([article_dict(a) for a in articles])
    else:
        _table(articles)


@article.command()
@click.argument("key")
@json_option()
@pass_app
def show(app: App, key: str, as_json: bool) -> None:
    """Show one article by id, slug or guid.

    \b
    Example:
        syndicate article show 1
    """
    a = app.store.get_article(key)
    if as_json:
        emit_json(article_dict(a, full=True))
        return
    click.echo(a.title)
    click.echo("=" * min(len(a.title), 78))
    for label, value in [
        ("id", a.id), ("guid", a.guid), ("slug", a.slug), ("category", a.category),
        ("author", a.author), ("source", a.source), ("published", to_iso(a.published)),
        ("updated", to_iso(a.changed)), ("tags", ", ".join(a.tags)), ("url", a.url),
        ("origin", a.origin),
    ]:
        if value:
            click.echo(f"{label + ':':<11}{value}")
    click.echo("")
    click.echo(a.body_text)
    if a.related:
        click.echo("\nrelated:")
        for r in a.related:
            click.echo(f"  - {r.title}" + (f" ({r.date})" if r.date else ""))


@article.command()
@click.argument("query")
@click.option("--limit", default=20, show_default=True)
@json_option()
@pass_app
def search(app: App, query: str, limit: int, as_json: bool) -> None:
    """Full-text search, with or without Vietnamese diacritics.

    \b
    Example:
        syndicate article search "khoi nghiep"
    """
    articles = app.store.search_articles(query, limit)
    if as_json:
        emit_json([article_dict(a) for a in articles])
    else:
        _table(articles)
        if not articles:
            click.echo(f"no article matches {query!r}", err=True)


@article.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--no-publish", is_flag=True, help="Do not refresh the published feeds afterwards.")
@pass_app
def remove(app: App, keys: tuple[str, ...], no_publish: bool) -> None:
    """Remove articles by id, slug or guid (and from the published feeds).

    \b
    Example:
        syndicate article remove 12 old-news-slug
    """
    removed = []
    for key in keys:
        a = app.store.remove_article(key)
        removed.append(a)
        click.echo(f"removed {a.id}: {a.title}")
    settings = app.settings
    if removed and not no_publish:
        from ..publish import refresh_published

        refreshed = refresh_published(app.store, settings, {a.category_slug for a in removed}, guids=[],
                                      removed=removed)
        if refreshed is not None:
            click.echo(f"feeds: {len(refreshed.written)} files refreshed in {settings.feeds_out}/")
            for warning in refreshed.warnings:
                click.echo(f"warning: {warning}", err=True)

"""Planning: due subscriptions become outbox rows (or, for a dry run, are only counted)."""

from __future__ import annotations

from datetime import datetime

from ..config import Settings
from ..digest import DigestRenderer, plan
from ..models import utcnow
from ..store import Store
from .report import SendReport


def plan_due(store: Store, now: datetime) -> tuple[int, int]:
    """Write one outbox row per due subscription; return (queued, skipped)."""
    return store.plan_deliveries(plan(store, now), now=utcnow())


def dry_run(store: Store, settings: Settings, now: datetime, report: SendReport) -> None:
    """Count what would be sent, rendering each group once to check templates."""
    renderer = DigestRenderer(store, settings, archive=False)
    for p in plan(store, now):
        if p.skipped:
            report.skipped += 1
            continue
        report.queued += 1
        renderer.render(renderer.newslist(p.list_id), p.period, p.categories, p.window_start, p.window_end, now)

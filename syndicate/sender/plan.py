"""Planning: due subscriptions become outbox rows (or, for a dry run, are only counted)."""

from __future__ import annotations

from datetime import datetime

from ..campaigns import plan_due_campaigns
from ..config import Settings
from ..digest import DigestRenderer, plan
from ..store import Store
from .report import SendReport


def plan_due(store: Store, now: datetime) -> tuple[int, int]:
    """Write one outbox row per due subscription, and per recipient of each scheduled campaign
    whose time has come; return (queued, skipped).

    Rows are stamped ``created`` at ``now`` (the run's clock, ``--at`` included):
    the queue lifetime of a deferred digest counts from there.
    """
    campaigns = plan_due_campaigns(store, now)
    queued, skipped = store.plan_deliveries(plan(store, now), now=now)
    return queued + campaigns, skipped


def dry_run(store: Store, settings: Settings, now: datetime, report: SendReport) -> None:
    """Count what would be sent, rendering each group once to check templates."""
    renderer = DigestRenderer(store, settings, archive=False)
    for cid in store.campaigns_to_plan(now):  # scheduled campaigns the real run would plan first
        report.queued += store.count_campaign_recipients(cid)
    for p in plan(store, now, release=False):  # a dry run releases nothing from embargo
        if p.skipped:
            report.skipped += 1
            continue
        report.queued += 1
        renderer.render(renderer.newslist(p.list_id), p.period, p.categories, p.window, now)
